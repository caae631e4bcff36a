//! The export window: a half-open UTC interval `[from, to)` and the days it touches.
//!
//! Pure date arithmetic; no I/O.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};

/// A half-open UTC interval `[from, to)`; `from < to` always holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("`{0}` is neither a UTC date (2026-11-20) nor an RFC 3339 time (2026-11-20T06:00:00Z)")]
    Unreadable(String),
    #[error("--from ({from}) must be before --to ({to}): the window [from, to) would be empty")]
    Empty {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    #[error(
        "the window {window} spans {days} days, more than [export] max_window_days = {max}: use \
         shorter windows (one run per part, with --from/--to), or raise [export] max_window_days \
         in the config file"
    )]
    TooLong { window: Window, days: i64, max: u32 },
}

/// Reads a window bound: a date means midnight UTC of that date; a time must carry its offset.
pub fn parse_bound(text: &str) -> Result<DateTime<Utc>, WindowError> {
    let text = text.trim();
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(midnight(date));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| WindowError::Unreadable(text.to_string()))
}

pub fn midnight(date: NaiveDate) -> DateTime<Utc> {
    date.and_time(NaiveTime::MIN).and_utc()
}

impl Window {
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Self, WindowError> {
        if from < to {
            Ok(Window { from, to })
        } else {
            Err(WindowError::Empty { from, to })
        }
    }

    /// The window itself when it spans at most `max_days` days (a part of a day counting
    /// as a day): a longer one would be a typo, and would take memory by the day.
    pub fn check_length(self, max_days: u32) -> Result<Self, WindowError> {
        let length = self.to - self.from;
        if length <= chrono::Duration::days(i64::from(max_days)) {
            return Ok(self);
        }
        let whole = length.num_days();
        let days = whole + i64::from(length > chrono::Duration::days(whole));
        Err(WindowError::TooLong {
            window: self,
            days,
            max: max_days,
        })
    }

    /// The whole UTC day before `now`'s date.
    pub fn yesterday(now: DateTime<Utc>) -> Self {
        let today = now.date_naive();
        let yesterday = today
            .checked_sub_days(Days::new(1))
            .expect("dates after year 1");
        Window {
            from: midnight(yesterday),
            to: midnight(today),
        }
    }

    /// The `lookback_days` whole days ending at `now`'s midnight.
    pub fn trailing_days(now: DateTime<Utc>, days: u32) -> Self {
        let today = now.date_naive();
        let first = today
            .checked_sub_days(Days::new(u64::from(days.max(1))))
            .expect("dates after year 1");
        Window {
            from: midnight(first),
            to: midnight(today),
        }
    }

    pub fn contains(&self, instant: DateTime<Utc>) -> bool {
        self.from <= instant && instant < self.to
    }

    /// Every UTC date with at least one instant in the window: the `dt` partitions it writes.
    pub fn days(&self) -> Vec<NaiveDate> {
        let last = (self.to - chrono::Duration::microseconds(1)).date_naive();
        let mut day = self.from.date_naive();
        let mut days = Vec::new();
        while day <= last {
            days.push(day);
            day = day
                .checked_add_days(Days::new(1))
                .expect("dates before year 262143");
        }
        days
    }

    /// Whether the whole UTC day `dt` lies in the window (false for its partial first and
    /// last days: its edge days).
    pub fn covers_day(&self, dt: NaiveDate) -> bool {
        let start = midnight(dt);
        let end = start + chrono::Duration::days(1);
        self.from <= start && end <= self.to
    }

    /// Whether both ends are midnight UTC, so that every partition it writes is a whole day.
    pub fn is_whole_days(&self) -> bool {
        self.from.time() == NaiveTime::MIN && self.to.time() == NaiveTime::MIN
    }

