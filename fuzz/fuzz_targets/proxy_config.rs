//! The proxy's config loader (parse, then validate) on arbitrary text:
//! never panics, and an error never echoes a value from a line that may
//! hold a secret (the snippet is masked).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../../examples/proxy/src/config/mod.rs"]
mod config;
#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/proxy/src/duration.rs"]
mod duration;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let result = config::Config::from_toml("fuzz.toml", text).and_then(|c| {
        c.validate(&config::Source {
            file: "fuzz.toml",
            text,
        })
        .map(|()| c)
    });
    if let Err(e) = result {
        let shown = e.to_string();
        if let Some(snippet) = &e.snippet {
            let masked = config::redact_line(snippet);
            assert_eq!(&masked, snippet, "snippets are stored masked");
        }
        let _ = shown;
    }
});
