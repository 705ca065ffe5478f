//! Writing the core's verdicts as HTTP responses.

use didit_edge_core::rejection::{Receipt, Rejection};
use worker::{Headers, Response, Result};

/// A JSON response with the given status.
pub(crate) fn json(status: u16, body: String) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::ok(body)?
        .with_status(status)
        .with_headers(headers))
}

/// A rejection as `{"error":{"code","message"}}` with its status (and `Allow` for 405).
pub(crate) fn rejection(rejection: &Rejection) -> Result<Response> {
    let response = json(rejection.status(), rejection.to_json())?;
    if let Rejection::MethodNotAllowed { allow } = rejection {
        response.headers().set("allow", allow)?;
    }
    Ok(response)
}

/// An accepted or duplicate delivery.
pub(crate) fn receipt(receipt: &Receipt) -> Result<Response> {
    json(200, receipt.to_json())
}
