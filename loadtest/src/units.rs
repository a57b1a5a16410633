//! Sizes (`128`, `1KiB`, `1MiB`, `16MiB`) and durations (`20s`, `500ms`, `2m`) on the
//! command line, and their human-readable forms in summaries.

use std::time::Duration;

/// Why a size or duration could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Empty input.
    #[error("empty value")]
    Empty,
    /// The number part is not a number.
    #[error("not a number: {0:?}")]
    BadNumber(String),
    /// The unit suffix is not one this tool knows.
    #[error("unknown unit {0:?} (sizes: B, KB, KiB, MB, MiB, GB, GiB; durations: ms, s, m, h)")]
    BadUnit(String),
    /// The value does not fit (negative, or too large).
    #[error("value out of range: {0:?}")]
    OutOfRange(String),
}

fn split_number(s: &str) -> Result<(f64, &str), UnitError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(UnitError::Empty);
    }
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let n: f64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| UnitError::BadNumber(s.to_owned()))?;
    Ok((n, unit.trim()))
}

/// Parses a byte size: a plain number of bytes, or a number with a unit. `KiB`/`MiB`/`GiB`
/// (and the short `K`/`M`/`G`) are powers of 1024; `KB`/`MB`/`GB` are powers of 1000.
/// Units are case-insensitive. Fractions are allowed (`1.5MiB`).
///
/// Errors: [`UnitError`] for empty input, a bad number, an unknown unit, or more than
/// 2^53 bytes.
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let (n, unit) = split_number(s)?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        _ => return Err(UnitError::BadUnit(unit.to_owned())),
    };
    let v = (n * mult).round();
    if !(0.0..=9.007_199_254_740_992e15).contains(&v) {
        return Err(UnitError::OutOfRange(s.to_owned()));
    }
    Ok(v as u64)
}

/// Parses a duration: a number with `ms`, `s`, `m` or `h` (a bare number means seconds).
///
/// Errors: [`UnitError`] for empty input, a bad number, or an unknown unit.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let (n, unit) = split_number(s)?;
    let secs = match unit.to_ascii_lowercase().as_str() {
        "ms" => n / 1000.0,
        "" | "s" | "sec" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(UnitError::BadUnit(unit.to_owned())),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| UnitError::OutOfRange(s.to_owned()))
}

/// Formats a byte count with binary units: `128 B`, `1 KiB`, `1.5 MiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if (v - v.round()).abs() < 1e-9 {
        format!("{} {}", v.round() as u64, UNITS[i])
    } else {
        // Truncate, so that a size just below a round one does not print as the round one.
        format!("{:.2} {}", (v * 100.0).floor() / 100.0, UNITS[i])
    }
}

/// Formats microseconds for a summary: `812 µs`, `1.25 ms`, `2.00 s`.
pub fn format_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// Formats a rate with thousands separators: `123,456`.
pub fn format_count(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    let lead = match s.len() % 3 {
        0 => 3,
        r => r,
    };
    for (i, c) in s.chars().enumerate() {
        if i >= lead && (i - lead) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("128"), Ok(128));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("1kib"), Ok(1024));
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("16 MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1.5MiB"), Ok(3 << 19));
        assert_eq!(parse_size("2KB"), Ok(2000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("10_000"), Ok(10_000));
        assert!(matches!(parse_size(""), Err(UnitError::Empty)));
        assert!(matches!(parse_size("MiB"), Err(UnitError::BadNumber(_))));
        assert!(matches!(
            parse_size("3 parsecs"),
            Err(UnitError::BadUnit(_))
        ));
        assert!(matches!(parse_size("1e30"), Err(UnitError::BadUnit(_))));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(format_size(128), "128 B");
        assert_eq!(format_size(1024), "1 KiB");
        assert_eq!(format_size(16 << 20), "16 MiB");
        assert_eq!(format_size(1536), "1.50 KiB");
        assert_eq!(format_size((16 << 20) - 1024), "15.99 MiB");
        assert_eq!(format_us(812.4), "812 µs");
        assert_eq!(format_us(1250.0), "1.25 ms");
        assert_eq!(format_count(123_456.4), "123,456");
        assert_eq!(format_count(999.0), "999");
        assert_eq!(format_count(1000.0), "1,000");
    }
}
