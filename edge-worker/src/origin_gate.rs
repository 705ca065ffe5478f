//! The gate of an origin with `max_concurrency` or `max_per_second`: one Durable Object per
//! limited origin, holding its tokens for every inbox. It is an instance of the `Health` class
//! named `gate:<origin>` rather than a class of its own: a class costs the upload its own
//! handler future and bindings (about 2.5 KiB gzip, measured), and the two never share state.
//! What to grant, when to tell an asker to come back and what must survive a restart are the
//! core's ([`didit_edge_core::origin_gate`]); this file keeps the machine in memory, writes its
//! fence before an answer leaves, and carries asks and releases. An origin without limits
//! never reaches a gate: its requests cost no request, row or subrequest more.

use std::cell::RefCell;

use didit_edge_core::origin_gate::{self, Answer, GateLimits, OriginGate as Machine};
use didit_edge_core::time::UnixMs;
use worker::{Env, Response, Result, State};

use crate::clock::{now_ms, within};
use crate::http;
use crate::objects::{self, HealthCall};
use crate::rows::{self, Columns};

/// The one fence row of a gate: until when a restarted gate grants nothing.
pub(crate) const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS gate_fence (id INTEGER PRIMARY KEY CHECK (id = 1), until_ms INTEGER NOT NULL)";

/// How long an inbox waits for its gate's answer before counting the gate as unreachable (the
/// copy then waits [`origin_gate::GATE_RETRY_MS`]; nothing is sent).
const ASK_TIMEOUT_MS: u64 = 2_000;

/// The gate object's memory: the core's machine, restored from the fence on the first call
/// after the object starts.
#[derive(Default)]
pub(crate) struct Memory(RefCell<Option<Machine>>);

/// Answers a gate call (`/gate/ask` or `/gate/release`) with `body` at the object `state`.
pub(crate) fn answer(
    state: &State,
    memory: &Memory,
    call: HealthCall,
    body: &str,
) -> Result<Response> {
    let now = UnixMs(now_ms());
    let mut slot = memory.0.borrow_mut();
    let machine = match slot.as_mut() {
        Some(machine) => machine,
        None => {
            let fence = rows::first(
                &state
                    .storage()
                    .sql()
                    .exec("SELECT until_ms FROM gate_fence WHERE id = 1", None)?,
                Columns::int,
            )?;
            slot.insert(Machine::restore(fence.map(UnixMs), random_seed()))
        }
    };
    if call == HealthCall::GateRelease {
        let lease = origin_gate::release_from_wire(body).ok_or("not a gate release")?;
        machine.release(lease, now);
        return http::json(200, "{}".into());
    }
    let (limits, presented) = origin_gate::ask_from_wire(body).ok_or("not a gate ask")?;
    let asked = machine.ask(limits, presented, now);
    if let Some(fence) = asked.fence {
        // Written before the answer leaves (the output gate holds it until then).
        state.storage().sql().exec(
            "INSERT OR REPLACE INTO gate_fence (id, until_ms) VALUES (1, ?)",
            vec![fence.0.into()],
        )?;
    }
    http::json(200, asked.answer.to_wire())
}

fn random_seed() -> u64 {
    (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64
}

/// Asks `origin`'s gate for a turn under `limits`, presenting `turn` (the copy's due time),
/// within [`ASK_TIMEOUT_MS`].
pub(crate) async fn ask(
    env: &Env,
    origin: &str,
    limits: GateLimits,
    turn: UnixMs,
) -> Result<Answer> {
    let asked = call(
        env,
        origin,
        HealthCall::GateAsk,
        origin_gate::ask_to_wire(limits, turn),
    );
    let text = within(ASK_TIMEOUT_MS, asked)
        .await
        .ok_or("the gate did not answer in time")??;
    Answer::from_wire(&text).ok_or_else(|| "the gate's answer is not one".into())
}

/// Gives `lease` back to `origin`'s gate; a release that fails is logged, and the lease
/// expires on its own.
pub(crate) async fn release(env: &Env, origin: &str, lease: u64) {
    let released = call(
        env,
        origin,
        HealthCall::GateRelease,
        origin_gate::release_to_wire(lease),
    );
    if let Err(error) = released.await {
        worker::console_error!(
            "origin {origin}: a lease could not be released (it expires on its own): {error}"
        );
    }
}

/// One call to `origin`'s gate, as text.
fn call<'a>(
    env: &'a Env,
    origin: &str,
    call: HealthCall,
    body: String,
) -> futures_util::future::LocalBoxFuture<'a, Result<String>> {
    let name = format!("gate:{origin}");
    Box::pin(
        async move { objects::ask_text(env, HealthCall::BINDING, &name, call.path(), body).await },
    )
}
