//! Configuration from the Worker's environment (vars, secrets, `.dev.vars`), checked by the core
//! and read once per isolate.

use std::cell::RefCell;
use std::rc::Rc;

use didit_edge_core::config::{Config, DeliveryConfig};
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

/// What classifies and delivers events, while it is valid.
pub(crate) fn delivery(config: &Config) -> Option<&DeliveryConfig> {
    config.delivery.as_ref()
}