    /// Splits the window into consecutive windows of at most `days` days each.
    pub fn chunks(&self, days: u32) -> Vec<Window> {
        let step = chrono::Duration::days(i64::from(days.max(1)));
        let mut chunks = Vec::new();
        let mut from = self.from;
        while from < self.to {
            let to = (from + step).min(self.to);
            chunks.push(Window { from, to });
            from = to;
        }
        chunks
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let format = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        write!(f, "[{}, {})", format(self.from), format(self.to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        parse_bound(text).unwrap()
    }

    #[test]
    fn bounds_are_dates_or_rfc3339_times() {
        assert_eq!(at("2026-11-20"), at("2026-11-20T00:00:00Z"));
        assert_eq!(at("2026-11-20T08:00:00+02:00"), at("2026-11-20T06:00:00Z"));
        assert!(matches!(
            parse_bound("20.11.2026"),
            Err(WindowError::Unreadable(_))
        ));
        assert!(matches!(
            parse_bound("2026-11-20T06:00:00"),
            Err(WindowError::Unreadable(_))
        ));
    }

    #[test]
    fn a_window_longer_than_the_maximum_is_refused_naming_the_key() {
        let year = Window::new(at("2026-01-01"), at("2027-01-01")).unwrap();
        assert_eq!(year.check_length(365), Ok(year));
        let longer = Window::new(at("2026-01-01"), at("2027-01-01T00:00:01Z")).unwrap();
        let error = longer.check_length(365).unwrap_err();
        assert!(matches!(
            error,
            WindowError::TooLong {
                days: 366,
                max: 365,
                ..
            }
        ));
        let message = error.to_string();
        assert!(
            message.contains("[2026-01-01T00:00:00Z, 2027-01-01T00:00:01Z)")
                && message.contains("[export] max_window_days = 365"),
            "{message}"
        );
        let huge = Window::new(at("0001-01-01"), at("9999-12-31")).unwrap();
        assert!(huge.check_length(400).is_err());
    }

    #[test]
    fn empty_or_reversed_windows_are_refused() {
        assert!(Window::new(at("2026-11-20"), at("2026-11-20")).is_err());
        let message = Window::new(at("2026-11-21"), at("2026-11-20"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("--from") && message.contains("before --to"),
            "{message}"
        );
    }

    #[test]
    fn yesterday_is_the_previous_whole_utc_day() {
        let window = Window::yesterday(at("2026-11-30T06:21:00Z"));
        assert_eq!(
            window,
            Window::new(at("2026-11-29"), at("2026-11-30")).unwrap()
        );
        assert!(window.is_whole_days());
        assert_eq!(
            window.days(),
            vec![NaiveDate::from_ymd_opt(2026, 11, 29).unwrap()]
        );
    }

    #[test]
    fn days_cover_partial_edges_and_stop_before_an_exclusive_midnight() {
        let window = Window::new(at("2026-11-20T06:00:00Z"), at("2026-11-22T00:00:00Z")).unwrap();
        assert_eq!(window.days().len(), 2);
        assert!(!window.is_whole_days());
        let window = Window::new(at("2026-11-20T06:00:00Z"), at("2026-11-22T00:00:01Z")).unwrap();
        assert_eq!(window.days().len(), 3);
        assert!(window.contains(at("2026-11-20T06:00:00Z")));
        assert!(!window.contains(at("2026-11-22T00:00:01Z")));
    }

    #[test]
    fn only_whole_days_are_covered() {
        let window = Window::new(at("2026-11-20T06:00:00Z"), at("2026-11-22T12:00:00Z")).unwrap();
        let covered: Vec<bool> = window
            .days()
            .iter()
            .map(|dt| window.covers_day(*dt))
            .collect();
        assert_eq!(covered, [false, true, false]);
        let window = Window::new(at("2026-11-20"), at("2026-11-21")).unwrap();
        assert!(window.covers_day(window.days()[0]));
    }

    #[test]
    fn chunks_tile_the_window_without_overlap() {
        let window = Window::new(at("2026-01-01"), at("2026-07-01")).unwrap();
        let chunks = window.chunks(90);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].from, window.from);
        assert_eq!(chunks[2].to, window.to);
        assert!(chunks.windows(2).all(|pair| pair[0].to == pair[1].from));
    }
}
