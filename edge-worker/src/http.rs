//! The HTTP side of the public API: reading headers, the one error type of its handlers, and
//! writing the core's verdicts as responses (the mapping of each refusal to a status and code
//! is the core's `Rejection`).

use didit_edge_core::didit_view::DiditViewError;
use didit_edge_core::endpoint::query_of;
use didit_edge_core::limits::{self, BodyBudget};
use didit_edge_core::receipt::Receipt;
use didit_edge_core::rejection::Rejection;
use futures_util::StreamExt;
use wasm_bindgen::JsValue;
use worker::{console_error, web_sys, Headers, Method, Request, Response, Result};

/// Why a public request was not answered as asked.
#[derive(Debug)]
pub(crate) enum EdgeError {
    /// The core refused it, with its status and code.
    Refused(Rejection),
    /// A Durable Object or the runtime failed: answered `503 storage_unavailable` (nothing was
    /// stored, so Didit retries); what failed goes to the log only.
    Unavailable {
        /// What was being done.
        what: &'static str,
        /// The failure.
        error: worker::Error,
    },
}

/// What a front door's handler comes to: an answer, or the error that `answer` maps to one.
pub(crate) type EdgeResult<T> = std::result::Result<T, EdgeError>;

impl From<Rejection> for EdgeError {
    fn from(rejection: Rejection) -> Self {
        Self::Refused(rejection)
    }
}

impl EdgeError {
    /// Maps a runtime failure while doing `what`.
    pub(crate) fn unavailable(what: &'static str) -> impl FnOnce(worker::Error) -> Self {
        move |error| Self::Unavailable { what, error }
    }
}

/// Answers with `result`: the response, the refusal, or a logged 503. The one place a public
/// request's failure becomes HTTP.
pub(crate) fn answer(result: EdgeResult<Response>) -> Result<Response> {
    match result {
        Ok(response) => Ok(response),
        Err(EdgeError::Refused(refusal)) => rejection(&refusal),
        Err(EdgeError::Unavailable { what, error }) => {
            console_error!("{what}: {error}");
            rejection(&Rejection::StorageUnavailable)
        }
    }
}

/// The request's query string (without `?`), if it has one.
pub(crate) fn query(request: &Request) -> Option<String> {
    query_of(&request.inner().url()).map(String::from)
}

/// A JSON body of at most `limit` bytes: refused by its headers (media type, declared length)
/// before anything is read, and as soon as what streams in passes the limit.
pub(crate) async fn read_json_body(
    request: &mut Request,
    limit: u64,
) -> std::result::Result<Vec<u8>, Rejection> {
    limits::check_body_headers(
        header(request, "content-type").as_deref(),
        header(request, "content-length").as_deref(),
        limit,
    )?;
    let Ok(mut stream) = request.stream() else {
        return Ok(Vec::new());
    };
    let mut budget = BodyBudget::new(limit);
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Rejection::MalformedJson)?;
        budget.take(chunk.len())?;
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An outgoing request (to an origin, Didit's API or a Durable Object). Built on
/// `web_sys::RequestInit` rather than `worker::RequestInit`, whose conversion carries the code
/// of every `cf` property (image resizing, Polish, minification) though this worker sets none;
/// the request is the same. `follow_redirects: false` answers a redirect as it is.
pub(crate) fn outgoing(
    url: &str,
    method: Method,
    headers: Option<&Headers>,
    body: Option<&str>,
    follow_redirects: bool,
) -> Result<Request> {
    let init = web_sys::RequestInit::new();
    init.set_method(method.as_ref());
    if let Some(headers) = headers {
        init.set_headers(headers.as_ref());
    }
    if !follow_redirects {
        init.set_redirect(web_sys::RequestRedirect::Manual);
    }
    if let Some(body) = body {
        init.set_body(&JsValue::from_str(body));
    }
    Ok(web_sys::Request::new_with_str_and_init(url, &init)?.into())
}

/// A request header's value, if present.
pub(crate) fn header(request: &Request, name: &str) -> Option<String> {
    request.headers().get(name).ok().flatten()
}

/// A JSON response with the given status.
pub(crate) fn json(status: u16, body: String) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::ok(body)?
        .with_status(status)
        .with_headers(headers))
}

/// A refusal as `{"error":{"code","message"}}` with its status (and `Allow` for 405).
pub(crate) fn rejection(rejection: &Rejection) -> Result<Response> {
    let response = json(rejection.status(), rejection.to_json())?;
    if let Rejection::MethodNotAllowed { allow } = rejection {
        response.headers().set("allow", allow)?;
    }
    if let Rejection::Didit(DiditViewError::RateLimited {
        retry_after_secs: Some(secs),
    }) = rejection
    {
        response.headers().set("retry-after", &secs.to_string())?;
    }
    Ok(response)
}

/// An accepted or duplicate delivery.
pub(crate) fn receipt(receipt: &Receipt) -> Result<Response> {
    json(200, receipt.to_json())
}

/// A JSON body, answered 200, or a 503 if it cannot be written.
pub(crate) fn ok_json(body: String) -> EdgeResult<Response> {
    json(200, body).map_err(EdgeError::unavailable("response"))
}
