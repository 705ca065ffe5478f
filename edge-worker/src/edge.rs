//! The public fetch handler: limits, then the core's intake, then the subject's inbox.

use std::rc::Rc;

use didit_edge_core::admin::DeadLetterQuery;
use didit_edge_core::config::Config;
use didit_edge_core::intake::{Delivery, Intake};
use didit_edge_core::limits::{self, BodyBudget, Route};
use didit_edge_core::mac::RustCrypto;
use didit_edge_core::rejection::{Receipt, Rejection};
use didit_edge_core::stream::{presented_token, AdminFilters, StatusUpdate, Watch};
use didit_edge_core::stream_token;
use didit_edge_core::verify::SignatureHeaders;
use futures_util::StreamExt;
use worker::{console_error, Context, Date, Env, Request, Response, Result};

use crate::claim::{self, Claim};
use crate::dead_letters::{self, Key};
use crate::inbox::{ReplayRequest, Replayed, REPLAY_PATH};
use crate::{object, respond, settings, stream, webcrypto};

/// Answers one request. Only a failure to build a response at all escapes as an error.
pub async fn handle(mut request: Request, env: &Env, ctx: &Context) -> Result<Response> {
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
    let invalid = settings::invalid_settings(env);
    let body = serde_json::json!({
        "status": "ok",
        "configuration": if invalid.is_empty() { "valid" } else { "invalid" },
        "invalid_settings": invalid,
    });
    respond::json(200, body.to_string())
}

/// The configuration, once the request has shown the admin token.
fn admin(request: &Request, env: &Env) -> std::result::Result<Rc<Config>, Rejection> {
    let config = settings::config(env)?;
    didit_edge_core::admin::authorize(
        header(request, "authorization").as_deref(),
        config.admin_token.as_ref(),
    )?;
    Ok(config)
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
    let snapshot = crate::health::fresh_snapshot(env)
        .await
        .map_err(unavailable("origin health unavailable"))?;
    let origins: Vec<serde_json::Value> = config
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
    let config = settings::config(env)?;
    let secret = config
        .stream_token_secret
        .as_ref()
        .ok_or(Rejection::StreamOff)?;
    if !header(request, "upgrade").is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket")) {
        return Err(Rejection::UpgradeRequired);
    }
    let url = request.url().map_err(|_| Rejection::MissingToken)?;
    let protocols = header(request, "sec-websocket-protocol");
    let presented = presented_token(protocols.as_deref(), url.query())?;
    let now = (Date::now().as_millis() / 1000) as i64;
    let grant = stream_token::verify(
        presented.token,
        secret,
        now,
        config.stream_token_max_lifetime_secs,
        &mut RustCrypto,
    )
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
    let config = settings::config(env)?;
    limits::check_body_headers(
        header(request, "content-type").as_deref(),
        header(request, "content-length").as_deref(),
        config.max_body_bytes,
    )?;
    let body = read_body(request, config.max_body_bytes).await?;
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
    let intake = Intake::new(delivery, config.allow_simple_signature)?;
    let verified = webcrypto::answer(intake.challenges(), &config.webhook_secrets)
        .await
        .map_err(|_| Rejection::InvalidSignature)?;
    let now = (Date::now().as_millis() / 1000) as i64;
    let admission = intake.admit(verified, now, &config.intake_policy())?;
    let claim = Claim {
        id: admission.event_id.as_str(),
        inbox: &admission.inbox,
        alias: admission.alias.as_deref(),
        webhook_type: &admission.webhook_type,
        created_at: admission.created_at,
        risk_level: admission.risk_level,
        consumers: admission.consumers.clone(),
        cloud_event: &admission.cloud_event,
    };
    let receipt = claim_in_inbox(env, &admission.inbox, &claim)
        .await
        .map_err(|error| {
            console_error!(
                "inbox {} could not store {}: {error}",
                admission.inbox,
                admission.event_id
            );
            Rejection::StorageUnavailable
        })?;
    // Only a new event is news: a duplicate changes nobody's status.
    let update = matches!(receipt, Receipt::Accepted { .. }).then_some(admission.status_update);
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
    let reply: ClaimReply = response.json().await?;
    match reply.status.as_str() {
        "accepted" => Ok(Receipt::Accepted { id: reply.id }),
        "duplicate" => Ok(Receipt::Duplicate { id: reply.id }),
        other => Err(format!("inbox answered with unknown status `{other}`").into()),
    }
}

#[derive(serde::Deserialize)]
struct ClaimReply {
    status: String,
    id: String,
}
