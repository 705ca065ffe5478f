//! What a stored row this release cannot read looks like: which value is unknown
//! ([`UnknownValue`], [`BadValue`]), which row holds it ([`RowKey`]), and the row as the
//! inbox holds it back ([`Unreadable`]) with its log line. Kept apart from the readers in
//! [`super::text`] because this is what the rest of the system (the inbox, the adapter's log,
//! the alerts) sees of a failed read, whichever column it came from.

use alloc::string::{String, ToString};
use core::fmt;

use serde::Serialize;

use super::Seq;

/// A stored value this release does not know, by what its column should hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UnknownValue {
    /// A copy's state other than `pending`, `delivered`, `dead` or `expired`.
    CopyState,
    /// A dead letter's reason that no [`crate::attempt::DeadReason`] is stored as.
    DeadReason,
    /// A dead-letter index outbox entry other than `put` or `remove`.
    IndexSync,
    /// An id derivation other than 1, 2 or 3.
    IdVersion,
    /// A risk level other than `unknown`, `low`, `medium` or `high`.
    RiskLevel,
    /// A flag other than 0 or 1.
    Flag,
    /// A count or an HTTP status outside what its column can hold (negative, or too large).
    OutOfRange,
    /// Nothing (`NULL`), where the state needs a value (a dead letter's time or reason).
    Missing,
    /// Not in the shape this release writes (an event's list of copies that is not one).
    Malformed,
}

impl UnknownValue {
    /// A stable code for logs and alerts.
    pub fn code(self) -> &'static str {
        match self {
            Self::CopyState => "copy_state",
            Self::DeadReason => "dead_reason",
            Self::IndexSync => "index_sync",
            Self::IdVersion => "id_version",
            Self::RiskLevel => "risk_level",
            Self::Flag => "flag",
            Self::OutOfRange => "out_of_range",
            Self::Missing => "missing",
            Self::Malformed => "malformed",
        }
    }
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CopyState => "not a known copy state",
            Self::DeadReason => "not a known dead-letter reason",
            Self::IndexSync => "not a known index change",
            Self::IdVersion => "not a known id derivation",
            Self::RiskLevel => "not a known risk level",
            Self::Flag => "not 0 or 1",
            Self::OutOfRange => "out of range",
            Self::Missing => "missing",
            Self::Malformed => "not in the shape this release writes",
        })
    }
}

impl core::error::Error for UnknownValue {}

/// Most bytes of an unreadable value that a log line or an alert quotes.
pub const QUOTED_BYTES: usize = 40;

/// One column's value that this release cannot read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadValue {
    /// The column.
    pub column: &'static str,
    /// What it should hold.
    pub unknown: UnknownValue,
    /// What it holds, cut to [`QUOTED_BYTES`] (`None`: `NULL`).
    pub text: Option<String>,
}

impl BadValue {
    /// `column` holds `text` (`None`: `NULL`), which is not a known `unknown`.
    pub fn new(
        column: &'static str,
        unknown: UnknownValue,
        text: Option<impl fmt::Display>,
    ) -> Self {
        Self {
            column,
            unknown,
            text: text.map(|text| cut(&text.to_string(), QUOTED_BYTES).into()),
        }
    }
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.text {
            Some(text) => write!(f, "{} {text:?} is {}", self.column, self.unknown),
            None => write!(f, "{} is {}", self.column, self.unknown),
        }
    }
}

fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// Which stored row: its table's key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RowKey {
    /// A row of `events`.
    Event(Seq),
    /// An entry of an event's list of copies (`events.copies`): one consumer's copy.
    Copy {
        /// The event.
        seq: Seq,
        /// The consumer.
        consumer: String,
    },
    /// A row of `refusals`: an origin that refused a copy.
    Refusal {
        /// The event.
        seq: Seq,
        /// The consumer.
        consumer: String,
        /// The origin.
        origin: String,
    },
}

impl RowKey {
    /// The table the row is in.
    pub fn table(&self) -> &'static str {
        match self {
            Self::Event(_) => "events",
            Self::Copy { .. } => "events.copies",
            Self::Refusal { .. } => "refusals",
        }
    }

    /// The event the row belongs to.
    pub fn seq(&self) -> Seq {
        match self {
            Self::Event(seq) | Self::Copy { seq, .. } | Self::Refusal { seq, .. } => *seq,
        }
    }

    /// The consumer whose copy the row belongs to (`None`: the event's own row).
    pub fn consumer(&self) -> Option<&str> {
        match self {
            Self::Event(_) => None,
            Self::Copy { consumer, .. } | Self::Refusal { consumer, .. } => Some(consumer),
        }
    }
}

impl fmt::Display for RowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Event(seq) => write!(f, "seq={}", seq.0),
            Self::Copy { seq, consumer } => write!(f, "seq={} consumer={consumer}", seq.0),
            Self::Refusal {
                seq,
                consumer,
                origin,
            } => write!(f, "event_seq={} consumer={consumer} origin={origin}", seq.0),
        }
    }
}

/// A stored row this release cannot read. The inbox leaves it as it is: it is never
/// rewritten or deleted, the copy it belongs to is never sent (see
/// [`crate::inbox::Inbox::with_unreadable`]), and its event still answers for deduplication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// Which row.
    pub row: RowKey,
    /// What it holds that this release does not know.
    pub value: BadValue,
}

#[derive(Serialize)]
struct UnreadableLine<'a> {
    event: &'static str,
    table: &'static str,
    column: &'static str,
    row: String,
    expected: UnknownValue,
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    subject_kind: &'a str,
}

impl Unreadable {
    /// The log line (`"event":"storage_unreadable"`): table, column, row key, what the column
    /// should hold and what it holds; the event by id (when its own row could be read) and the
    /// subject by kind. Never the payload, and never anything that names the subject.
    pub fn to_line(&self, event_id: Option<&str>, subject_kind: &str) -> String {
        let line = UnreadableLine {
            event: "storage_unreadable",
            table: self.row.table(),
            column: self.value.column,
            row: self.row.to_string(),
            expected: self.value.unknown,
            text: self.value.text.as_deref(),
            event_id,
            subject_kind,
        };
        // Strings and numbers into a String: serializing cannot fail.
        serde_json::to_string(&line).unwrap_or_default()
    }
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} row {}: {}", self.row.table(), self.row, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn an_unreadable_row_is_one_log_line_with_its_value_cut_short() {
        let long = "é".repeat(QUOTED_BYTES);
        let unreadable = Unreadable {
            row: RowKey::Copy {
                seq: Seq(3),
                consumer: "crm".into(),
            },
            value: BadValue::new("state", UnknownValue::CopyState, Some(&long)),
        };
        let text = unreadable.value.text.as_deref().expect("text");
        assert!(text.len() <= QUOTED_BYTES && long.starts_with(text));
        let line: serde_json::Value =
            serde_json::from_str(&unreadable.to_line(Some("evt_1"), "session")).expect("JSON");
        assert_eq!(line["event"], "storage_unreadable");
        assert_eq!(line["table"], "events.copies");
        assert_eq!(line["column"], "state");
        assert_eq!(line["row"], "seq=3 consumer=crm");
        assert_eq!(line["expected"], "copy_state");
        assert_eq!(line["event_id"], "evt_1");
        assert_eq!(line["subject_kind"], "session");
        assert_eq!(
            alloc::format!("{unreadable}"),
            alloc::format!(
                "events.copies row seq=3 consumer=crm: state {text:?} is not a known copy state"
            )
        );
    }
}
