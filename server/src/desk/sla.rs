//! Service levels: response and resolution targets per kind and priority, counted in working
//! time (Mon-Fri 08:30-16:30 Asia/Bangkok by default, minus public holidays), with the clock
//! paused while a request waits on its requester.
//!
//! Everything here is a pure function of the times it is given, so tests fix the clock.

use std::collections::BTreeSet;

use jiff::civil::{Date, Time, Weekday};
use serde::Serialize;

use super::kinds::Kind;

/// Working hours and holidays.
#[derive(Debug, Clone)]
pub struct Calendar {
    pub day_start: Time,
    pub day_end: Time,
    pub holidays: BTreeSet<Date>,
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar {
            day_start: Time::constant(8, 30, 0, 0),
            day_end: Time::constant(16, 30, 0, 0),
            holidays: BTreeSet::new(),
        }
    }
}

const DAY_MS: i64 = 86_400_000;

impl Calendar {
    fn is_working_day(&self, date: Date) -> bool {
        !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday)
            && !self.holidays.contains(&date)
    }

    /// Milliseconds of working time between two instants (0 when `to` is not after `from`).
    pub fn working_ms(&self, from_ms: i64, to_ms: i64) -> i64 {
        if to_ms <= from_ms {
            return 0;
        }
        let offset_ms = i64::from(crate::BANGKOK.seconds()) * 1000;
        let local_from = from_ms + offset_ms;
        let local_to = to_ms + offset_ms;
        let start_of_day = |t: Time| -> i64 {
            (i64::from(t.hour()) * 3600 + i64::from(t.minute()) * 60 + i64::from(t.second())) * 1000
        };
        let (open, close) = (start_of_day(self.day_start), start_of_day(self.day_end));
        let mut day = local_from.div_euclid(DAY_MS);
        let last = local_to.div_euclid(DAY_MS);
        let mut total = 0;
        while day <= last {
            let date = Date::constant(1970, 1, 1)
                .checked_add(jiff::Span::new().days(day))
                .unwrap_or(Date::MAX);
            if self.is_working_day(date) {
                let lo = (day * DAY_MS + open).max(local_from);
                let hi = (day * DAY_MS + close).min(local_to);
                total += (hi - lo).max(0);
            }
            day += 1;
        }
        total
    }

    /// The instant `ms` of working time after `from_ms`: the inverse of [`Calendar::working_ms`]
    /// (`working_ms(from, add_working_ms(from, ms)) == ms`). Looks at most 30 years ahead.
    pub fn add_working_ms(&self, from_ms: i64, ms: i64) -> i64 {
        if ms <= 0 {
            return from_ms;
        }
        let offset_ms = i64::from(crate::BANGKOK.seconds()) * 1000;
        let of_day = |t: Time| -> i64 {
            (i64::from(t.hour()) * 3600 + i64::from(t.minute()) * 60 + i64::from(t.second())) * 1000
        };
        let (open, close) = (of_day(self.day_start), of_day(self.day_end));
        let mut cursor = from_ms + offset_ms;
        let mut day = cursor.div_euclid(DAY_MS);
        let mut left = ms;
        for _ in 0..366 * 30 {
            let date = Date::constant(1970, 1, 1)
                .checked_add(jiff::Span::new().days(day))
                .unwrap_or(Date::MAX);
            if self.is_working_day(date) {
                let lo = (day * DAY_MS + open).max(cursor);
                let hi = day * DAY_MS + close;
                if hi > lo {
                    if lo + left <= hi {
                        return lo + left - offset_ms;
                    }
                    left -= hi - lo;
                }
            }
            day += 1;
            cursor = day * DAY_MS;
        }
        cursor - offset_ms
    }
}

/// Response and resolution targets in working minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Targets {
    pub response_minutes: i64,
    pub resolution_minutes: i64,
}

