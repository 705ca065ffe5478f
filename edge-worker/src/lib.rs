//! didit-edge on Cloudflare Workers: a thin adapter around `didit_edge_core`.
//!
//! The fetch handler reads a request, lets the core judge it, and hands admitted events to the
//! subject's [`inbox::Inbox`] Durable Object, which stores them before Didit gets its answer and
//! delivers them to the origin from its alarm. Decisions (what is authentic, what is a
//! duplicate key, when to retry) are the core's; this crate only moves bytes and awaits IO.

mod claim;
mod clock;
mod dead_letters;
mod edge;
mod faults;
mod health;
mod inbox;
mod object;
mod origin;
mod respond;
mod settings;
mod stream;
mod webcrypto;

pub use dead_letters::DeadLetters;
pub use health::Health;
pub use inbox::Inbox;
pub use stream::StatusStream;

use worker::{event, Context, Env, Request, Response, Result, ScheduleContext, ScheduledEvent};

#[event(fetch)]
async fn fetch(request: Request, env: Env, ctx: Context) -> Result<Response> {
    edge::handle(request, &env, &ctx).await
}

/// The cron trigger: probe every origin that has a `health_url`, so breakers open and close
/// even when no events flow.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let config = settings::config(&env);
    let Some(delivery) = settings::delivery(&config) else {
        return;
    };
    for target in &delivery.origins {
        if let Some((outcome, retry_after)) = origin::probe(target).await {
            let up = outcome.probe_signal();
            health::report(&env, &target.name, up, retry_after, clock::now_ms()).await;
            worker::console_log!("probed {}: {outcome:?}", target.name);
        }
    }
}
