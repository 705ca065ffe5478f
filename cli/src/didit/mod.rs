//! Didit's side of a delivery: payloads for every `webhook_type` and payload version, written
//! the way Didit's Python service writes them (`json.dumps(sort_keys=True, separators=(",",
//! ":"), ensure_ascii=True)`), and signed with every signature Didit sends. The output matches
//! `tests/didit.py` byte for byte: the same body for the same payload, the same headers in the
//! same order.
//!
//! - [`payload`]: what a payload is ([`PayloadSpec`]) and how each `webhook_type` family's
//!   payload is built;
//! - [`decision`]: a session payload's `decision` object: which features ran and failed, and
//!   how each payload version writes them;
//! - [`features`]: each feature's result as Didit reports it, passed or failing;
//! - [`python_json`]: the bytes of a body, as Python's `json.dumps` writes them;
//! - [`signatures`]: the headers that sign a body.

mod decision;
mod features;
mod payload;
mod python_json;
mod signatures;
#[cfg(test)]
mod tests;

pub(crate) use payload::{Failing, PayloadSpec, PayloadVersion, WEBHOOK_TYPES};
pub(crate) use python_json::encode;
pub(crate) use signatures::{sign, SignOptions, SignatureKind, V2Form};
