//! Secrets in the file: `${ENV}` expansion, and keeping them out of errors.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// A string in which `${NAME}` is replaced by the environment variable
/// `NAME` (an error if it is not set; `${NAME:-fallback}` uses the fallback
/// instead) and `$${` stands for a literal `${`.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvString(pub String);

impl fmt::Debug for EnvString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // May hold secrets.
        f.write_str("EnvString(..)")
    }
}

impl<'de> Deserialize<'de> for EnvString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        expand_env(&raw, |name| std::env::var(name).ok())
            .map(EnvString)
            .map_err(de::Error::custom)
    }
}

/// Words that mark a config line as able to hold a secret (URLs carry API
/// keys in their path or query; headers carry tokens).
const SECRET_HINTS: &[&str] = &[
    "url", "header", "auth", "bearer", "token", "secret", "password", "user", "key", "://",
];

/// A config line fit to print in an error: on a line that may hold a
/// secret, every character of the value after the first `=` is masked
/// (quotes, brackets, `=` and spaces stay, so the caret still points at
/// the right column).
pub fn redact_line(line: &str) -> String {
    let lower = line.to_ascii_lowercase();
    if !SECRET_HINTS.iter().any(|h| lower.contains(h)) {
        return line.to_owned();
    }
    let Some(eq) = line.find('=') else {
        return line.chars().map(|_| '*').collect();
    };
    let (head, value) = line.split_at(eq + 1);
    let masked: String = value
        .chars()
        .map(|c| {
            if matches!(
                c,
                '"' | '\'' | '{' | '}' | '[' | ']' | ',' | '=' | ' ' | '\t'
            ) {
                c
            } else {
                '*'
            }
        })
        .collect();
    format!("{head}{masked}")
}

/// The `${NAME}` references (without a fallback) outside comments in
/// `text` whose variable `lookup` does not know, in order, once each.
pub fn missing_variables(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    for line in text.lines() {
        // The part before a comment (a `#` outside quotes).
        let mut quoted = None;
        let mut end = line.len();
        for (i, c) in line.char_indices() {
            match (c, quoted) {
                ('"' | '\'', None) => quoted = Some(c),
                (q, Some(open)) if q == open => quoted = None,
                ('#', None) => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let mut rest = &line[..end];
        while let Some(i) = rest.find("${") {
            let escaped = i > 0 && rest.as_bytes()[i - 1] == b'$';
            let body = &rest[i + 2..];
            let Some(close) = body.find('}') else { break };
            let inner = &body[..close];
            rest = &body[close + 1..];
            if escaped || inner.contains(":-") {
                continue;
            }
            let valid =
                !inner.is_empty() && inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid && lookup(inner).is_none() && !missing.iter().any(|m| m == inner) {
                missing.push(inner.to_owned());
            }
        }
    }
    missing
}

/// Expands `${NAME}` / `${NAME:-fallback}` / `$${` in `raw`. Errors never
/// repeat `raw` (it may hold a secret around the variable).
pub fn expand_env(raw: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err("unclosed `${` (write `$${` for a literal `${`)".to_owned());
            };
            let inner = &body[..end];
            let (name, fallback) = match inner.split_once(":-") {
                Some((n, f)) => (n, Some(f)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(
                    "a `${...}` does not hold a variable name (letters, digits and `_`)".to_owned(),
                );
            }
            match (lookup(name), fallback) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(f)) => out.push_str(f),
                (None, None) => {
                    return Err(format!("environment variable `{name}` is not set"));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}
