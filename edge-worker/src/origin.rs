//! One signed POST to an origin, bounded by the origin's timeout. Redirects are never
//! followed: a POST followed by a GET never reaches the origin, so a 3xx is a failed try.

use didit_edge_core::attempt::{AttemptResult, DELIVERY_CONTROL_HEADER};
use didit_edge_core::cloudevent;
use didit_edge_core::config::OriginSigning;
use didit_edge_core::dropin;
use didit_edge_core::health::retry_after_ms;
use didit_edge_core::origin::Origin;
use didit_edge_core::secret::SigningSecrets;
use didit_edge_core::standard_webhooks;
use didit_edge_core::trace;
use worker::{AbortController, Fetch, Headers, Method, Response};

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
    let secret = match signing {
        OriginSigning::StandardWebhooks(secrets) => {
            return post_signed(&origin.url, origin.timeout_ms, secrets, id, cloud_event).await
        }
        OriginSigning::Didit(secret) => secret,
    };
    // A stored event the core cannot rewrite (a damaged record) is a failed try, retried like
    // any other (the attempt log says `network`).
    let Ok(request) = dropin::build(cloud_event, id, now_secs()) else {
        return (AttemptResult::Network, None);
    };
    let mut tags = Vec::with_capacity(2);
    for message in request.messages() {
        tags.push(webcrypto::tag(secret.key(), message).await);
    }
    let headers = request.headers(&tags);
    let post = Request::Post { id };
    send(
        &origin.url,
        origin.timeout_ms,
        post,
        &headers,
        Some(request.body()),
    )
    .await
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
    let headers = [
        ("content-type", Some(String::from(cloudevent::CONTENT_TYPE))),
        ("webhook-timestamp", Some(signed.timestamp)),
        ("webhook-signature", Some(signed.signature)),
    ];
    send(
        url,
        timeout_ms,
        Request::Post { id },
        &headers,
        Some(cloud_event),
    )
    .await
}

/// What kind of request [`send`] makes.
enum Request<'a> {
    /// A delivery of the event `id`: a POST carrying what every delivery carries
    /// (`webhook-id`: the event id, the same on every attempt; the user agent; the trace
    /// context).
    Post { id: &'a str },
    /// A health probe: a GET with this user agent.
    Get { agent: &'a str },
}

/// Makes `request` to `url` with `headers` (a `None` value is not sent) and `body`, within
/// `timeout_ms`, never following redirects. One sender for deliveries of either format and
/// for health probes (one future in the upload rather than three); a request that cannot even
/// be built is a failed try.
async fn send(
    url: &str,
    timeout_ms: u32,
    request: Request<'_>,
    headers: &[(&str, Option<String>)],
    body: Option<&str>,
) -> (AttemptResult, Option<u64>) {
    let sent = async {
        let all = Headers::new();
        for (name, value) in headers {
            if let Some(value) = value {
                all.set(name, value)?;
            }
        }
        let method = match request {
            Request::Post { id } => {
                all.set(
                    "user-agent",
                    concat!("didit-edge/", env!("CARGO_PKG_VERSION")),
                )?;
                all.set("webhook-id", id)?;
                all.set("traceparent", &trace::traceparent(id))?;
                Method::Post
            }
            Request::Get { agent } => {
                all.set("user-agent", agent)?;
                Method::Get
            }
        };
        let outgoing = http::outgoing(url, method, Some(&all), body, false)?;
        race(timeout_ms, Fetch::Request(outgoing)).await
    };
    sent.await.unwrap_or((AttemptResult::Network, None))
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
    let agent = concat!("didit-edge/", env!("CARGO_PKG_VERSION"), " health-probe");
    let get = Request::Get { agent };
    Some(send(url, origin.timeout_ms, get, &[], None).await)
}
