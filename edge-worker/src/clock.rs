//! The one place the worker reads the clock; the core takes time as a parameter.

use std::future::Future;
use std::time::Duration;

use futures_util::future::{select, Either};
use worker::{Date, Delay, ScheduledTime};

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    Date::now().as_millis() as i64
}

/// Now, in Unix seconds.
pub(crate) fn now_secs() -> i64 {
    now_ms().div_euclid(1000)
}

/// What `future` comes to, or `None` when `timeout_ms` passes first (the future is dropped:
/// whatever it had sent may still take effect, so it must be safe to repeat).
pub(crate) async fn within<F: Future>(timeout_ms: u64, future: F) -> Option<F::Output> {
    let future = Box::pin(future);
    let timeout = Box::pin(Delay::from(Duration::from_millis(timeout_ms)));
    match select(future, timeout).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(((), _)) => None,
    }
}

/// An alarm time from Unix milliseconds.
pub(crate) fn alarm_at(unix_ms: i64) -> ScheduledTime {
    ScheduledTime::new(js_sys::Date::new(&(unix_ms as f64).into()))
}
