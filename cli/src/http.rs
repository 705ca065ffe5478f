//! HTTP requests (ureq with rustls, so `https://` works against a deployed worker): answers of
//! any status are answers, never errors; redirects are not followed; failures to reach the
//! other side are network failures.

use std::time::Duration;

use crate::config::redact_url;
use crate::error::{Failure, Result};

/// Largest answer read.
const MAX_ANSWER_BYTES: u64 = 16 * 1024 * 1024;

/// An answer, whatever its status.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The answer as JSON, if it is.
    pub(crate) fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// `code: message` of a didit-edge error answer (`{"error":{"code","message"}}`), else the
    /// start of the body.
    pub(crate) fn error_summary(&self) -> String {
        if let Some(error) = self.json().and_then(|v| v.get("error").cloned()) {
            let code = error.get("code").and_then(|c| c.as_str()).unwrap_or("");
            let message = error.get("message").and_then(|m| m.as_str()).unwrap_or("");
            return match (code.is_empty(), message.is_empty()) {
                (false, false) => format!("{code}: {message}"),
                (false, true) => code.to_owned(),
                _ => message.to_owned(),
            };
        }
        let text = self.text();
        let text = text.trim();
        if text.is_empty() {
            "no body".to_owned()
        } else {
            text.chars().take(200).collect()
        }
    }
}

/// A client whose every call ends within `timeout`.
pub(crate) fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
        .user_agent(concat!("didit-edge-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Sends one request (a POST carries `body`, if any).
pub(crate) fn request(
    agent: &ureq::Agent,
    method: Method,
    url: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> Result<Answer> {
    let result = match method {
        Method::Get => {
            let mut builder = agent.get(url);
            for (name, value) in headers {
                builder = builder.header(name, value);
            }
            builder.call()
        }
        Method::Post => {
            let mut builder = agent.post(url);
            for (name, value) in headers {
                builder = builder.header(name, value);
            }
            match body {
                Some(body) => builder.send(body),
                None => builder.send_empty(),
            }
        }
    };
    let mut response = result.map_err(|error| failure(url, &error))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
        .map_err(|error| failure(url, &error))?;
    Ok(Answer {
        status,
        content_type,
        body,
    })
}

/// The methods this tool uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
}

/// What went wrong, as a usage error (a malformed URL) or a network one.
fn failure(url: &str, error: &ureq::Error) -> Failure {
    let shown = redact_url(url);
    match error {
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
            Failure::usage(format!("cannot send to `{shown}`: {error}"))
        }
        ureq::Error::Timeout(_) => Failure::network(format!("{shown}: timed out ({error})")),
        ureq::Error::HostNotFound => Failure::network(format!("{shown}: host not found")),
        ureq::Error::Io(io) => Failure::network(format!("cannot reach {shown}: {io}")),
        other => Failure::network(format!("cannot reach {shown}: {other}")),
    }
}

/// Percent-encodes a query value or path segment: everything but RFC 3986's unreserved
/// characters and the bytes in `also_keep` (a stream filter keeps `*` for `type=user.*`).
pub(crate) fn percent_encode(text: &str, also_keep: &[u8]) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || also_keep.contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A JSON value as a table cell or a printed field: a string as it is, `-` for nothing.
pub(crate) fn cell(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => "-".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}
