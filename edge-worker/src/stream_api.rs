//! `GET /v1/stream`: the status stream's front door. Checks the token and the filters, then
//! hands the upgrade to the object of the channel the token may watch. Every refusal comes
//! before any upgrade.

use didit_edge_core::mac::RustCrypto;
use didit_edge_core::rejection::Rejection;
use didit_edge_core::stream::{presented_token, AdminFilters, Watch};
use didit_edge_core::stream_token::{self, Expected};
use worker::{Env, Request, Response};

use crate::clock::now_secs;
use crate::http::{self, header, EdgeError, EdgeResult};
use crate::{settings, stream};

/// Opens a stream connection, or refuses it.
pub(crate) async fn open(request: &Request, env: &Env) -> EdgeResult<Response> {
    let config = settings::config(env);
    let stream = config.required(&config.stream, Rejection::StreamOff)?;
    if !header(request, "upgrade").is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket")) {
        return Err(Rejection::UpgradeRequired.into());
    }
    let query = http::query(request);
    let protocols = header(request, "sec-websocket-protocol");
    let presented = presented_token(protocols.as_deref(), query.as_deref())?;
    let expected = Expected {
        audience: &stream.audience,
        now_secs: now_secs(),
        max_lifetime_secs: stream.max_lifetime_secs,
    };
    let grant = stream_token::verify(presented.token, &stream.secret, &expected, &mut RustCrypto)
        .map_err(Rejection::Token)?;
    let watch = Watch::new(grant, AdminFilters::parse(query.as_deref())?)?;
    stream::connect(env, &watch, presented.in_subprotocol)
        .await
        .map_err(EdgeError::unavailable("stream unavailable"))
}
