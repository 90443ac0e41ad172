//! The two UTC text forms authentication uses, read and written by the `time` crate: the
//! `X-Sdk-Date` basic form `YYYYMMDDTHHMMSSZ` and Keystone's `YYYY-MM-DDTHH:MM:SS.000000Z`.
//!
//! The calendar (month lengths, leap years, the epoch) is `time`'s; this module only fixes
//! the two shapes and their bounds. It never reads a clock: callers pass unix seconds.

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Smallest and largest unix second the four-digit year of both forms holds: years 0000
/// through 9999.
pub const UNIX_S_MIN: i64 = -62_167_219_200;
pub const UNIX_S_MAX: i64 = 253_402_300_799;

/// Length of `YYYYMMDDTHHMMSSZ`.
const SDK_DATE_BYTES: usize = 16;

const SDK_DATE: &[BorrowedFormatItem<'_>] =
    format_description!("[year repr:full padding:zero][month][day]T[hour][minute][second]Z");
const KEYSTONE_TIME: &[BorrowedFormatItem<'_>] = format_description!(
    "[year repr:full padding:zero]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
);

/// Parses `YYYYMMDDTHHMMSSZ` (exactly 16 ASCII digits and letters, a real calendar date,
/// seconds 00-59) into unix seconds. Anything else, including leap seconds, signs and
/// lower-case letters, is `None`.
pub fn sdk_date_parse(text: &[u8]) -> Option<i64> {
    // `time` reads a year of up to four digits and would take a sign; the wire form is
    // exactly four digits, so the shape is checked first.
    let digits_at = |range: std::ops::Range<usize>| text[range].iter().all(u8::is_ascii_digit);
    if text.len() != SDK_DATE_BYTES || !digits_at(0..8) || !digits_at(9..15) {
        return None;
    }
    let text = std::str::from_utf8(text).ok()?;
    let parsed = PrimitiveDateTime::parse(text, SDK_DATE).ok()?;
    Some(parsed.assume_utc().unix_timestamp())
}

/// The UTC date and time of `unix_s`. Panics outside years 0000-9999, which the callers'
/// own bounds exclude (the skew window, the configured token lifetime).
fn utc(unix_s: i64) -> OffsetDateTime {
    assert!(unix_s >= UNIX_S_MIN, "time {unix_s} before year 0");
    assert!(unix_s <= UNIX_S_MAX, "time {unix_s} after year 9999");
    OffsetDateTime::from_unix_timestamp(unix_s).expect("years 0000-9999 are in time's range")
}

/// Formats unix seconds as `YYYYMMDDTHHMMSSZ`. Panics outside years 0000-9999.
pub fn sdk_date_format(unix_s: i64) -> String {
    let text = utc(unix_s)
        .format(SDK_DATE)
        .expect("every component of a four-digit year formats");
    assert_eq!(text.len(), SDK_DATE_BYTES, "{text} is not the basic form");
    text
}

/// Formats unix seconds as Keystone does, `YYYY-MM-DDTHH:MM:SS.000000Z`. Panics outside years
/// 0000-9999.
pub fn keystone_time_format(unix_s: i64) -> String {
    utc(unix_s)
        .format(KEYSTONE_TIME)
        .expect("every component of a four-digit year formats")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that `text` parses to `unix_s` and formats back to itself.
    fn check(text: &str, unix_s: i64) {
        assert_eq!(sdk_date_parse(text.as_bytes()), Some(unix_s), "{text}");
        assert_eq!(sdk_date_format(unix_s), text);
    }

    #[test]
    fn known_dates_round_trip() {
        // Goal: the dates agree with ones computed elsewhere (`date -u -d`).
        check("19700101T000000Z", 0);
        check("20261125T183824Z", 1_795_631_904);
        check("20000229T235959Z", 951_868_799);
        check("19691231T235959Z", -1);
        check("00000101T000000Z", UNIX_S_MIN);
        check("99991231T235959Z", UNIX_S_MAX);
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        // Goal: parse and format are inverse on every day of a 400-year cycle, leap days
        // included. Method: walk day by day from 1900-01-01 (unix day -25567).
        let start_day: i64 = -25_567;
        for day in start_day..start_day + 146_097 {
            let unix_s = day * 86_400 + 3_661;
            let text = sdk_date_format(unix_s);
            assert_eq!(sdk_date_parse(text.as_bytes()), Some(unix_s), "{text}");
        }
        assert_eq!(sdk_date_format(start_day * 86_400), "19000101T000000Z");
    }

    #[test]
    fn malformed_dates_are_rejected() {
        for text in [
            "",
            "20261125T183824",
            "20261125t183824Z",
            "20261125T183824z",
            "2026112ST183824Z",
            "20261325T183824Z",
            "20260230T000000Z",
            "20250229T000000Z",
            "19000229T000000Z",
            "20261125T243824Z",
            "20261125T186024Z",
            "20261125T183860Z",
            "20261100T183824Z",
            "+2026112T183824Z",
            "-0001125T183824Z",
            " 2026112T183824Z",
            "20261125T+83824Z",
            "20261125T183824Z ",
            "２０261125T18382Z",
        ] {
            assert_eq!(sdk_date_parse(text.as_bytes()), None, "{text:?}");
        }
        assert_eq!(
            sdk_date_parse("20240229T000000Z".as_bytes()),
            Some(1_709_164_800)
        );
        assert_eq!(
            sdk_date_parse("20000229T000000Z".as_bytes()),
            Some(951_782_400)
        );
    }

    #[test]
    fn keystone_format_has_microseconds() {
        // Goal: the exact shape Keystone clients parse, unchanged from the hand-written
        // formatter this module replaced.
        assert_eq!(
            keystone_time_format(1_795_631_904),
            "2026-11-25T18:38:24.000000Z"
        );
        assert_eq!(keystone_time_format(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(keystone_time_format(-1), "1969-12-31T23:59:59.000000Z");
        assert_eq!(
            keystone_time_format(UNIX_S_MIN),
            "0000-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            keystone_time_format(UNIX_S_MAX),
            "9999-12-31T23:59:59.000000Z"
        );
    }

    #[test]
    #[should_panic(expected = "after year 9999")]
    fn formatting_past_year_9999_is_a_bug() {
        keystone_time_format(UNIX_S_MAX + 1);
    }
}
