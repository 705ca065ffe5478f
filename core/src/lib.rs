//! The sans-IO core of didit-edge.
//!
//! It verifies Didit's webhook signatures, identifies and shapes events, and decides what
//! happens to them, with no IO and no clock: bytes, secrets and the current time come in;
//! verdicts, events and decisions go out. The Cloudflare Worker in `edge-worker` is a thin
//! adapter around it, and everything here is tested natively and in wasm.
//!
//! The modules, in the order a delivery meets them: [`limits`] (route, media type, size),
//! [`intake`] (which drives [`envelope`], [`verify`] with [`canonical`] and [`mac`],
//! [`identity`] and [`cloudevent`]), then [`route`], [`health`], [`attempt`], [`delivery`]
//! and [`retry`] for what follows, and [`standard_webhooks`] to sign what is forwarded.
//! [`config`] and [`secret`] hold the settings; [`rejection`] names every refusal.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod admin;
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
pub mod rejection;
pub mod retry;
pub mod risk;
pub mod route;
pub mod secret;
pub mod standard_webhooks;
pub mod stream;
pub mod stream_token;
pub mod time;
pub mod verify;
