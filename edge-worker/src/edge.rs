//! The public fetch handler: limits, then the core's intake, then the subject's inbox.

use std::borrow::Cow;
use std::rc::Rc;

use didit_edge_core::admin::DeadLetterQuery;
use didit_edge_core::config::{Config, DeliveryConfig};
use didit_edge_core::intake::{Delivery, Intake};
use didit_edge_core::limits::{self, BodyBudget, Route};
use didit_edge_core::mac::RustCrypto;
use didit_edge_core::rejection::{Receipt, Rejection};
use didit_edge_core::stream::{presented_token, AdminFilters, StatusUpdate, Watch};
use didit_edge_core::stream_token::{self, Expected};
use didit_edge_core::verify::SignatureHeaders;
use futures_util::StreamExt;
use worker::{console_error, Context, Env, Request, Response, Result};

use crate::claim::{self, Claim, Content};
use crate::clock::now_secs;
use crate::dead_letters::{self, Key};
use crate::inbox::{ReplayRequest, Replayed, REPLAY_PATH};
use crate::{object, respond, settings, stream, webcrypto};

/// Answers one request. Only a failure to build a response at all escapes as an error.
pub(crate) async fn handle(mut request: Request, env: &Env, ctx: &Context) -> Result<Response> {
    let method = request.method().to_string();
    let path = request.path();
    let answer = match limits::route(&method, &path) {
        Err(rejection) => Err(rejection),
        Ok(Route::Health) => return health(env),
        Ok(Route::AdminOrigins) => admin_origins(&request, env).await,
        Ok(Route::DeadLetters) => list_dead_letters(&request, env).await,
        Ok(Route::ReplayDeadLetter { id }) => replay_dead_letter(&request, env, id).await,
        Ok(Route::ReplayDeadLetters) => replay_dead_letters(&request, env).await,
        Ok(Route::Stream) => open_stream(&request, env).await,
        Ok(Route::DiditWebhook) => match receive(&mut request, env).await {
            Ok((receipt, update)) => {
                if let Some(update) = update {
                    // The status goes out to watchers while Didit gets its answer.
                    let env = env.clone();
                    ctx.wait_until(async move { stream::publish(&env, &update).await });
                }
                return respond::receipt(&receipt);
            }
            Err(rejection) => Err(rejection),
        },
    };
    match answer {
        Ok(response) => Ok(response),
        Err(rejection) => respond::rejection(&rejection),
    }
}

fn health(env: &Env) -> Result<Response> {
    let invalid = settings::config(env).problems.settings();
    let body = serde_json::json!({
        "status": "ok",
        "configuration": if invalid.is_empty() { "valid" } else { "invalid" },
        "invalid_settings": invalid,
    });
    respond::json(200, body.to_string())
}

/// The configuration, once the request has shown the admin token.
fn admin(request: &Request, env: &Env) -> std::result::Result<Rc<Config>, Rejection> {
    let config = settings::config(env);
    let token = settings::feature(
        &config,
        &config.admin,
        Rejection::Unauthorized {
            reason: "the admin API is off: ADMIN_TOKEN is not set",
        },
    )?;
    didit_edge_core::admin::authorize(header(request, "authorization").as_deref(), Some(token))?;
    Ok(config.clone())
}

/// The delivery settings, which the admin API needs to describe or replay deliveries.
fn delivery_settings(config: &Config) -> std::result::Result<&DeliveryConfig, Rejection> {
    settings::delivery(config).ok_or_else(|| Rejection::Misconfigured {
        settings: config.problems.settings().join(", "),
    })
}

/// Logs an internal failure of the admin API and answers 503 (no detail leaves the edge).
fn unavailable(what: &str) -> impl Fn(worker::Error) -> Rejection + '_ {
    move |error| {
        console_error!("{what}: {error}");
        Rejection::StorageUnavailable
    }
}

/// `GET /admin/origins`: every origin with its consumer, failover priority and breaker state.
/// URLs are left out: they may carry credentials.
async fn admin_origins(request: &Request, env: &Env) -> std::result::Result<Response, Rejection> {
    let config = admin(request, env)?;
    let delivery = delivery_settings(&config)?;
    let snapshot = crate::health::fresh_snapshot(env)
        .await
        .map_err(unavailable("origin health unavailable"))?;
    let origins: Vec<serde_json::Value> = delivery
        .origins
        .iter()
        .map(|origin| {
            let breaker = snapshot.get(&origin.name).copied().unwrap_or(
                didit_edge_core::health::BreakerState::Closed {
                    consecutive_failures: 0,
                },
            );
            serde_json::json!({
                "name": origin.name,
                "consumer": origin.consumer(),
                "priority": origin.priority,
                "weight": origin.weight,
                "region": origin.region,
                "cloud": origin.cloud,
                "probed": origin.health_url.is_some(),
                "timeout_ms": origin.timeout_ms,
                "health": breaker,
            })
        })
        .collect();
    respond::json(200, serde_json::json!({ "origins": origins }).to_string())
        .map_err(unavailable("response"))
}