/// The default targets of a kind at a priority. A working day is 8 hours (480 minutes).
pub fn targets(kind: Kind, priority: &str) -> Targets {
    let (response, resolution) = match priority {
        "urgent" => (30, 240),
        "high" => (60, 480),
        "low" => (480, 4800),
        _ => (240, 1440),
    };
    // Data requests are answered the same day (seed 004: delivered in minutes once approved);
    // purchases run through procurement and take weeks.
    let resolution = match kind {
        Kind::DataService => resolution.min(480),
        Kind::Purchase => resolution.max(9600),
        Kind::Loan => resolution.max(4800),
        _ => resolution,
    };
    Targets {
        response_minutes: response,
        resolution_minutes: resolution,
    }
}

/// The times of one request that its SLA depends on (ms since the epoch).
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    /// When the clock starts: filing, or the last approval for kinds that need one.
    pub start: Option<i64>,
    pub responded: Option<i64>,
    pub resolved: Option<i64>,
    /// Working time already paused while waiting on the requester.
    pub paused_ms: i64,
    /// Since when it waits on the requester now, if it does.
    pub paused_since: Option<i64>,
}

/// Where a request stands against its targets.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    pub response_target_minutes: i64,
    pub resolution_target_minutes: i64,
    /// Working minutes until the first response (so far, when none yet).
    pub response_minutes: i64,
    /// Working minutes until resolved (so far), without the time paused on the requester.
    pub resolution_minutes: i64,
    pub response_breached: bool,
    pub resolution_breached: bool,
    pub paused: bool,
    /// Whether the clock runs at all (it starts after approval).
    pub running: bool,
    /// When the first response is due, until there is one (RFC 3339).
    pub response_due_at: Option<String>,
    /// When the resolution is due, while the clock runs; a pause on the requester moves it.
    pub resolution_due_at: Option<String>,
}

