//! Cache keys from arbitrary params: never panics; a key is only made when
//! the params parse without duplicated keys, and equal keys come from params
//! that mean the same (re-keying the canonical text gives the same key).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rpc_cache::CacheKey;
use rpc_core::{RawJson, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(params) = RawJson::from_bytes(text.as_bytes().to_vec()) else {
        return;
    };
    let request = Request::new("eth_call").with_params(params);
    for hex in [false, true] {
        let Some(key) = CacheKey::for_request(&request, hex) else {
            continue;
        };
        // The key's params part is canonical JSON: keying it again is stable.
        let bytes = key.as_bytes();
        let canonical = &bytes[bytes.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1)..];
        let again = RawJson::from_bytes(canonical.to_vec()).expect("a key's params are JSON");
        let again = Request::new("eth_call").with_params(again);
        assert_eq!(CacheKey::for_request(&again, hex).as_ref(), Some(&key));
    }
});
