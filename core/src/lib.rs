//! The sans-IO core of didit-edge.
//!
//! It verifies Didit's webhook signatures, identifies and shapes events, and decides what
//! happens to them, with no IO and no clock: bytes, secrets and the current time come in;
//! verdicts, events and decisions go out. The Cloudflare Worker in `edge-worker` is a thin
//! adapter around it, and everything here is tested natively and in wasm.
//!
//! The modules, in the order a delivery meets them:
//! - arriving: [`limits`] (route, media type, size), then [`intake`], which drives [`envelope`],
//!   [`verify`] (with [`canonical`] and [`mac`]), [`identity`], [`normalize`], [`risk`],
//!   [`route`] and [`cloudevent`];
//! - kept: [`inbox`], one subject's state machine (claims, order, retries, dead letters,
//!   replay, retention), with [`delivery`] (a copy's state and retention) and [`retry`];
//! - sent: [`attempt`] (which origins, what an answer means), [`health`] (breakers),
//!   [`origin`] and [`event_type`] (where events go), [`standard_webhooks`] (signing),
//!   [`budget`] (how much one run may do);
//! - found again: [`reconcile`] (results whose webhook never came, from Didit's API);
//! - watched: [`stream_token`] and [`stream`] (who sees which statuses);
//! - around them: [`config`] and [`secret`] (settings), [`admin`] (the admin API's token,
//!   queries, rules and answers, which the worker writes and the CLI reads), [`time`], and
//!   [`rejection`], which names every refusal with its status and code.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod admin;
pub mod alert;
pub mod attempt;
pub mod budget;
pub mod canonical;
pub mod cloudevent;
pub mod config;
pub mod delivery;
pub mod envelope;
pub mod event_type;
pub mod health;
pub mod identity;
pub mod inbox;
pub mod intake;
mod lenient;
pub mod limits;
pub mod mac;
pub mod normalize;
pub mod origin;
pub mod reconcile;
pub mod rejection;
pub mod retry;
pub mod risk;
pub mod route;
pub mod secret;
pub mod standard_webhooks;
pub mod stream;
pub mod stream_token;
pub mod time;
pub mod trace;
pub mod verify;
