//! `xs:dateTime` values as SAML uses them (SAML core §1.3.3: UTC), to and from Unix seconds.

use crate::SamlError;

/// Parses `YYYY-MM-DDThh:mm:ss[.fraction]Z` into Unix seconds (the fraction is dropped).
///
/// Only the UTC designator `Z` is accepted, as SAML core §1.3.3 requires UTC; offsets, missing
/// zones, leap seconds and years outside 1970..=9999 are refused.
pub(crate) fn parse(value: &str, what: &'static str) -> Result<i64, SamlError> {
    let err = || SamlError::BadTime(what);
    let b = value.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(err());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, SamlError> {
        let s = value.get(r).ok_or_else(err)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err());
        }
        s.parse::<i64>().map_err(|_| err())
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = &value[19..];
    let rest = match rest.strip_prefix('.') {
        Some(frac) => {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 9 {
                return Err(err());
            }
            &frac[digits..]
        }
        None => rest,
    };
    if rest != "Z" {
        return Err(err());
    }
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(err());
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Formats Unix seconds as `YYYY-MM-DDThh:mm:ssZ`.
pub(crate) fn format(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_with_and_without_fraction() {
        assert_eq!(parse("1970-01-01T00:00:00Z", "t").unwrap(), 0);
        assert_eq!(parse("2004-12-05T09:22:05Z", "t").unwrap(), 1_102_238_525);
        assert_eq!(
            parse("2004-12-05T09:22:05.123456Z", "t").unwrap(),
            1_102_238_525
        );
        assert_eq!(parse("2024-02-29T23:59:59Z", "t").unwrap(), 1_709_251_199);
    }

    #[test]
    fn refuses_what_is_not_utc_or_not_a_date() {
        for bad in [
            "2004-12-05T09:22:05",
            "2004-12-05T09:22:05+01:00",
            "2004-12-05 09:22:05Z",
            "2023-02-29T00:00:00Z",
            "2004-12-05T24:00:00Z",
            "2004-12-05T23:59:60Z",
            "2004-12-05T09:22:05.Z",
            "+004-12-05T09:22:05Z",
            "2004-12-05T09:22:05ZZ",
            "",
        ] {
            assert_eq!(parse(bad, "t"), Err(SamlError::BadTime("t")), "{bad}");
        }
    }

    #[test]
    fn format_round_trips() {
        for t in [0, 1_102_238_525, 1_709_251_199, 253_402_300_799] {
            assert_eq!(parse(&format(t), "t").unwrap(), t);
        }
        assert_eq!(format(1_102_238_525), "2004-12-05T09:22:05Z");
    }
}
