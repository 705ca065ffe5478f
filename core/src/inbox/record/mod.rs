//! What an inbox keeps about each event and each consumer's copy of it: the records the
//! adapter stores and loads, the changes it writes, and the one place each stored value is
//! spelled as text (or a number) and read back. A stored value this release does not know is
//! an error ([`UnknownValue`]), never a default: the row that holds it is [`Unreadable`], and
//! the inbox leaves it alone ([`super::Inbox::with_unreadable`]).
//!
//! Four pieces, each readable without the others:
//! - `records`: what the machine keeps (an event, a copy, what they carry);
//! - `change`: what it asks the adapter to write, one atomic write each;
//! - `text`: how each stored value is spelled in its column, and read back strictly;
//! - `unreadable`: what a failed read is (the unknown value, its row) and how it is logged.

mod change;
mod records;
mod text;
mod unreadable;

pub use change::Change;
pub use records::{CopyRecord, EventRecord, IdVersion, IndexSync, Rejected, Seq, StoredContent};
pub use text::{flag_from_number, level_from_str, StateName, StoredState};
pub use unreadable::{BadValue, RowKey, UnknownValue, Unreadable, QUOTED_BYTES};
