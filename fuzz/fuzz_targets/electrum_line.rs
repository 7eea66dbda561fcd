//! One line from an Electrum server (answer, notification or garbage):
//! never panics, whatever the server sends.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let line = Bytes::copy_from_slice(data);
    let _ = rpc_electrum::parse_line(&line);
});
