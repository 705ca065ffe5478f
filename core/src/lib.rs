//! The sans-IO core of didit-edge.
//!
//! It verifies Didit's webhook signatures, identifies and shapes events, and decides what
//! happens to them, with no IO and no clock: bytes, secrets and the current time come in;
//! verdicts, events and decisions go out. The Cloudflare Worker in `edge-worker` is a thin
//! adapter around it, and everything here is tested natively and in wasm.
//!
//! The modules, in the order a delivery meets them:
//! - arriving: [`endpoint`] (which endpoint), [`limits`] (media type, size), then [`intake`], which drives [`envelope`],
//!   [`verify`] (with [`canonical`] and [`mac`]), [`identity`], [`normalize`], [`risk`],
//!   [`route`] and [`cloudevent`];
//! - kept: [`inbox`], one subject's state machine (claims, order, retries, dead letters,
//!   replay, retention), with [`delivery`] (a copy's state and retention) and [`retry`];
//! - sent: [`attempt`] (which origins, what an answer means), [`health`] (breakers, and each
//!   isolate's snapshot of them) with [`health_record`] (how the shared object records a
//!   report), [`origin`] and [`event_type`] (where events go), [`origin_gate`] (a limited
//!   origin's shared tokens), [`receipt`] (a claim's answer),
//!   [`standard_webhooks`] (signing),
//!   [`budget`] (how much one run may do);
//! - listed: [`dead_letter_index`] (the list of every subject's dead letters);
//! - found again: [`reconcile`] (results whose webhook never came, from Didit's API);
//! - compared: [`didit_view`] (Didit's own record of its webhooks: destination health, a
//!   session's attempts);
//! - watched: [`stream_token`] and [`stream`] (who sees which statuses), [`channel`] (what one
//!   stream channel keeps and does);
//! - told: [`alert`] (operational alerts) and [`alert_outbox`] (their outbox's run);
//! - around them: [`config`] and [`secret`] (settings), [`admin`] (the admin API's token,
//!   queries, rules and answers, which the worker writes and the CLI reads), [`time`], and
//!   [`rejection`], which names every refusal with its status and code.

#![no_std]
#![forbid(unsafe_code)]
// Nothing on a request path may panic on any input: no unwrap, expect, panic or indexing
// outside tests (what cannot fail is written so the compiler sees it).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
#![warn(missing_docs)]

extern crate alloc;

pub mod access;
pub mod admin;
pub mod alert;
pub mod alert_outbox;
pub mod attempt;
pub mod budget;
pub mod canonical;
pub mod channel;
pub mod cloudevent;
pub mod config;
pub mod dead_letter_index;
pub mod delivery;
pub mod didit_view;
pub mod dropin;
pub mod endpoint;
pub mod envelope;
pub mod event_type;
pub mod health;
pub mod health_record;
pub mod identity;
pub mod inbox;
pub mod intake;
pub mod json;
mod lenient;
pub mod limits;
pub mod mac;
pub mod metrics;
mod named;
pub mod normalize;
pub mod origin;
pub mod origin_gate;
pub mod receipt;
pub mod reconcile;
pub mod rejection;
pub mod retry;
pub mod risk;
pub mod route;
pub mod secret;
mod sorted;
pub mod standard_webhooks;
pub mod stream;
pub mod stream_token;
pub mod time;
pub mod trace;
mod unicode;
pub mod verify;
