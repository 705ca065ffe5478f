//! The admin API's client: the worker's URL and token, and each answer read into the core's
//! type for it (a non-2xx answer is the remote's error).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{AdminArgs, LOCAL_URL};
use crate::config::{self, redact_url, Lookup};
use crate::error::{Failure, Result};
use crate::http::{self, Answer, Method};

pub(super) struct Client {
    agent: ureq::Agent,
    base: String,
    headers: Vec<(String, String)>,
}

impl Client {
    pub(super) fn new(args: &AdminArgs) -> Result<Self> {
        let base = args
            .url
            .clone()
            .or_else(|| config::env_var("DIDIT_EDGE_URL"))
            .unwrap_or_else(|| LOCAL_URL.to_owned());
        config::check_url(&base, &["http", "https"])?;
        let lookup = Lookup {
            flag: None,
            env: &["ADMIN_TOKEN"],
            dev_vars: &["ADMIN_TOKEN"],
        };
        let token = lookup.find().ok_or_else(|| {
            Failure::usage(format!(
                "no admin token: set $ADMIN_TOKEN or ADMIN_TOKEN in ./{}",
                config::DEV_VARS
            ))
        })?;
        Ok(Self {
            agent: http::agent(args.timeout),
            base: base.trim_end_matches('/').to_owned(),
            headers: vec![
                ("Authorization".into(), format!("Bearer {}", token.trim())),
                ("Accept".into(), "application/json".into()),
            ],
        })
    }

    /// Calls the API and reads its answer as a `T`; a non-2xx answer is the remote's error.
    pub(super) fn call<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let answer = http::request(&self.agent, method, &url, &self.headers, None)?;
        Self::read(&url, &answer)
    }

    /// POSTs `body` as JSON and reads the answer as a `T`; a non-2xx answer is the remote's
    /// error.
    pub(super) fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let mut headers = self.headers.clone();
        headers.push(("Content-Type".into(), "application/json".into()));
        let body = serde_json::to_string(body).map_err(|error| {
            Failure::usage(format!("the request could not be written: {error}"))
        })?;
        let answer = http::request(
            &self.agent,
            Method::Post,
            &url,
            &headers,
            Some(body.as_bytes()),
        )?;
        Self::read(&url, &answer)
    }

    fn read<T: DeserializeOwned>(url: &str, answer: &Answer) -> Result<T> {
        if !answer.is_success() {
            return Err(Failure::remote(format!(
                "{} answered {} {}",
                redact_url(url),
                answer.status,
                answer.error_summary()
            )));
        }
        let json = answer.json().ok_or_else(|| {
            Failure::remote(format!(
                "{} answered {} with something that is not JSON; is this a didit-edge worker?",
                redact_url(url),
                answer.status
            ))
        })?;
        serde_json::from_value(json).map_err(|error| {
            Failure::remote(format!(
                "{} answered {} with JSON this CLI does not read ({error}); are the worker and the CLI the same version?",
                redact_url(url),
                answer.status
            ))
        })
    }
}

/// Percent-encodes a query value or path segment.
pub(super) fn encode(text: &str) -> String {
    http::percent_encode(text, b"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_are_percent_encoded() {
        assert_eq!(encode("evt_0123abc"), "evt_0123abc");
        assert_eq!(encode("a b/c?&"), "a%20b%2Fc%3F%26");
    }
}
