//! The public fetch handler: limits, then the core's intake, then the subject's inbox.

use didit_edge_core::intake::{Delivery, Intake};
use didit_edge_core::limits::{self, BodyBudget, Route};
use didit_edge_core::rejection::{Receipt, Rejection};
use didit_edge_core::verify::SignatureHeaders;
use futures_util::StreamExt;
use worker::{console_error, Date, Env, Method, Request, RequestInit, Response, Result};

use crate::claim::{self, Claim};
use crate::{respond, settings, webcrypto};

/// Answers one request. Only a failure to build a response at all escapes as an error.
pub async fn handle(mut request: Request, env: &Env) -> Result<Response> {
    let method = request.method().to_string();
    match limits::route(&method, &request.path()) {
        Err(rejection) => respond::rejection(&rejection),
        Ok(Route::Health) => health(env),
        Ok(Route::AdminOrigins) => match admin_origins(&request, env).await {
            Ok(response) => Ok(response),
            Err(rejection) => respond::rejection(&rejection),
        },
        Ok(Route::DiditWebhook) => match receive(&mut request, env).await {
            Ok(receipt) => respond::receipt(&receipt),
            Err(rejection) => respond::rejection(&rejection),
        },
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

/// `GET /admin/origins`: every origin with its consumer, failover priority and breaker state.
/// URLs are left out: they may carry credentials.
async fn admin_origins(request: &Request, env: &Env) -> std::result::Result<Response, Rejection> {
    let config = settings::config(env)?;
    didit_edge_core::admin::authorize(
        header(request, "authorization").as_deref(),
        config.admin_token.as_ref(),
    )?;
    let snapshot = crate::health::fresh_snapshot(env).await.map_err(|error| {
        console_error!("origin health unavailable: {error}");
        Rejection::StorageUnavailable
    })?;
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
        .map_err(|_| Rejection::StorageUnavailable)
}

fn header(request: &Request, name: &str) -> Option<String> {
    request.headers().get(name).ok().flatten()
}

async fn receive(request: &mut Request, env: &Env) -> std::result::Result<Receipt, Rejection> {
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
        alias: admission.alias.as_deref(),
        webhook_type: &admission.webhook_type,
        created_at: admission.created_at,
        risk_level: admission.risk_level,
        consumers: admission.consumers.clone(),
        cloud_event: &admission.cloud_event,
    };
    claim_in_inbox(env, &admission.inbox, &claim)
        .await
        .map_err(|error| {
            console_error!(
                "inbox {} could not store {}: {error}",
                admission.inbox,
                admission.event_id
            );
            Rejection::StorageUnavailable
        })
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
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(serde_json::to_string(&claim)?.into()));
    let request = Request::new_with_init(&format!("https://inbox{}", claim::PATH), &init)?;
    let stub = env
        .durable_object("INBOX")?
        .id_from_name(inbox)?
        .get_stub()?;
    let mut response = stub.fetch_with_request(request).await?;
    if response.status_code() != 200 {
        return Err(format!(
            "inbox answered {}: {}",
            response.status_code(),
            response.text().await.unwrap_or_default()
        )
        .into());
    }
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
