//! didit-edge on Cloudflare Workers: a thin adapter around `didit_edge_core`.
//!
//! The fetch handler (`dispatch`) reads a request, lets the core judge it, and hands admitted
//! events to the subject's [`Inbox`] Durable Object, which stores them before Didit gets
//! its answer and delivers them from its alarm. Every decision (what is authentic, what is a
//! duplicate, where an event goes, when to retry, what to forget) is the core's; this crate
//! reads and writes HTTP, SQLite and WebCrypto, and awaits IO. `docs/architecture.md` maps it.
//!
//! Front doors: `webhook` (Didit), `admin_api`, `stream_api`; the Durable Objects: `inbox`,
//! `dead_letters`, `health`, `stream`, `alerts`, `reconciler`, whose calls `objects` declares.

// Nothing on a request path may panic on any input: no unwrap, expect, panic or indexing
// outside tests (a panic in a Worker is a 500 for Didit and a retry, at best).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod access;
mod admin_api;
mod alerts;
mod claim;
mod clock;
mod dead_letters;
mod didit_api;
mod dispatch;
mod faults;
mod fields;
mod health;
mod http;
mod inbox;
mod objects;
mod origin;
mod origin_gate;
mod reconciler;
mod rows;
mod settings;
mod stream;
mod stream_api;
mod webcrypto;
mod webhook;

pub use alerts::Alerts;
pub use dead_letters::DeadLetters;
pub use health::Health;
pub use inbox::Inbox;
pub use reconciler::Reconciler;
pub use stream::StatusStream;

use didit_edge_core::health::Report;
use didit_edge_core::time::UnixMs;
use worker::{event, Context, Env, Request, Response, Result, ScheduleContext, ScheduledEvent};

#[event(fetch)]
async fn fetch(request: Request, env: Env, ctx: Context) -> Result<Response> {
    dispatch::handle(request, &env, &ctx).await
}

/// The cron trigger: reconcile with Didit's API (when `DIDIT_API_KEY` is set), and probe every
/// origin that has a `health_url`, so breakers open and close even when no events flow.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    reconciler::tick(&env).await;
    let config = settings::config(&env);
    let Some(delivery) = settings::delivery(&config) else {
        return;
    };
    for target in &delivery.origins {
        if let Some((outcome, retry_after)) = origin::probe(target).await {
            let up = outcome.probe_signal();
            let report = Report {
                origin: target.name.clone(),
                up,
                retry_after_ms: retry_after,
                at_ms: UnixMs(clock::now_ms()),
                probe: true,
            };
            health::report(&env, &report).await;
            worker::console_log!("probed {}: {outcome:?}", target.name);
        }
    }
}
