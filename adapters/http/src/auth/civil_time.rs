//! Conversions between unix seconds and the two UTC text forms authentication uses: the
//! `X-Sdk-Date` basic form `YYYYMMDDTHHMMSSZ` and Keystone's `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
//!
//! Pure arithmetic on the proleptic Gregorian calendar (H. Hinnant's `days_from_civil`); it
//! never reads a clock, so callers pass the time in.

const SECONDS_PER_DAY: i64 = 86_400;

/// Smallest and largest unix second this module formats: years 0000 through 9999.
pub const UNIX_S_MIN: i64 = -62_167_219_200;
pub const UNIX_S_MAX: i64 = 253_402_300_799;

/// Days since 1970-01-01 of a valid civil date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_shifted = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_shifted + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_shifted = (5 * day_of_year + 2) / 153;
    let day = u32::try_from(day_of_year - (153 * month_shifted + 2) / 5 + 1).expect("day 1..=31");
    let month = u32::try_from(if month_shifted < 10 {
        month_shifted + 3
    } else {
        month_shifted - 9
    })
    .expect("month 1..=12");
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => unreachable!("month {month} outside 1..=12"),
    }
}

/// Parses a run of ASCII digits; `None` for anything else.
fn digits(text: &[u8]) -> Option<u32> {
    let mut value: u32 = 0;
    for &byte in text {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(byte - b'0');
    }
    Some(value)
}

/// Parses `YYYYMMDDTHHMMSSZ` (exactly 16 bytes, a real calendar date, seconds 00-59) into unix
/// seconds. Anything else, including leap seconds and lower-case letters, is `None`.
pub fn sdk_date_parse(text: &[u8]) -> Option<i64> {
    if text.len() != 16 || text[8] != b'T' || text[15] != b'Z' {
        return None;
    }
    let year = i64::from(digits(&text[0..4])?);
    let month = digits(&text[4..6])?;
    let day = digits(&text[6..8])?;
    let hour = i64::from(digits(&text[9..11])?);
    let minute = i64::from(digits(&text[11..13])?);
    let second = i64::from(digits(&text[13..15])?);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let unix_s = days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + minute * 60;
    Some(unix_s + second)
}

/// Splits unix seconds into (year, month, day, hour, minute, second).
fn civil_parts(unix_s: i64) -> (i64, u32, u32, i64, i64, i64) {
    assert!(unix_s >= UNIX_S_MIN, "time {unix_s} before year 0");
    assert!(unix_s <= UNIX_S_MAX, "time {unix_s} after year 9999");
    let (year, month, day) = civil_from_days(unix_s.div_euclid(SECONDS_PER_DAY));
    let second_of_day = unix_s.rem_euclid(SECONDS_PER_DAY);
    (
        year,
        month,
        day,
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
    )
}

/// Formats unix seconds as `YYYYMMDDTHHMMSSZ`. Panics outside years 0000-9999.
pub fn sdk_date_format(unix_s: i64) -> String {
    let (year, month, day, hour, minute, second) = civil_parts(unix_s);
    format!("{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z")
}

/// Formats unix seconds as Keystone does, `YYYY-MM-DDTHH:MM:SS.000000Z`. Panics outside years
/// 0000-9999.
pub fn keystone_time_format(unix_s: i64) -> String {
    let (year, month, day, hour, minute, second) = civil_parts(unix_s);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.000000Z")
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
        // Goal: the calendar arithmetic agrees with dates computed elsewhere (`date -u -d`).
        check("19700101T000000Z", 0);
        check("20261125T183824Z", 1_795_631_904);
        check("20000229T235959Z", 951_868_799);
        check("19691231T235959Z", -1);
        check("00000101T000000Z", UNIX_S_MIN);
        check("99991231T235959Z", UNIX_S_MAX);
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        // Goal: no off-by-one anywhere in the 400-year cycle. Method: walk day by day.
        let start = days_from_civil(1900, 1, 1);
        for days in start..start + 146_097 {
            let unix_s = days * SECONDS_PER_DAY + 3_661;
            let text = sdk_date_format(unix_s);
            assert_eq!(sdk_date_parse(text.as_bytes()), Some(unix_s), "{text}");
        }
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
            "20261125T243824Z",
            "20261125T186024Z",
            "20261125T183860Z",
            "20261100T183824Z",
            "+2026112T183824Z",
            "20261125T183824Z ",
        ] {
            assert_eq!(sdk_date_parse(text.as_bytes()), None, "{text:?}");
        }
        assert_eq!(
            sdk_date_parse("20240229T000000Z".as_bytes()),
            Some(1_709_164_800)
        );
    }

    #[test]
    fn keystone_format_has_microseconds() {
        assert_eq!(
            keystone_time_format(1_795_631_904),
            "2026-11-25T18:38:24.000000Z"
        );
        assert_eq!(keystone_time_format(0), "1970-01-01T00:00:00.000000Z");
    }
}
