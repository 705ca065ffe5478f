//! Reading settings through a lookup function, collecting every problem instead of stopping
//! at the first.

use alloc::string::String;
use alloc::vec::Vec;

use super::problem::{ConfigError, Problem};

pub(super) struct Reader<F> {
    lookup: F,
    pub(super) errors: Vec<ConfigError>,
}

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    pub(super) fn new(lookup: F) -> Self {
        Self {
            lookup,
            errors: Vec::new(),
        }
    }

    pub(super) fn fail(&mut self, setting: &'static str, problem: Problem) {
        self.errors.push(ConfigError { setting, problem });
    }

    /// How many problems have been found so far; a group of settings is usable when reading
    /// it found none.
    pub(super) fn mark(&self) -> usize {
        self.errors.len()
    }

    pub(super) fn clean_since(&self, mark: usize) -> bool {
        self.errors.len() == mark
    }

    /// The setting's value, blank counting as unset.
    pub(super) fn get(&self, setting: &str) -> Option<String> {
        (self.lookup)(setting).filter(|value| !value.trim().is_empty())
    }

    pub(super) fn required(&mut self, setting: &'static str) -> Option<String> {
        let value = self.get(setting);
        if value.is_none() {
            self.fail(setting, Problem::Missing);
        }
        value
    }

    /// A number in `min..=max`; `invalid` stands in when it is set but unusable (the problem
    /// is recorded), `default` when it is unset.
    pub(super) fn number_or(
        &mut self,
        setting: &'static str,
        default: u64,
        invalid: u64,
        (min, max): (u64, u64),
    ) -> u64 {
        let Some(text) = self.get(setting) else {
            return default;
        };
        match text.trim().parse::<u64>() {
            Ok(value) if (min..=max).contains(&value) => value,
            Ok(_) => {
                self.fail(setting, Problem::OutOfRange { min, max });
                invalid
            }
            Err(_) => {
                self.fail(setting, Problem::NotANumber);
                invalid
            }
        }
    }

    pub(super) fn number(&mut self, setting: &'static str, default: u64, range: (u64, u64)) -> u64 {
        self.number_or(setting, default, default, range)
    }

    pub(super) fn flag(&mut self, setting: &'static str) -> bool {
        let Some(text) = self.get(setting) else {
            return false;
        };
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => {
                self.fail(setting, Problem::NotABoolean);
                false
            }
        }
    }
}
