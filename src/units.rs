//! Human-friendly units, in the config file and in filter expressions: durations
//! (`"250ms"`, `"1m30s"`) and byte sizes (`"1MiB"` or a plain integer); and times as
//! logs and records write them (RFC 3339, UTC).

use std::time::Duration;

/// Parses `"250ms"`, `"30s"`, `"1m30s"`, `"2h"`, `"1.5s"`. Units: ms, s, m, h.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration; expected e.g. \"250ms\", \"30s\", \"1m\"".into());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected a number at {rest:?}"
            ));
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| {
            format!(
                "invalid duration {text:?}: bad number {:?}",
                &rest[..num_len]
            )
        })?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "invalid duration {text:?}: missing unit (ms, s, m or h)"
                ));
            }
            other => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {other:?} (ms, s, m or h)"
                ));
            }
        };
        total += number * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    // Deadlines are `now + duration`: a duration beyond any use would overflow the clock.
    if total > MAX_DURATION_SECS {
        return Err(format!(
            "invalid duration {text:?}: longer than a year (8760h)"
        ));
    }
    Duration::try_from_secs_f64(total)
        .map_err(|_| format!("invalid duration {text:?}: out of range"))
}

/// The longest duration a config may give: one year.
const MAX_DURATION_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// Parses `"512KiB"`, `"1MiB"`, `"10MB"`, `"1024"` into bytes.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size {text:?}: expected e.g. \"1MiB\" or 1048576"))?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "invalid size {text:?}: unknown unit {other:?} (B, KiB, MiB, GiB, KB, MB, GB)"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("invalid size {text:?}: too large"))
}

/// Parses a rate: `"2/s"`, `"30/m"`, `"100/h"`, `"1/5s"`, `"3/500ms"` into (requests, period).
pub fn parse_rate(text: &str) -> Result<(u32, Duration), String> {
    let text = text.trim();
    let Some((count, period)) = text.split_once('/') else {
        return Err(format!(
            "invalid rate {text:?}: expected requests per period, e.g. \"2/s\" or \"1/5s\""
        ));
    };
    let count = count.trim();
    let requests: u32 = count.parse().map_err(|_| {
        format!("invalid rate {text:?}: {count:?} is not a whole number of requests, e.g. \"30/m\"")
    })?;
    if requests == 0 {
        return Err(format!(
            "invalid rate {text:?}: needs at least 1 request per period, e.g. \"1/5s\""
        ));
    }
    let period = period.trim();
    // A bare unit means one of it ("30/m" is per minute), which parse_duration would
    // reject for lacking a number.
    let period = match period {
        "ms" | "s" | "m" | "h" => parse_duration(&format!("1{period}")),
        _ => parse_duration(period),
    }
    .map_err(|reason| {
        format!(
            "invalid rate {text:?}: bad period ({reason}); expected e.g. \"2/s\" or \"3/500ms\""
        )
    })?;
    if period.is_zero() {
        return Err(format!(
            "invalid rate {text:?}: the period must be longer than zero, e.g. \"1/5s\""
        ));
    }
    Ok((requests, period))
}

/// RFC 3339 UTC time with milliseconds, from the system clock.
pub fn now_rfc3339() -> String {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.{:03}Z",
        format_second(since_epoch.as_secs() as i64),
        since_epoch.subsec_millis()
    )
}

/// "YYYY-MM-DDTHH:MM:SS" (UTC) of a Unix second (before 1970 too: certificates).
pub fn format_second(seconds: i64) -> String {
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(
            parse_duration("8760h").unwrap(),
            Duration::from_secs(365 * 24 * 3600)
        );
        assert!(
            parse_duration("5000000000000000h").is_err(),
            "would overflow a deadline"
        );
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        for bad in ["", "5", "s", "5x", "1..2s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_byte_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_byte_size("1024").unwrap(), 1024);
        assert_eq!(parse_byte_size("10KB").unwrap(), 10_000);
        assert!(parse_byte_size("1XB").is_err());
        assert!(parse_byte_size("99999999999999GiB").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("2/s").unwrap(), (2, Duration::from_secs(1)));
        assert_eq!(parse_rate("30/m").unwrap(), (30, Duration::from_secs(60)));
        assert_eq!(
            parse_rate("100/h").unwrap(),
            (100, Duration::from_secs(3600))
        );
        assert_eq!(parse_rate("1/5s").unwrap(), (1, Duration::from_secs(5)));
        assert_eq!(
            parse_rate("3/500ms").unwrap(),
            (3, Duration::from_millis(500))
        );
        assert_eq!(parse_rate("10/ms").unwrap(), (10, Duration::from_millis(1)));
        assert_eq!(
            parse_rate(" 5 / 1m30s ").unwrap(),
            (5, Duration::from_secs(90))
        );
    }

    #[test]
    fn bad_rates_name_the_text_and_an_example() {
        for bad in [
            "",
            "2",
            "/s",
            "0/s",
            "-1/s",
            "1.5/s",
            "x/s",
            "2/",
            "2/x",
            "2/0s",
            "2/5",
            "2/s/s",
            "99999999999/s",
        ] {
            let error = parse_rate(bad).expect_err(bad);
            assert!(error.contains(&format!("{:?}", bad.trim())), "{error}");
            assert!(error.contains("e.g."), "{error}");
        }
    }
}
