//! How an inbox is kept in its Durable Object's SQLite: the schema, loading the core's
//! machine from it, and writing each [`Change`] the machine makes. The text of every stored
//! value is spelled in the core (`didit_edge_core::inbox::record`), which also reads it back.
//!
//! Loading is strict: a stored value this release does not know (a corrupted state, an id
//! derivation from a future release) is never read as some default. The row is handed to the
//! machine as [`Unreadable`], which leaves it as it is and never sends its copy, and it is
//! logged (`"event":"storage_unreadable"`) and alerted once ([`alert_unreadable`]).
//!
//! One module per seam:
//! - `schema`: the tables, and the migrations that bring an older object's storage to them;
//! - `meta`: single values kept by key, which several of the others read or write;
//! - `load`: the machine from storage, one reader per table;
//! - `write`: each [`Change`] as SQL, one writer per change, grouped by table;
//! - `read`: the values read only when the machine asks (payload, stored body, attempt log);
//! - `alerts`: raising, once each, the alerts about rows that could not be read.
//!
//! [`Change`]: didit_edge_core::inbox::Change
//! [`Unreadable`]: didit_edge_core::inbox::Unreadable

mod alerts;
mod load;
mod meta;
mod read;
mod schema;
mod write;

pub(super) use alerts::{alert_unreadable, unreadable_alerts};
pub(super) use load::load;
pub(super) use meta::{meta_number, set_meta_number};
pub(super) use read::{attempt_log, payload, stored_body};
pub(super) use schema::{migrate, Storage};
pub(super) use write::apply;
