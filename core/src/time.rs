//! Moments in time as the core takes them (it has no clock: the adapter passes them in), and
//! Unix seconds to and from RFC 3339, without a date library.

use alloc::string::String;
use core::fmt::{self, Write as _};
use serde::{Deserialize, Serialize};

/// A moment as Unix milliseconds: the inbox, delivery and retention work in these.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UnixMs(pub i64);

/// A moment as Unix seconds: Didit's `timestamp`, tokens' `exp`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UnixSecs(pub i64);

/// A moment as Unix microseconds: the precision of Didit's API's `created_at`, which the
/// moment reconciliation was switched on is compared with.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UnixMicros(pub i64);

impl UnixMicros {
    /// The whole second this moment falls in.
    pub fn secs(self) -> UnixSecs {
        UnixSecs(self.0.div_euclid(1_000_000))
    }
}

impl UnixMs {
    /// The same moment in microseconds.
    pub fn micros(self) -> UnixMicros {
        UnixMicros(self.0.saturating_mul(1000))
    }

    /// This moment plus `ms` milliseconds, saturating.
    pub fn plus_ms(self, ms: u64) -> Self {
        Self(self.0.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)))
    }

    /// This moment plus `secs` seconds, saturating.
    pub fn plus_secs(self, secs: u64) -> Self {
        self.plus_ms(secs.saturating_mul(1000))
    }

    /// The whole second this moment falls in.
    pub fn secs(self) -> UnixSecs {
        UnixSecs(self.0.div_euclid(1000))
    }
}

impl UnixSecs {
    /// The start of this second.
    pub fn ms(self) -> UnixMs {
        UnixMs(self.0.saturating_mul(1000))
    }

    /// The start of this second, in microseconds.
    pub fn micros(self) -> UnixMicros {
        UnixMicros(self.0.saturating_mul(1_000_000))
    }
}

impl fmt::Display for UnixMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn to_rfc3339(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs_of_day = unix_secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = String::with_capacity(20);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60
    );
    out
}

/// Formats Unix microseconds as `YYYY-MM-DDTHH:MM:SS.ffffffZ`, the form Didit's API writes.
pub fn to_rfc3339_micros(moment: UnixMicros) -> String {
    let mut text = to_rfc3339(moment.secs().0);
    text.pop();
    let _ = write!(text, ".{:06}Z", moment.0.rem_euclid(1_000_000));
    text
}

/// Parses an RFC 3339 date-time (`2026-04-16T10:00:00Z`, optional fraction, `Z` or `±HH:MM`)
/// to Unix seconds, dropping any fraction. `None` for anything else.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    parse_rfc3339_micros(text).map(|moment| moment.secs().0)
}

/// Parses an RFC 3339 date-time to Unix microseconds (digits of the fraction past the sixth
/// are dropped). `None` for anything else.
pub fn parse_rfc3339_micros(text: &str) -> Option<UnixMicros> {
    let bytes = text.as_bytes();
    let number = |range: core::ops::Range<usize>| -> Option<i64> {
        let digits = bytes.get(range)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        core::str::from_utf8(digits).ok()?.parse().ok()
    };
    let separator = |at: usize, allowed: &[u8]| bytes.get(at).is_some_and(|b| allowed.contains(b));
    if !(separator(4, b"-")
        && separator(7, b"-")
        && separator(10, b"Tt ")
        && separator(13, b":")
        && separator(16, b":"))
    {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = bytes.get(19..)?;
    let mut micros = 0i64;
    if let Some((b'.', fraction)) = rest.split_first() {
        let digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for place in 0..6 {
            let digit = fraction
                .get(place)
                .filter(|_| place < digits)
                .map_or(0, |b| i64::from(b - b'0'));
            micros = micros * 10 + digit;
        }
        rest = fraction.get(digits..)?;
    }
    let offset_secs = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let field = |a: u8, b: u8| -> Option<i64> {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i64::from((a - b'0') * 10 + (b - b'0')))
            };
            let offset = field(*h1, *h2)? * 3600 + field(*m1, *m2)? * 60;
            if *sign == b'+' {
                offset
            } else {
                -offset
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month as u32, day as u32);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(UnixMicros(
        secs.checked_mul(1_000_000)?.checked_add(micros)?,
    ))
}

/// Parses an HTTP-date in its preferred form (RFC 9110 IMF-fixdate, `Sun, 06 Nov 1994
/// 08:49:37 GMT`), which is what a `Retry-After` date is, to Unix seconds.
pub fn parse_http_date(text: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut parts = text.trim().split(' ').filter(|part| !part.is_empty());
    let _weekday = parts.next()?.strip_suffix(',')?;
    let day: u32 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let month = MONTHS.iter().position(|name| *name == month)? as u32 + 1;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts
        .next()?
        .split(':')
        .map(|field| field.parse::<i64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if parts.next()? != "GMT"
        || parts.next().is_some()
        || clock.next().is_some()
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&hour)
        || !(0..=59).contains(&minute)
        || !(0..=60).contains(&second)
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn moments_move_forward_without_overflowing() {
        assert_eq!(UnixMs(1_000).plus_secs(2), UnixMs(3_000));
        assert_eq!(UnixMs(i64::MAX - 1).plus_ms(5), UnixMs(i64::MAX));
        assert_eq!(UnixMs(0).plus_secs(u64::MAX), UnixMs(i64::MAX));
        assert_eq!(UnixMs(-1).secs(), UnixSecs(-1));
        assert_eq!(UnixSecs(i64::MAX).ms(), UnixMs(i64::MAX));
        assert_eq!(UnixSecs(7).ms().secs(), UnixSecs(7));
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(to_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(to_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(to_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(to_rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for secs in [0, 1_700_000_000, 951_782_400, 4_102_444_800, -86_401] {
            assert_eq!(parse_rfc3339(&to_rfc3339(secs)), Some(secs));
        }
        assert_eq!(
            parse_rfc3339("2026-04-16T10:00:00.123456Z"),
            parse_rfc3339("2026-04-16T10:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2026-04-16T12:00:00+02:00"),
            parse_rfc3339("2026-04-16T10:00:00Z")
        );
        for bad in [
            "",
            "2026-04-16",
            "2026-13-01T00:00:00Z",
            "2026-04-16T10:00:00",
            "2026-04-16T10:00:00+0200",
            "2026-04-16T1a:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn keeps_microseconds_as_didit_writes_them() {
        let moment = parse_rfc3339_micros("2026-04-16T10:00:00.123456Z").expect("valid");
        assert_eq!(moment.0 % 1_000_000, 123_456);
        assert_eq!(to_rfc3339_micros(moment), "2026-04-16T10:00:00.123456Z");
        assert_eq!(
            parse_rfc3339_micros("2026-04-16T10:00:00.5Z").map(|m| m.0 % 1_000_000),
            Some(500_000)
        );
        assert_eq!(
            parse_rfc3339_micros("2026-04-16T10:00:00.1234569Z"),
            Some(moment),
            "digits past the sixth are dropped"
        );
        let before = to_rfc3339_micros(UnixMicros(-1));
        assert_eq!(before, "1969-12-31T23:59:59.999999Z");
        assert_eq!(parse_rfc3339_micros(&before), Some(UnixMicros(-1)));
        assert_eq!(UnixMs(1_500).micros(), UnixMicros(1_500_000));
    }

    #[test]
    fn parses_http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Tue, 14 Nov 2023 22:13:20 GMT"),
            Some(1_700_000_000)
        );
        for bad in [
            "",
            "120",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }
}
