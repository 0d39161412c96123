//! Values as people read them on pages: a device as "Chrome 156 on Linux" rather than its
//! user-agent string, and a time as "3 minutes ago" with the exact UTC time on hover.

use authx_core::Timestamp;

/// A device, from a session's user agent: a short label, and the raw string for the hover text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Device {
    /// "Chrome 156 on Linux", "Firefox 140 on Windows 10", or "Unknown device".
    pub(crate) label: String,
    /// The user agent as the browser sent it ("" when none was).
    pub(crate) raw: String,
}

/// Longest user agent parsed; a longer one is shown as unknown (the parser's work grows with
/// the input, and no browser sends more).
const MAX_PARSED_UA: usize = 512;

impl Device {
    /// The device a user agent names.
    pub(crate) fn of(user_agent: Option<&str>) -> Self {
        let raw = user_agent.unwrap_or_default();
        let parsed = (!raw.is_empty() && raw.len() <= MAX_PARSED_UA)
            .then(|| woothee::parser::Parser::new().parse(raw))
            .flatten()
            .filter(|r| r.name != woothee::woothee::VALUE_UNKNOWN);
        let label = match parsed {
            Some(r) => {
                let major = r.version.split('.').next().unwrap_or_default();
                let browser = if major.is_empty() || major == woothee::woothee::VALUE_UNKNOWN {
                    r.name.to_owned()
                } else {
                    format!("{} {major}", r.name)
                };
                if r.os == woothee::woothee::VALUE_UNKNOWN {
                    browser
                } else {
                    format!("{browser} on {}", r.os)
                }
            }
            None if raw.is_empty() => "Unknown device".to_owned(),
            None => "Other device".to_owned(),
        };
        Self {
            label,
            raw: raw.to_owned(),
        }
    }
}

/// A moment: relative to now for reading, exact for the hover text and the `datetime`
/// attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct When {
    /// "just now", "3 minutes ago", "yesterday", "in 5 minutes".
    pub(crate) relative: String,
    /// "2026-12-05 09:15 UTC".
    pub(crate) exact: String,
    /// RFC 3339, for `<time datetime>`.
    pub(crate) iso: String,
}

impl When {
    /// `then` as seen at `now`.
    pub(crate) fn at(then: Timestamp, now: Timestamp) -> Self {
        Self {
            relative: relative(then, now),
            exact: exact(then),
            iso: iso(then),
        }
    }
}

/// RFC 3339 in UTC.
pub(crate) fn iso(t: Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.secs())
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn exact(t: Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.secs())
        .map(|d| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                d.year(),
                u8::from(d.month()),
                d.day(),
                d.hour(),
                d.minute()
            )
        })
        .unwrap_or_default()
}

/// "n unit(s)".
fn count(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

fn relative(then: Timestamp, now: Timestamp) -> String {
    let delta = now.secs().saturating_sub(then.secs());
    let ahead = delta < 0;
    let secs = delta.saturating_abs();
    let span = match secs {
        0..60 => return "just now".to_owned(),
        60..3_600 => count(secs / 60, "minute"),
        3_600..86_400 => count(secs / 3_600, "hour"),
        86_400..172_800 if !ahead => return "yesterday".to_owned(),
        86_400..2_592_000 => count(secs / 86_400, "day"),
        2_592_000..31_536_000 => count(secs / 2_592_000, "month"),
        _ => count(secs / 31_536_000, "year"),
    };
    if ahead {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_read_as_browser_version_and_system() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                      HeadlessChrome/156.0.8078.73 Safari/537.36";
        let label = Device::of(Some(chrome)).label;
        assert!(
            label.contains("156") && label.ends_with("on Linux"),
            "{label}"
        );
        let desktop = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like \
                       Gecko) Chrome/131.0.0.0 Safari/537.36";
        assert_eq!(Device::of(Some(desktop)).label, "Chrome 131 on Windows 10");
        let firefox = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:128.0) Gecko/20100101 \
                       Firefox/128.0";
        assert_eq!(Device::of(Some(firefox)).label, "Firefox 128 on Mac OSX");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
        assert_eq!(Device::of(Some(iphone)).label, "Safari 17 on iPhone");
        // What is not a browser, or nothing at all, says so; the raw string is kept.
        let curl = Device::of(Some("authx-testkit"));
        assert_eq!(
            (curl.label.as_str(), curl.raw.as_str()),
            ("Other device", "authx-testkit")
        );
        assert_eq!(Device::of(None).label, "Unknown device");
        assert_eq!(Device::of(Some(&"A".repeat(5_000))).label, "Other device");
    }

    #[test]
    fn times_read_relative_with_the_exact_time_kept() {
        let now = Timestamp(1_764_925_200); // 2025-12-05 09:00 UTC
        let ago = |s: i64| When::at(Timestamp(now.secs() - s), now).relative;
        assert_eq!(ago(0), "just now");
        assert_eq!(ago(59), "just now");
        assert_eq!(ago(60), "1 minute ago");
        assert_eq!(ago(180), "3 minutes ago");
        assert_eq!(ago(7_200), "2 hours ago");
        assert_eq!(ago(90_000), "yesterday");
        assert_eq!(ago(5 * 86_400), "5 days ago");
        assert_eq!(ago(65 * 86_400), "2 months ago");
        assert_eq!(ago(800 * 86_400), "2 years ago");
        assert_eq!(ago(-300), "in 5 minutes");
        assert_eq!(ago(-2 * 86_400), "in 2 days");
        let w = When::at(now, now);
        assert_eq!(w.exact, "2025-12-05 09:00 UTC");
        assert_eq!(w.iso, "2025-12-05T09:00:00Z");
    }
}
