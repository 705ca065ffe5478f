//! Didit's API, as reconciliation's steps and the admin API's view of Didit's webhooks call
//! it: a capped `GET` with the API key, within a timeout.

use didit_edge_core::config::ReconcileConfig;
use didit_edge_core::limits::BodyBudget;
use didit_edge_core::reconcile::api::Answer;
use futures_util::StreamExt;
use worker::{Fetch, Headers, Method, Request, Response, Result};

use crate::clock::{now_ms, within};
use crate::http;
use crate::origin::{fetch_within, Fetched};

/// What an API call returned, owned until the core reads it.
pub(crate) enum ApiResponse {
    Status {
        status: u16,
        body: String,
        retry_after: Option<String>,
    },
    TooLarge,
    Unreachable,
}

impl ApiResponse {
    pub(crate) fn answer(&self) -> Answer<'_> {
        match self {
            Self::Status { status, body, .. } if (200..300).contains(status) => Answer::Ok(body),
            Self::Status {
                status,
                retry_after,
                ..
            } => Answer::Status {
                status: *status,
                retry_after: retry_after.as_deref(),
            },
            Self::TooLarge => Answer::TooLarge,
            Self::Unreachable => Answer::Unreachable,
        }
    }
}

/// `GET`s `path` under Didit's API base URL with the API key, reading at most `limit` bytes of
/// its body, all within `timeout_ms`. Redirects are not followed (the key would go wherever
/// they point).
pub(crate) async fn api_get(
    reconcile: &ReconcileConfig,
    path: &str,
    limit: usize,
    timeout_ms: u64,
) -> ApiResponse {
    let request = || -> Result<Request> {
        let headers = Headers::new();
        headers.set("x-api-key", &reconcile.api_key)?;
        headers.set("accept", "application/json")?;
        headers.set(
            "user-agent",
            concat!("didit-edge/", env!("CARGO_PKG_VERSION")),
        )?;
        let url = format!("{}{path}", reconcile.base_url);
        http::outgoing(&url, Method::Get, Some(&headers), None, false)
    };
    let Ok(request) = request() else {
        return ApiResponse::Unreachable;
    };
    let started = now_ms();
    let timeout = u32::try_from(timeout_ms).unwrap_or(u32::MAX);
    let mut response = match fetch_within(timeout, Fetch::Request(request)).await {
        Fetched::Answered(response) => response,
        Fetched::Failed | Fetched::TimedOut => return ApiResponse::Unreachable,
    };
    let status = response.status_code();
    let retry_after = response.headers().get("retry-after").ok().flatten();
    let declared = response
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|length| length.trim().parse::<usize>().ok());
    if (200..300).contains(&status) && declared.is_some_and(|length| length > limit) {
        return ApiResponse::TooLarge;
    }
    let left = timeout_ms.saturating_sub(u64::try_from(now_ms() - started).unwrap_or(0));
    match within(left, read_capped(&mut response, limit)).await {
        Some(Ok(Some(body))) => ApiResponse::Status {
            status,
            body,
            retry_after,
        },
        Some(Ok(None)) if (200..300).contains(&status) => ApiResponse::TooLarge,
        // An error body past the limit says nothing more than its status.
        Some(Ok(None)) => ApiResponse::Status {
            status,
            body: String::new(),
            retry_after,
        },
        Some(Err(())) | None => ApiResponse::Unreachable,
    }
}

/// A response's body as text, or `Ok(None)` once it passes `limit` bytes (read no further).
async fn read_capped(
    response: &mut Response,
    limit: usize,
) -> std::result::Result<Option<String>, ()> {
    let mut stream = response.stream().map_err(drop)?;
    let mut budget = BodyBudget::new(u64::try_from(limit).unwrap_or(u64::MAX));
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(drop)?;
        if budget.take(chunk.len()).is_err() {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body)
        .map(Some)
        .or(Ok(Some(String::new())))
}
