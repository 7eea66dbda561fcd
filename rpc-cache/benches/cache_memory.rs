//! Memory held by the in-memory store per 100 000 entries, read as the
//! growth of the process's resident set (Linux `/proc/self/status`) while
//! the store is filled. Each key and answer is built, handed to the store
//! and dropped in turn, so the growth is what the store keeps.
//! Run: `cargo bench -p rpc-cache --bench cache_memory`.

#![allow(missing_docs)]

use rpc_cache::{CacheKey, MemoryStore};
use rpc_core::{Payload, RawJson, Request};

fn rss_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn main() {
    // Each case runs in a fresh process, so memory freed by one case cannot
    // hide the growth of the next.
    if let Ok(len) = std::env::var("CACHE_MEMORY_CASE") {
        measure(len.parse().expect("a length"));
        return;
    }
    // eth_getBalance keys (~73 bytes) with a 20-byte result, and with a
    // 2 KB result (about a block without transactions).
    for result_len in [20usize, 2048] {
        let exe = std::env::current_exe().expect("own path");
        let status = std::process::Command::new(exe)
            .env("CACHE_MEMORY_CASE", result_len.to_string())
            .status()
            .expect("run a case");
        assert!(status.success());
    }
}

fn measure(result_len: usize) {
    const N: usize = 100_000;
    {
        let label = format!("{result_len}-byte result");
        let filler = "a".repeat(result_len - 2);
        let Some(before) = rss_bytes() else {
            println!("/proc/self/status not readable: no measurement on this OS");
            return;
        };
        let store = MemoryStore::new().max_entries(N).max_bytes(usize::MAX / 2);
        let mut key_bytes = 0;
        for i in 0..N {
            let req = Request::new("eth_getBalance").with_params(
                RawJson::from_bytes(format!("[\"0x{i:040x}\",\"0x112a880\"]")).expect("json"),
            );
            let key = CacheKey::for_request(&req, true).expect("key");
            key_bytes += key.len();
            // The answer arrives inside a larger response body, as from a backend.
            let body = bytes::Bytes::from(format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"{filler}\"}}"
            ));
            let result = RawJson::from_bytes(body.slice(33..body.len() - 1)).expect("json");
            // As the cache layer does: the call's slot and the in-flight
            // table hold clones of the key while it is stored.
            let held = key.clone();
            store.put_now(key, Payload::Result(result), None);
            drop(held);
        }
        let grown = rss_bytes().unwrap_or(before) - before;
        println!(
            "{label}: {N} entries grow the process by {:.1} MiB = {} bytes/entry (key {} B avg + answer {} B + the rest); the store's own count: {} bytes/entry",
            grown as f64 / (1 << 20) as f64,
            grown / N as i64,
            key_bytes / N,
            result_len,
            store.bytes() / N,
        );
        drop(store);
    }
}
