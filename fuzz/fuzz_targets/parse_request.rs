//! Request parsing (single calls and batches), as the HTTP front does it:
//! never panics, and whatever parses writes back as valid JSON.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rpc_core::parse::{parse_message, Incoming};

fuzz_target!(|data: &[u8]| {
    let Ok(incoming) = parse_message(Bytes::copy_from_slice(data), 100) else {
        return;
    };
    let requests = match incoming {
        Incoming::Single(r) => vec![r],
        Incoming::Batch(items) => items,
    };
    for r in requests {
        let json = match r {
            Ok(req) => req.to_json(),
            Err(invalid) => invalid.into_response().to_json(),
        };
        assert!(
            serde_json_valid(&json),
            "wrote invalid JSON: {}",
            String::from_utf8_lossy(&json)
        );
    }
});

fn serde_json_valid(bytes: &[u8]) -> bool {
    // A cheap structural check without pulling serde_json into the target:
    // balanced brackets outside strings.
    let (mut depth, mut in_str, mut esc) = (0i64, false, false);
    for &b in bytes {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0 && !in_str
}