fn query(request: &Request) -> std::result::Result<DeadLetterQuery, Rejection> {
    let url = request.url().map_err(|_| Rejection::InvalidQuery {
        reason: "the request URL cannot be read",
    })?;
    DeadLetterQuery::parse(url.query())
}

/// `GET /admin/dead-letters`: one page of every subject's dead letters, with their attempts.
async fn list_dead_letters(
    request: &Request,
    env: &Env,
) -> std::result::Result<Response, Rejection> {
    admin(request, env)?;
    let query = query(request)?;
    let page = dead_letters::page(env, query.consumer, query.limit, query.after)
        .await
        .map_err(unavailable("dead-letter index unavailable"))?;
    respond::json(200, page).map_err(unavailable("response"))
}

/// Most subjects one bulk replay visits, so one call stays well inside the platform's
/// subrequest limits; the answer says how many dead letters remain for the next call.
const SUBJECTS_PER_BULK_REPLAY: u32 = 40;

/// `POST /admin/dead-letters/{id}/replay`: every dead copy of one event goes back in line.
async fn replay_dead_letter(
    request: &Request,
    env: &Env,
    id: &str,
) -> std::result::Result<Response, Rejection> {
    admin(request, env)?;
    let found = dead_letters::inboxes(env, Some(id), None, SUBJECTS_PER_BULK_REPLAY)
        .await
        .map_err(unavailable("dead-letter index unavailable"))?;
    let mut replayed = Vec::new();
    for inbox in &found.inboxes {
        let ask = ReplayRequest {
            id: Some(id.into()),
            consumer: None,
        };
        replayed.extend(
            replay_in(env, inbox, &ask)
                .await
                .map_err(unavailable("inbox unavailable for replay"))?,
        );
    }
    if replayed.is_empty() {
        return Err(Rejection::DeadLetterNotFound);
    }
    respond::json(200, serde_json::json!({ "replayed": replayed }).to_string())
        .map_err(unavailable("response"))
}

/// `POST /admin/dead-letters/replay[?consumer=…]`: the dead letters of up to
/// [`SUBJECTS_PER_BULK_REPLAY`] subjects go back in line; `remaining` says whether to call again.
async fn replay_dead_letters(
    request: &Request,
    env: &Env,
) -> std::result::Result<Response, Rejection> {
    admin(request, env)?;
    let query = query(request)?;
    let found = dead_letters::inboxes(
        env,
        None,
        query.consumer.clone(),
        SUBJECTS_PER_BULK_REPLAY.min(query.limit),
    )
    .await
    .map_err(unavailable("dead-letter index unavailable"))?;
    let mut replayed = 0;
    for inbox in &found.inboxes {
        let ask = ReplayRequest {
            id: None,
            consumer: query.consumer.clone(),
        };
        replayed += replay_in(env, inbox, &ask)
            .await
            .map_err(unavailable("inbox unavailable for replay"))?
            .len();
    }
    let remaining = dead_letters::inboxes(env, None, query.consumer, 1)
        .await
        .map_err(unavailable("dead-letter index unavailable"))?
        .total;
    respond::json(
        200,
        serde_json::json!({ "replayed": replayed, "remaining": remaining }).to_string(),
    )
    .map_err(unavailable("response"))
}

async fn replay_in(env: &Env, inbox: &str, ask: &ReplayRequest) -> Result<Vec<Key>> {
    let mut response = object::post(
        env,
        "INBOX",
        inbox,
        REPLAY_PATH,
        serde_json::to_string(ask)?,
    )
    .await?;
    let replayed: Replayed = response.json().await?;
    Ok(replayed.replayed)
}

fn header(request: &Request, name: &str) -> Option<String> {
    request.headers().get(name).ok().flatten()
}

