//! Configuration from the Worker's environment (vars, secrets, `.dev.vars`), checked by the core
//! and read once per isolate.

use std::cell::RefCell;
use std::rc::Rc;

use didit_edge_core::config::{Config, DeliveryConfig, Feature, IntakeConfig};
use didit_edge_core::rejection::Rejection;
use worker::{console_error, Env};

thread_local! {
    /// An isolate's environment never changes, so the parsed configuration is kept for its life.
    static CACHED: RefCell<Option<Rc<Config>>> = const { RefCell::new(None) };
}

fn read(env: &Env) -> Config {
    Config::from_lookup(|name| {
        env.secret(name)
            .map(|s| s.to_string())
            .or_else(|_| env.var(name).map(|v| v.to_string()))
            .ok()
    })
}

/// The configuration as read once for this isolate. Its problems are logged once, when it is
/// read (never a value), so a broken setting does not flood the log on every request.
pub(crate) fn config(env: &Env) -> Rc<Config> {
    CACHED.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_with(|| {
                let config = read(env);
                if !config.problems.is_empty() {
                    console_error!("didit-edge configuration is invalid: {}", config.problems);
                }
                Rc::new(config)
            })
            .clone()
    })
}

pub(crate) fn misconfigured(config: &Config) -> Rejection {
    Rejection::Misconfigured {
        settings: config.problems.settings().join(", "),
    }
}

/// What admits deliveries, or the 503 that answers every delivery while no Didit secret is
/// usable (Didit retries; nothing unverified is ever stored).
pub(crate) fn intake(config: &Config) -> Result<&IntakeConfig, Rejection> {
    config.intake.as_ref().ok_or_else(|| misconfigured(config))
}

/// What classifies and delivers events, while it is valid.
pub(crate) fn delivery(config: &Config) -> Option<&DeliveryConfig> {
    config.delivery.as_ref()
}

/// An optional feature's configuration: `off` when it is not set, 503 naming the broken
/// settings when it is set but invalid.
pub(crate) fn feature<'c, T>(
    config: &'c Config,
    feature: &'c Feature<T>,
    off: Rejection,
) -> Result<&'c T, Rejection> {
    match feature {
        Feature::On(value) => Ok(value),
        Feature::Off => Err(off),
        Feature::Broken => Err(misconfigured(config)),
    }
}