/// Evaluates a request's clock at `now`.
pub fn status(calendar: &Calendar, targets: Targets, clock: Clock, now: i64) -> Status {
    let Some(start) = clock.start else {
        return Status {
            response_target_minutes: targets.response_minutes,
            resolution_target_minutes: targets.resolution_minutes,
            response_minutes: 0,
            resolution_minutes: 0,
            response_breached: false,
            resolution_breached: false,
            paused: false,
            running: false,
            response_due_at: None,
            resolution_due_at: None,
        };
    };
    let response_ms = calendar.working_ms(start, clock.responded.unwrap_or(now));
    let end = clock.resolved.unwrap_or(now);
    let current_pause = match (clock.paused_since, clock.resolved) {
        (Some(since), None) => calendar.working_ms(since, now),
        _ => 0,
    };
    let resolution_ms = (calendar.working_ms(start, end) - clock.paused_ms - current_pause).max(0);
    let response_minutes = response_ms / 60_000;
    let resolution_minutes = resolution_ms / 60_000;
    Status {
        response_target_minutes: targets.response_minutes,
        resolution_target_minutes: targets.resolution_minutes,
        response_minutes,
        resolution_minutes,
        response_breached: response_ms > targets.response_minutes * 60_000,
        resolution_breached: resolution_ms > targets.resolution_minutes * 60_000,
        paused: clock.paused_since.is_some() && clock.resolved.is_none(),
        running: clock.resolved.is_none(),
        response_due_at: (clock.responded.is_none() && clock.resolved.is_none()).then(|| {
            crate::db::rfc3339(calendar.add_working_ms(start, targets.response_minutes * 60_000))
        }),
        resolution_due_at: clock.resolved.is_none().then(|| {
            crate::db::rfc3339(calendar.add_working_ms(
                start,
                targets.resolution_minutes * 60_000 + clock.paused_ms + current_pause,
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds of a Bangkok wall-clock time like "2026-11-20 09:00".
    fn at(s: &str) -> i64 {
        let dt: jiff::civil::DateTime = s.parse().unwrap();
        dt.to_zoned(jiff::tz::TimeZone::fixed(crate::BANGKOK))
            .unwrap()
            .timestamp()
            .as_millisecond()
    }

    fn check(from: &str, to: &str, holidays: &[&str], expected_minutes: i64) {
        let calendar = Calendar {
            holidays: holidays.iter().map(|d| d.parse().unwrap()).collect(),
            ..Calendar::default()
        };
        assert_eq!(
            calendar.working_ms(at(from), at(to)) / 60_000,
            expected_minutes,
            "{from} -> {to} with holidays {holidays:?}"
        );
    }

    #[test]
    fn working_time() {
        // 2026-11-20 is a Friday; 2026-12-05 (Father's Day) a Saturday; 2026-12-10 a Thursday.
        check("2026-11-20 09:00", "2026-11-20 10:30", &[], 90);
        check("2026-11-20 07:00", "2026-11-20 09:00", &[], 30);
        check("2026-11-20 16:00", "2026-11-20 20:00", &[], 30);
        check("2026-11-20 12:00", "2026-11-20 12:00", &[], 0);
        check("2026-11-20 15:30", "2026-11-23 09:30", &[], 120); // over a weekend
        check("2026-11-21 10:00", "2026-11-22 15:00", &[], 0); // a weekend only
        check("2026-12-09 16:00", "2026-12-11 09:00", &["2026-12-10"], 60); // Constitution Day
        check("2026-11-16 08:30", "2026-11-20 16:30", &[], 5 * 480); // a full week
        check("2026-11-20 17:00", "2026-11-20 08:00", &[], 0); // backwards
        check("2026-12-31 16:00", "2027-01-04 08:45", &["2027-01-01"], 45); // New Year
    }

    #[test]
    fn due_times() {
        let calendar = Calendar {
            holidays: ["2026-12-10".parse().unwrap()].into(),
            ..Calendar::default()
        };
        let check = |from: &str, minutes: i64, expected: &str| {
            let due = calendar.add_working_ms(at(from), minutes * 60_000);
            assert_eq!(due, at(expected), "{from} + {minutes} working minutes");
            assert_eq!(
                calendar.working_ms(at(from), due),
                minutes * 60_000,
                "the inverse of working_ms"
            );
        };
        check("2026-11-20 09:00", 90, "2026-11-20 10:30");
        check("2026-11-20 07:00", 30, "2026-11-20 09:00"); // before opening
        check("2026-11-20 16:00", 60, "2026-11-23 09:00"); // over a weekend
        check("2026-11-21 11:00", 480, "2026-11-23 16:30"); // filed on a Saturday
        check("2026-12-09 16:00", 60, "2026-12-11 09:00"); // Constitution Day
        check("2026-11-16 08:30", 5 * 480, "2026-11-20 16:30");
        assert_eq!(
            calendar.add_working_ms(at("2026-11-21 11:00"), 0),
            at("2026-11-21 11:00")
        );
    }

    #[test]
    fn targets_and_pauses() {
        let calendar = Calendar::default();
        let t = Targets {
            response_minutes: 60,
            resolution_minutes: 480,
        };
        let start = at("2026-11-20 09:00");
        let check = |clock: Clock, now: &str, expected: (i64, i64, bool, bool, bool)| {
            let s = status(&calendar, t, clock, at(now));
            assert_eq!(
                (
                    s.response_minutes,
                    s.resolution_minutes,
                    s.response_breached,
                    s.resolution_breached,
                    s.paused
                ),
                expected,
                "{clock:?} at {now}"
            );
        };
        let base = Clock {
            start: Some(start),
            ..Clock::default()
        };
        check(base, "2026-11-20 09:30", (30, 30, false, false, false));
        check(base, "2026-11-20 10:01", (61, 61, true, false, false));
        let responded = Clock {
            responded: Some(at("2026-11-20 09:10")),
            ..base
        };
        check(
            responded,
            "2026-11-23 09:00",
            (10, 480, false, false, false),
        );
        check(responded, "2026-11-23 09:01", (10, 481, false, true, false));
        // Waiting on the requester since Friday 10:00: Monday's hours do not count.
        let waiting = Clock {
            paused_since: Some(at("2026-11-20 10:00")),
            ..responded
        };
        check(waiting, "2026-11-24 12:00", (10, 60, false, false, true));
        // Paused earlier for 2 working hours, then resolved.
        let resolved = Clock {
            paused_ms: 120 * 60_000,
            resolved: Some(at("2026-11-23 13:00")),
            ..responded
        };
        check(
            resolved,
            "2026-12-01 12:00",
            (10, 450 + 270 - 120, false, true, false),
        );
        let not_started = status(&calendar, t, Clock::default(), start);
        assert!(!not_started.running && !not_started.resolution_breached);
    }
}