/// `GET /v1/stream`: checks the token and the filters, then hands the upgrade to the object
/// of the channel the token may watch. Every refusal comes before any upgrade.
async fn open_stream(request: &Request, env: &Env) -> std::result::Result<Response, Rejection> {
    let config = settings::config(env);
    let stream = settings::feature(&config, &config.stream, Rejection::StreamOff)?;
    if !header(request, "upgrade").is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket")) {
        return Err(Rejection::UpgradeRequired);
    }
    let url = request.url().map_err(|_| Rejection::MissingToken)?;
    let protocols = header(request, "sec-websocket-protocol");
    let presented = presented_token(protocols.as_deref(), url.query())?;
    let expected = Expected {
        audience: &stream.audience,
        now_secs: now_secs(),
        max_lifetime_secs: stream.max_lifetime_secs,
    };
    let grant = stream_token::verify(presented.token, &stream.secret, &expected, &mut RustCrypto)
        .map_err(Rejection::Token)?;
    let watch = Watch::new(grant, AdminFilters::parse(url.query())?)?;
    stream::connect(env, &watch, presented.in_subprotocol)
        .await
        .map_err(unavailable("stream unavailable"))
}

async fn receive(
    request: &mut Request,
    env: &Env,
) -> std::result::Result<(Receipt, Option<StatusUpdate>), Rejection> {
    let config = settings::config(env);
    let intake_settings = settings::intake(&config)?;
    limits::check_body_headers(
        header(request, "content-type").as_deref(),
        header(request, "content-length").as_deref(),
        intake_settings.max_body_bytes,
    )?;
    let body = read_body(request, intake_settings.max_body_bytes).await?;
    let (signature, signature_v2, signature_simple, timestamp) = (
        header(request, "x-signature"),
        header(request, "x-signature-v2"),
        header(request, "x-signature-simple"),
        header(request, "x-timestamp"),
    );
    let delivery = Delivery {
        body: &body,
        headers: SignatureHeaders {
            signature: signature.as_deref(),
            signature_v2: signature_v2.as_deref(),
            signature_simple: signature_simple.as_deref(),
            timestamp: timestamp.as_deref(),
        },
        test_header: header(request, "x-didit-test-webhook")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
    };
    let intake = Intake::new(delivery, intake_settings.allow_simple_signature)?;
    let verified = webcrypto::answer(intake.challenges(), &intake_settings.webhook_secrets)
        .await
        .map_err(|_| Rejection::InvalidSignature)?;
    let now = now_secs();
    let identified = intake.identify(verified, now, intake_settings.timestamp_tolerance_secs)?;
    // Classifying needs the delivery settings; while they are broken the event is stored as it
    // came and the inbox classifies it once they are fixed.
    let classified = match settings::delivery(&config) {
        Some(delivery) => Some(identified.classify(&delivery.policy())?),
        None => None,
    };
    let content = match &classified {
        Some(classified) => Content::Classified {
            risk_level: classified.risk_level,
            consumers: classified.consumers.clone(),
            cloud_event: &classified.cloud_event,
        },
        None => Content::Unclassified {
            verified: identified.verified,
            test: identified.test,
            received_at: now,
            body: identified.body,
        },
    };
    let inbox = identified.inbox();
    let claim = Claim {
        id: Cow::Borrowed(identified.event_id.as_str()),
        legacy_id: Cow::Borrowed(identified.legacy_id.as_str()),
        inbox: Cow::Borrowed(&inbox),
        alias: identified.alias.as_deref().map(Cow::Borrowed),
        webhook_type: Cow::Borrowed(&identified.webhook_type),
        status: identified.status.as_deref().map(Cow::Borrowed),
        created_at: identified.created_at,
        content,
    };
    let receipt = claim_in_inbox(env, &inbox, &claim).await.map_err(|error| {
        // The inbox's name holds the subject id (vendor_data for users): never logged.
        console_error!(
            "the {} inbox could not store {}: {error}",
            identified.subject.kind.as_str(),
            identified.event_id
        );
        Rejection::StorageUnavailable
    })?;
    // Only a new event is news, and only when someone can be watching.
    let update = match (&receipt, classified, config.stream.on()) {
        (Receipt::Accepted { .. }, Some(classified), Some(_)) => Some(classified.status_update),
        _ => None,
    };
    Ok((receipt, update))
}

/// Streams the body in, refusing it as soon as it passes the limit.
async fn read_body(request: &mut Request, limit: u64) -> std::result::Result<Vec<u8>, Rejection> {
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

async fn claim_in_inbox(env: &Env, inbox: &str, claim: &Claim<'_>) -> Result<Receipt> {
    let mut response = object::post(
        env,
        "INBOX",
        inbox,
        claim::PATH,
        serde_json::to_string(&claim)?,
    )
    .await?;
    response.json().await
}
