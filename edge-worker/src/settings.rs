//! Configuration from the Worker's environment (vars, secrets, `.dev.vars`), checked by the core.

use std::cell::RefCell;
use std::rc::Rc;

use didit_edge_core::config::{Config, ConfigErrors};
use didit_edge_core::rejection::Rejection;
use worker::{console_error, Env};

thread_local! {
    /// An isolate's environment never changes, so the parsed configuration is kept for its life.
    static CACHED: RefCell<Option<Result<Rc<Config>, ConfigErrors>>> = const { RefCell::new(None) };
}

fn read(env: &Env) -> Result<Config, ConfigErrors> {
    Config::from_lookup(|name| {
        env.secret(name)
            .map(|s| s.to_string())
            .or_else(|_| env.var(name).map(|v| v.to_string()))
            .ok()
    })
}

/// The configuration as read once for this isolate, or every problem with it.
fn cached(env: &Env) -> Result<Rc<Config>, ConfigErrors> {
    CACHED.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_with(|| read(env).map(Rc::new))
            .clone()
    })
}

/// The configuration, or the rejection that answers every delivery while it is invalid (503,
/// so Didit retries once it is fixed). The full problem list goes to the log, never a value.
pub fn config(env: &Env) -> Result<Rc<Config>, Rejection> {
    cached(env).map_err(|errors| {
        console_error!("didit-edge configuration is invalid: {errors}");
        Rejection::Misconfigured {
            settings: setting_names(&errors).join(", "),
        }
    })
}

/// The names of the settings that are wrong, each once, in the order of `errors`.
fn setting_names(errors: &ConfigErrors) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for error in &errors.0 {
        if !names.contains(&error.setting) {
            names.push(error.setting);
        }
    }
    names
}

/// For the public health endpoint: which settings are wrong, by name only. What is wrong with
/// them goes to the log (`wrangler tail`), since even a non-secret value may hold credentials.
pub fn invalid_settings(env: &Env) -> Vec<&'static str> {
    cached(env)
        .err()
        .map(|errors| setting_names(&errors))
        .unwrap_or_default()
}
