//! One signed POST to an origin, bounded by the origin's timeout. Redirects are never
//! followed: a POST followed by a GET never reaches the origin, so a 3xx is a failed try.

use didit_edge_core::attempt::{AttemptResult, DELIVERY_CONTROL_HEADER};
use didit_edge_core::cloudevent;
use didit_edge_core::config::OriginSigning;
use didit_edge_core::dropin;
use didit_edge_core::health::retry_after_ms;
use didit_edge_core::origin::Origin;
use didit_edge_core::secret::{SigningSecrets, WebhookSecret};
use didit_edge_core::standard_webhooks;
use didit_edge_core::trace;
use worker::{console_error, AbortController, Fetch, Headers, Method, Response};

use crate::clock::{now_secs, within};
use crate::{http, webcrypto};

/// POSTs the stored `cloud_event` to `origin` in the format the core chose for it: as is,
/// signed per Standard Webhooks with `webhook-id` = `id` once per signing secret (during a
/// rotation the origin may verify with either key), or as Didit's own webhook re-signed
/// ([`dropin`]). Returns the outcome and the origin's `Retry-After`, if it sent one.
pub(crate) async fn deliver(
    origin: &Origin,
    signing: OriginSigning<'_>,
    id: &str,
    cloud_event: &str,
) -> (AttemptResult, Option<u64>) {
    match signing {
        OriginSigning::StandardWebhooks(secrets) => {
            post_signed(&origin.url, origin.timeout_ms, secrets, id, cloud_event).await
        }
        OriginSigning::Didit(secret) => post_didit(origin, secret, id, cloud_event).await,
    }
}

/// POSTs the drop-in request the core writes for this attempt, dated now. A stored event the
/// core cannot rewrite (a damaged record) is a failed try, retried like any other.
async fn post_didit(
    origin: &Origin,
    secret: &WebhookSecret,
    id: &str,
    cloud_event: &str,
) -> (AttemptResult, Option<u64>) {
    let request = match dropin::build(cloud_event, now_secs()) {
        Ok(request) => request,
        Err(error) => {
            console_error!("origin `{}`: {error}", origin.name);
            return (AttemptResult::Network, None);
        }
    };
    let body_tag = webcrypto::tag(secret.key(), request.body().as_bytes()).await;
    let simple_tag = match request.simple_message() {
        Some(message) => Some(webcrypto::tag(secret.key(), message).await),
        None => None,
    };
    let sent = async {
        let headers = Headers::new();
        for (name, value) in request.headers(&body_tag, simple_tag.as_ref()) {
            headers.set(name, &value)?;
        }
        headers.set(
            "user-agent",
            concat!("didit-edge/", env!("CARGO_PKG_VERSION")),
        )?;
        headers.set("traceparent", &trace::traceparent(id))?;
        let outgoing = http::outgoing(
            &origin.url,
            Method::Post,
            Some(&headers),
            Some(request.body()),
            false,
        )?;
        race(origin.timeout_ms, Fetch::Request(outgoing)).await
    };
    sent.await.unwrap_or((AttemptResult::Network, None))
}

/// POSTs a CloudEvent to `url` within `timeout_ms`, signed the way every delivery is.
pub(crate) async fn post_signed(
    url: &str,
    timeout_ms: u32,
    secrets: &SigningSecrets,
    id: &str,
    cloud_event: &str,
) -> (AttemptResult, Option<u64>) {
    let now = now_secs();
    let message = standard_webhooks::message(id, now, cloud_event.as_bytes());
    let mut tags = Vec::new();
    for secret in secrets.iter() {
        tags.push(webcrypto::tag(secret.key(), &message).await);
    }
    let signed = standard_webhooks::headers(id, now, &tags);
    send(url, timeout_ms, &signed, cloud_event)
        .await
        .unwrap_or((AttemptResult::Network, None))
}

async fn send(
    url: &str,
    timeout_ms: u32,
    signed: &standard_webhooks::SignedHeaders,
    body: &str,
) -> worker::Result<(AttemptResult, Option<u64>)> {
    let headers = Headers::new();
    headers.set("content-type", cloudevent::CONTENT_TYPE)?;
    headers.set(
        "user-agent",
        concat!("didit-edge/", env!("CARGO_PKG_VERSION")),
    )?;
    headers.set("webhook-id", &signed.id)?;
    headers.set("webhook-timestamp", &signed.timestamp)?;
    headers.set("webhook-signature", &signed.signature)?;
    headers.set("traceparent", &trace::traceparent(&signed.id))?;
    let request = http::outgoing(url, Method::Post, Some(&headers), Some(body), false)?;
    race(timeout_ms, Fetch::Request(request)).await
}

/// Sends `fetch` within `timeout_ms` and reads what an origin's answer means.
async fn race(timeout_ms: u32, fetch: Fetch) -> worker::Result<(AttemptResult, Option<u64>)> {
    let result = match fetch_within(timeout_ms, fetch).await {
        Fetched::Answered(response) => {
            let header = |name: &str| response.headers().get(name).ok().flatten();
            let retry_after = retry_after_ms(header("retry-after").as_deref());
            let result = AttemptResult::from_response(
                response.status_code(),
                header(DELIVERY_CONTROL_HEADER).as_deref(),
                header("location").as_deref(),
            );
            (result, retry_after)
        }
        Fetched::Failed => (AttemptResult::Network, None),
        Fetched::TimedOut => (AttemptResult::Timeout, None),
    };
    Ok(result)
}

/// What a fetch bounded by a timeout came to.
pub(crate) enum Fetched {
    /// An answer (of any status).
    Answered(Response),
    /// The connection failed.
    Failed,
    /// The timeout passed first; the fetch was aborted.
    TimedOut,
}

/// Sends `fetch`, aborting it when `timeout_ms` passes first.
pub(crate) async fn fetch_within(timeout_ms: u32, fetch: Fetch) -> Fetched {
    let controller = AbortController::default();
    let signal = controller.signal();
    match within(u64::from(timeout_ms), fetch.send_with_signal(&signal)).await {
        Some(Ok(response)) => Fetched::Answered(response),
        Some(Err(_)) => Fetched::Failed,
        None => {
            controller.abort();
            Fetched::TimedOut
        }
    }
}

/// `GET`s an origin's `health_url` within its timeout, without following redirects. `None`
/// when the origin has no `health_url`.
pub(crate) async fn probe(origin: &Origin) -> Option<(AttemptResult, Option<u64>)> {
    let url = origin.health_url.as_deref()?;
    let result = async {
        let headers = Headers::new();
        headers.set(
            "user-agent",
            concat!("didit-edge/", env!("CARGO_PKG_VERSION"), " health-probe"),
        )?;
        let request = http::outgoing(url, Method::Get, Some(&headers), None, false)?;
        race(origin.timeout_ms, Fetch::Request(request)).await
    }
    .await;
    Some(result.unwrap_or((AttemptResult::Network, None)))
}
