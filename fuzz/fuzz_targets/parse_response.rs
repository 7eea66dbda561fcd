//! A backend's HTTP answer body parsed as the answer to a call sent under a
//! wire id: never panics, whatever a backend sends.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rpc_core::parse::parse_response;
use rpc_core::Id;

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    let _ = parse_response(&body, &Id::from(7u64));
});
