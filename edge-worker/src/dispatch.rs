//! The public fetch handler: hands each request to the front door of its endpoint.

use didit_edge_core::endpoint::{endpoint, Endpoint};
use worker::{Context, Env, Request, Response, Result};

use crate::http::{self, EdgeError};
use crate::{admin_api, settings, stream, stream_api, webhook};

/// Answers one request. Only a failure to build a response at all escapes as an error.
pub(crate) async fn handle(mut request: Request, env: &Env, ctx: &Context) -> Result<Response> {
    let method = request.method().to_string();
    let path = request.path();
    let answer = match endpoint(&method, &path) {
        Err(rejection) => Err(EdgeError::from(rejection)),
        Ok(Endpoint::Health) => return health(env),
        Ok(
            admin @ (Endpoint::AdminOrigins
            | Endpoint::Reconciliation
            | Endpoint::AdminMetrics
            | Endpoint::DeadLetters
            | Endpoint::ReplayDeadLetter { .. }
            | Endpoint::ReplayDeadLetters
            | Endpoint::Erase
            | Endpoint::Lookup
            | Endpoint::AdminSession
            | Endpoint::ConsoleStreamToken
            | Endpoint::DiditDestinations
            | Endpoint::DiditDeliveries),
        ) => admin_api::serve(admin, &mut request, env).await,
        Ok(Endpoint::Stream) => stream_api::open(&request, env).await,
        Ok(Endpoint::DiditWebhook) => match webhook::receive(&mut request, env).await {
            Ok((receipt, update)) => {
                if let Some(update) = update {
                    // The status goes out to watchers while Didit gets its answer.
                    let env = env.clone();
                    ctx.wait_until(async move { stream::publish(&env, &update).await });
                }
                return http::receipt(&receipt);
            }
            Err(error) => Err(error),
        },
    };
    http::answer(answer)
}

/// `GET /healthz`: up, and which settings are broken (by name only; what is wrong with them
/// goes to the log, since even a non-secret value may hold credentials).
fn health(env: &Env) -> Result<Response> {
    let invalid = settings::config(env).problems.settings();
    // Written by hand rather than as a `json!` tree (a map build and its serializer, for one
    // answer: docs/performance.md): settings' names are identifiers and need no escaping.
    let mut names = String::new();
    for name in &invalid {
        if !names.is_empty() {
            names.push(',');
        }
        names.push('"');
        names.push_str(name);
        names.push('"');
    }
    let configuration = if invalid.is_empty() {
        "valid"
    } else {
        "invalid"
    };
    http::json(
        200,
        format!(
            "{{\"configuration\":\"{configuration}\",\"invalid_settings\":[{names}],\"status\":\"ok\"}}"
        ),
    )
}
