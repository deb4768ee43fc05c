//! Freeze windows: times when no rollout starts or goes on (a weekend evening's peak, a tournament).
//! A window is a day set, a time range and a time zone, `Sat 18:00-23:59 Europe/Paris`:
//! - days: `*` (every day), a day (`Mon` ... `Sun`), a range (`Mon-Fri`, wrapping: `Fri-Mon`) or a
//!   comma-separated list of those (`Sat,Sun`);
//! - a range `HH:MM-HH:MM` of local time, the end included to the minute; an end before the start runs
//!   past midnight into the next day (`Fri 22:00-02:00`: from Friday 22:00 to Saturday 02:00);
//! - an IANA time zone (`UTC`, `Europe/Paris`), read from the system's zoneinfo.
//!
//! Windows come from `--freeze` (every set) and a set's `hotsync.dev/freeze` annotation (several
//! windows separated by `;`). Pure: the time is passed in, so that tests inject it.

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// On a set: its own freeze windows, separated by `;`.
pub const ANNOTATION_FREEZE: &str = "hotsync.dev/freeze";

/// One freeze window.
#[derive(Clone, Debug)]
pub struct Window {
    /// As written, for messages.
    pub text: String,
    days: [bool; 7],
    start: Time,
    end: Time,
    tz: TimeZone,
}

impl PartialEq for Window {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

fn weekday(s: &str) -> Option<Weekday> {
    Some(match s.to_ascii_lowercase().as_str() {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    })
}

fn index(d: Weekday) -> usize {
    usize::try_from(d.to_monday_zero_offset()).unwrap_or(0)
}

fn hhmm(s: &str) -> Option<Time> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

/// Parses one window.
///
/// # Errors
/// A message saying which part is wrong.
pub fn parse(text: &str) -> Result<Window, String> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [days, range, tz] = parts.as_slice() else {
        return Err(format!(
            "freeze window {text:?} is not DAYS HH:MM-HH:MM TIMEZONE, such as 'Sat 18:00-23:59 Europe/Paris'"
        ));
    };
    let mut set = [false; 7];
    for item in days.split(',') {
        if item == "*" {
            set = [true; 7];
            continue;
        }
        let (a, b) = item.split_once('-').unwrap_or((item, item));
        let (Some(a), Some(b)) = (weekday(a), weekday(b)) else {
            return Err(format!(
                "freeze window {text:?}: {item:?} is not a day (Mon..Sun), a range of days (Mon-Fri) or *"
            ));
        };
        let mut i = index(a);
        loop {
            set[i] = true;
            if i == index(b) {
                break;
            }
            i = (i + 1) % 7;
        }
    }
    let Some((start, end)) = range
        .split_once('-')
        .and_then(|(a, b)| Some((hhmm(a)?, hhmm(b)?)))
    else {
        return Err(format!(
            "freeze window {text:?}: {range:?} is not a time range HH:MM-HH:MM"
        ));
    };
    let zone =
        TimeZone::get(tz).map_err(|e| format!("freeze window {text:?}: time zone {tz:?}: {e}"))?;
    Ok(Window {
        text: text.to_string(),
        days: set,
        start,
        end,
        tz: zone,
    })
}

/// Parses the windows of a `hotsync.dev/freeze` annotation, separated by `;`.
///
/// # Errors
/// The first window that does not parse.
pub fn parse_list(text: &str) -> Result<Vec<Window>, String> {
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse)
        .collect()
}

impl Window {
    /// Whether `now` falls inside the window.
    pub fn contains(&self, now: Timestamp) -> bool {
        let local = now.to_zoned(self.tz.clone());
        let t = local.time();
        let today = index(local.weekday());
        let yesterday = (today + 6) % 7;
        let end = self
            .end
            .with()
            .second(59)
            .subsec_nanosecond(999_999_999)
            .build();
        let end = end.unwrap_or(self.end);
        if self.start <= self.end {
            self.days[today] && t >= self.start && t <= end
        } else {
            // Past midnight: the evening part belongs to today, the morning part to yesterday.
            (self.days[today] && t >= self.start) || (self.days[yesterday] && t <= end)
        }
    }
}

/// The first window of `windows` that `now` falls in.
pub fn active(windows: &[Window], now: Timestamp) -> Option<&Window> {
    windows.iter().find(|w| w.contains(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn a_saturday_evening_in_paris_is_frozen_and_the_afternoon_is_not() {
        let w = parse("Sat 18:00-23:59 Europe/Paris").expect("ok");
        // 2026-12-05 is a Saturday; Paris is UTC+1 in December.
        assert!(w.contains(at("2026-12-05T17:00:00Z")), "18:00 Paris");
        assert!(w.contains(at("2026-12-05T22:59:30Z")), "23:59:30 Paris");
        assert!(!w.contains(at("2026-12-05T16:59:00Z")), "17:59 Paris");
        assert!(!w.contains(at("2026-12-06T17:30:00Z")), "Sunday");
    }

    #[test]
    fn days_are_lists_ranges_that_wrap_or_every_day() {
        let w = parse("Fri-Mon 00:00-23:59 UTC").expect("ok");
        assert!(w.contains(at("2026-12-07T12:00:00Z")), "Monday");
        assert!(!w.contains(at("2026-12-08T12:00:00Z")), "Tuesday");
        let every = parse("* 12:00-13:00 UTC").expect("ok");
        assert!(every.contains(at("2026-12-08T12:30:00Z")));
        let list = parse("Sat,Sun 12:00-13:00 UTC").expect("ok");
        assert!(list.contains(at("2026-12-06T12:30:00Z")));
    }

    #[test]
    fn a_range_past_midnight_runs_into_the_next_day() {
        let w = parse("Fri 22:00-02:00 UTC").expect("ok");
        assert!(w.contains(at("2026-12-04T23:00:00Z")), "Friday night");
        assert!(w.contains(at("2026-12-05T01:30:00Z")), "Saturday early");
        assert!(!w.contains(at("2026-12-05T23:00:00Z")), "Saturday night");
    }

    #[test]
    fn bad_windows_say_which_part_is_wrong() {
        for (bad, part) in [
            ("Sat 18:00-23:59", "DAYS HH:MM-HH:MM TIMEZONE"),
            ("Caturday 18:00-23:59 UTC", "not a day"),
            ("Sat 18-23 UTC", "time range"),
            ("Sat 18:00-23:59 Mars/Olympus", "time zone"),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains(part), "{bad}: {e}");
        }
        assert_eq!(
            parse_list("Sat 18:00-23:59 UTC; Sun 18:00-23:59 UTC")
                .expect("ok")
                .len(),
            2
        );
    }
}
