//! Durations as both binaries write them, in files and on the command line:
//! `"500us"`, `"250ms"`, `"5s"`, `"1.5s"`, `"2m"`, `"1h"`, or a bare number
//! of seconds.
//! (`electrum-gateway` includes this file: one format for both.)

use std::time::Duration;

/// A positive, finite number of seconds (below 10⁹) as a `Duration`.
pub fn seconds(v: f64) -> Result<Duration, String> {
    if v.is_finite() && v > 0.0 && v < 1e9 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("`{v}` is not a positive number of seconds"))
    }
}

/// Parses `"500us"` (or `"500µs"`), `"250ms"`, `"5s"`, `"1.5s"`, `"2m"`,
/// `"1h"` (or a bare number of seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "us" | "µs" => 0.000_001,
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => f64::NAN,
    };
    match number.parse::<f64>() {
        Ok(n) if scale.is_finite() => seconds(n * scale),
        _ => Err(format!(
            "`{text}` is not a duration like \"250ms\", \"5s\", \"2m\" or \"1h\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_seconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("2µs"), Ok(Duration::from_micros(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5 fortnights").is_err());
    }
}
