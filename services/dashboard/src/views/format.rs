//! Human text for numbers and times: sizes, speeds, ETAs, percentages, timestamps.
//!
//! `static/app.js` formats live progress events with the same rules (`fmtBytes`, `fmtEta`),
//! so a bar updated in the browser reads exactly like one rendered here.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// `15789453312` → "15.8 GB" (decimal units, as Sonarr/Radarr and qBittorrent show them).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// Bytes per second → "2.3 MB/s".
pub fn speed(bytes_per_sec: u64) -> String {
    format!("{}/s", bytes(bytes_per_sec))
}

/// Seconds left → "45s", "4m 32s", "2h 05m", "3d 4h"; `None` (unknown) → "∞".
pub fn eta(seconds: Option<u64>) -> String {
    let Some(s) = seconds else { return "∞".to_owned() };
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Progress 0–1 → whole percent, 0–100. Never shows 100 before the download is complete,
/// and never 0 once something arrived, so the number always agrees with the bar's intent.
pub fn percent(progress: f64) -> u32 {
    if !progress.is_finite() || progress <= 0.0 {
        return 0;
    }
    if progress >= 1.0 {
        return 100;
    }
    ((progress * 100.0).floor() as u32).clamp(1, 99)
}

/// RFC 3339, for `<time datetime=…>` (the browser turns it into local time).
pub fn iso(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// "2025-01-14 12:34 UTC": what shows before (or without) the browser's localization.
pub fn utc(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(format_description!("[year]-[month]-[day] [hour]:[minute] UTC")).unwrap_or_default()
}

/// Only `http(s)` links reach an `href` or `src`: a `javascript:` URL in user data must not run.
pub fn web_url(url: Option<&str>) -> Option<String> {
    let url = url?.trim();
    let scheme = url.split_once(':')?.0;
    (scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http")).then(|| url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_speeds_read_like_the_download_client() {
        assert_eq!(bytes(15_789_453_312), "15.8 GB");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(speed(2_300_000), "2.3 MB/s");
        assert_eq!(speed(0), "0 B/s");
    }

    #[test]
    fn etas_are_short_and_unknown_is_infinity() {
        assert_eq!(eta(Some(45)), "45s");
        assert_eq!(eta(Some(272)), "4m 32s");
        assert_eq!(eta(Some(7500)), "2h 05m");
        assert_eq!(eta(Some(3 * 86_400 + 4 * 3600)), "3d 4h");
        assert_eq!(eta(None), "∞");
    }

    #[test]
    fn percent_is_never_rounded_to_done_early() {
        assert_eq!(percent(0.0), 0);
        assert_eq!(percent(0.001), 1);
        assert_eq!(percent(0.675), 67);
        assert_eq!(percent(0.9999), 99);
        assert_eq!(percent(1.0), 100);
        assert_eq!(percent(f64::NAN), 0);
    }

    #[test]
    fn only_web_urls_are_linked() {
        assert_eq!(web_url(Some("https://jf.example/web")).as_deref(), Some("https://jf.example/web"));
        assert_eq!(web_url(Some("HTTP://x")).as_deref(), Some("HTTP://x"));
        assert_eq!(web_url(Some("javascript:alert(1)")), None);
        assert_eq!(web_url(Some(" data:text/html,x")), None);
        assert_eq!(web_url(Some("/relative")), None);
        assert_eq!(web_url(None), None);
    }

    #[test]
    fn times_have_a_utc_fallback_and_an_iso_form() {
        let t = time::macros::datetime!(2025-01-14 12:34:56 UTC);
        assert_eq!(utc(t), "2025-01-14 12:34 UTC");
        assert_eq!(iso(t), "2025-01-14T12:34:56Z");
    }
}
