//! The one place the worker reads the clock; the core takes time as a parameter.

use worker::{Date, ScheduledTime};

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    Date::now().as_millis() as i64
}

/// Now, in Unix seconds.
pub(crate) fn now_secs() -> i64 {
    now_ms().div_euclid(1000)
}

/// An alarm time from Unix milliseconds.
pub(crate) fn alarm_at(unix_ms: i64) -> ScheduledTime {
    ScheduledTime::new(js_sys::Date::new(&(unix_ms as f64).into()))
}
