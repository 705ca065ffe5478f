//! What an inbox keeps about each event and each consumer's copy of it: the records the
//! adapter stores and loads, the changes it writes, and the one place each stored value is
//! spelled as text (or a number) and read back. A stored value this release does not know is
//! an error ([`UnknownValue`]), never a default: the row that holds it is [`Unreadable`], and
//! the inbox leaves it alone ([`super::Inbox::with_unreadable`]).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use serde::Serialize;

use crate::attempt::{DeadReason, LogEntry};
use crate::delivery::CopyState;
use crate::risk::Level;
use crate::time::{UnixMs, UnixSecs};
use crate::verify::Verified;

/// An event's place in its inbox, in order of arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub i64);

/// Which derivation an event's id comes from (see [`crate::identity`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdVersion {
    /// Subject, type, timestamp and status: what releases before the content digest stored.
    Legacy,
    /// The same plus the content digest.
    ContentDigest,
    /// Learned from Didit's API by reconciliation, with no webhook body to digest: the same
    /// event as the webhook of the same transition (see [`super::Inbox::knows_transition`]).
    Reconciled,
}

impl IdVersion {
    /// How the `id_version` column stores it (1 is what rows from before the column default
    /// to).
    pub fn number(self) -> i64 {
        match self {
            Self::Legacy => 1,
            Self::ContentDigest => 2,
            Self::Reconciled => 3,
        }
    }

    /// Reads a number written by [`IdVersion::number`].
    pub fn from_number(number: i64) -> Result<Self, UnknownValue> {
        [Self::Legacy, Self::ContentDigest, Self::Reconciled]
            .into_iter()
            .find(|version| version.number() == number)
            .ok_or(UnknownValue::IdVersion)
    }
}

/// A change to the dead-letter index that the index has not confirmed yet (an outbox).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexSync {
    /// List this dead letter.
    Put,
    /// It was replayed or expired: unlist it.
    Remove,
}

impl IndexSync {
    /// How the `index_sync` column stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Put => "put",
            Self::Remove => "remove",
        }
    }
}

impl FromStr for IndexSync {
    type Err = UnknownValue;

    /// Reads a name written by [`IndexSync::as_str`].
    fn from_str(text: &str) -> Result<Self, UnknownValue> {
        [Self::Put, Self::Remove]
            .into_iter()
            .find(|sync| sync.as_str() == text)
            .ok_or(UnknownValue::IndexSync)
    }
}

/// The name a [`CopyState`] is stored under (the `state` column); the columns beside it hold
/// what that state carries ([`StoredState`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateName {
    /// [`CopyState::Pending`].
    Pending,
    /// [`CopyState::Delivered`].
    Delivered,
    /// [`CopyState::Dead`].
    Dead,
    /// [`CopyState::Expired`].
    Expired,
}

impl StateName {
    /// Every name, in the order of [`CopyState`]'s variants.
    pub const ALL: [Self; 4] = [Self::Pending, Self::Delivered, Self::Dead, Self::Expired];

    /// The name of `state`.
    pub fn of(state: &CopyState) -> Self {
        match state {
            CopyState::Pending { .. } => Self::Pending,
            CopyState::Delivered { .. } => Self::Delivered,
            CopyState::Dead { .. } => Self::Dead,
            CopyState::Expired { .. } => Self::Expired,
        }
    }

    /// How the `state` column stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
            Self::Expired => "expired",
        }
    }
}

impl FromStr for StateName {
    type Err = UnknownValue;

    /// Reads a name written by [`StateName::as_str`].
    fn from_str(text: &str) -> Result<Self, UnknownValue> {
        Self::ALL
            .into_iter()
            .find(|name| name.as_str() == text)
            .ok_or(UnknownValue::CopyState)
    }
}

/// Reads a risk level written by [`Level::as_str`].
pub fn level_from_str(text: &str) -> Result<Level, UnknownValue> {
    text.parse().map_err(|()| UnknownValue::RiskLevel)
}

/// Reads a flag stored as 0 or 1.
pub fn flag_from_number(number: i64) -> Result<bool, UnknownValue> {
    match number {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(UnknownValue::Flag),
    }
}

/// A copy's state as its row stores it: the state's name and the columns each state uses
/// (those a state does not use are `NULL`, and `failures` is 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredState<'a> {
    /// The `state` column ([`StateName`]).
    pub state: &'a str,
    /// Failed attempts so far, while pending.
    pub failures: i64,
    /// When a pending copy is next due (Unix ms).
    pub next_attempt_at_ms: Option<i64>,
    /// When it was delivered (Unix ms).
    pub delivered_at_ms: Option<i64>,
    /// When it became a dead letter (Unix ms), also kept once it expired.
    pub dead_at_ms: Option<i64>,
    /// Why it became a dead letter ([`DeadReason::as_str`]).
    pub dead_reason: Option<&'a str>,
}

impl StoredState<'static> {
    /// How `state` is stored.
    pub fn of(state: CopyState) -> Self {
        let mut stored = StoredState {
            state: StateName::of(&state).as_str(),
            failures: 0,
            next_attempt_at_ms: None,
            delivered_at_ms: None,
            dead_at_ms: None,
            dead_reason: None,
        };
        match state {
            CopyState::Pending {
                failures,
                next_attempt_at,
            } => {
                stored.failures = i64::from(failures);
                stored.next_attempt_at_ms = Some(next_attempt_at.0);
            }
            CopyState::Delivered { at } => stored.delivered_at_ms = Some(at.0),
            CopyState::Dead { at, reason } | CopyState::Expired { at, reason } => {
                stored.dead_at_ms = Some(at.0);
                stored.dead_reason = Some(reason.as_str());
            }
        }
        stored
    }
}

impl StoredState<'_> {
    /// The state these columns store, or the first column that holds what this release does
    /// not know (an unknown name or reason, a count out of range, a time the state needs
    /// missing). Columns the state does not use are not looked at.
    pub fn read(&self) -> Result<CopyState, BadValue> {
        let name: StateName = self
            .state
            .parse()
            .map_err(|unknown| BadValue::new("state", unknown, Some(self.state)))?;
        let time = |column: &'static str, value: Option<i64>| {
            value
                .map(UnixMs)
                .ok_or_else(|| BadValue::new(column, UnknownValue::Missing, None::<&str>))
        };
        let reason = || -> Result<DeadReason, BadValue> {
            let text = self
                .dead_reason
                .ok_or_else(|| BadValue::new("dead_reason", UnknownValue::Missing, None::<&str>))?;
            text.parse()
                .map_err(|_| BadValue::new("dead_reason", UnknownValue::DeadReason, Some(text)))
        };
        Ok(match name {
            StateName::Pending => CopyState::Pending {
                failures: u32::try_from(self.failures).map_err(|_| {
                    BadValue::new("failures", UnknownValue::OutOfRange, Some(self.failures))
                })?,
                next_attempt_at: time("next_attempt_at_ms", self.next_attempt_at_ms)?,
            },
            StateName::Delivered => CopyState::Delivered {
                at: time("delivered_at_ms", self.delivered_at_ms)?,
            },
            StateName::Dead => CopyState::Dead {
                at: time("dead_at_ms", self.dead_at_ms)?,
                reason: reason()?,
            },
            StateName::Expired => CopyState::Expired {
                at: time("dead_at_ms", self.dead_at_ms)?,
                reason: reason()?,
            },
        })
    }
}

/// A stored value this release does not know, by what its column should hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UnknownValue {
    /// A copy's state other than `pending`, `delivered`, `dead` or `expired`.
    CopyState,
    /// A dead letter's reason that no [`DeadReason`] is stored as.
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
    /// A row of `deliveries`: one consumer's copy.
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
            Self::Copy { .. } => "deliveries",
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
            Self::Copy { seq, consumer } => write!(f, "event_seq={} consumer={consumer}", seq.0),
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
/// [`super::Inbox::with_unreadable`]), and its event still answers for deduplication.
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

/// An origin that answered a copy's last attempt with a 3xx or 4xx: tried after the others
/// in the next attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The origin.
    pub origin: String,
    /// What it answered.
    pub status: u16,
}

/// One consumer's copy of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyRecord {
    /// Where it stands.
    pub state: CopyState,
    /// The origin that took it, once delivered.
    pub delivered_to: Option<String>,
    /// Origins that answered the last attempt with a 3xx or 4xx.
    pub rejected_by: Vec<Rejected>,
    /// What the dead-letter index has yet to hear about it.
    pub index: Option<IndexSync>,
}

impl CopyRecord {
    /// A new copy, due now.
    pub fn new(now: UnixMs) -> Self {
        Self {
            state: CopyState::new(now),
            delivered_to: None,
            rejected_by: Vec::new(),
            index: None,
        }
    }
}

/// An event as stored, without its payload (which the adapter reads only to send it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    /// Its place in the inbox.
    pub seq: Seq,
    /// The stable event id.
    pub id: String,
    /// How the id was derived.
    pub id_version: IdVersion,
    /// Didit's `event_id`.
    pub alias: Option<String>,
    /// Didit's `webhook_type`.
    pub webhook_type: String,
    /// Didit's `status`.
    pub status: Option<String>,
    /// When Didit created it: the delivery order.
    pub created_at: UnixSecs,
    /// When the edge received it.
    pub received_at: UnixMs,
    /// Its risk level, once classified; `None` while it waits to be classified.
    pub risk_level: Option<Level>,
    /// Whether its payload (the CloudEvent) is still stored.
    pub has_payload: bool,
}

/// What an event carries when it is first stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredContent {
    /// The CloudEvent, when a consumer takes it (`None`: only the id is kept).
    Classified {
        /// The CloudEvent's JSON text.
        payload: Option<String>,
    },
    /// Didit's body as received, to classify once the delivery settings allow.
    Unclassified {
        /// Didit's body.
        body: String,
        /// How it was authenticated.
        verified: Verified,
        /// A console test delivery.
        test: bool,
    },
}

/// One change to write, in order. Each is one atomic write of the adapter (its statements
/// run with no `.await` between them); any prefix of a step's changes leaves a state the
/// inbox recovers from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The inbox's subject name (for the dead-letter index), written once.
    Subject(String),
    /// The subject was erased: its name (which holds its id) goes, until a new event names it.
    ForgetSubject,
    /// A new event with its content and its copies.
    InsertEvent {
        /// The event.
        event: EventRecord,
        /// What it carries.
        content: StoredContent,
        /// One copy per consumer (none while unclassified).
        copies: Vec<(String, CopyRecord)>,
    },
    /// A stored event is classified: its risk, its payload, its copies; its body goes.
    Classify {
        /// The event.
        seq: Seq,
        /// Its risk level.
        risk_level: Level,
        /// The CloudEvent's JSON text, when a consumer takes it.
        payload: Option<String>,
        /// One copy per consumer.
        copies: Vec<(String, CopyRecord)>,
    },
    /// One copy's whole record but its rejections ([`Change::SetRejections`]).
    PutCopy {
        /// The event.
        seq: Seq,
        /// The consumer.
        consumer: String,
        /// The record.
        copy: CopyRecord,
    },
    /// The origins that answered a copy's last attempt with a 3xx or 4xx, replacing those
    /// kept before (written only when they change).
    SetRejections {
        /// The event.
        seq: Seq,
        /// The consumer.
        consumer: String,
        /// The origins, in the order they answered.
        rejected_by: Vec<Rejected>,
    },
    /// Attempts to append to one copy's log (only ever needed by a dead letter's listing).
    AppendAttempts {
        /// The event.
        seq: Seq,
        /// The consumer.
        consumer: String,
        /// What happened, in order.
        entries: Vec<LogEntry>,
    },
    /// The payload (identity data) goes; the record stays for deduplication.
    DropPayload(Seq),
    /// The event is forgotten, id and attempt log included (its attached aliases too).
    ForgetEvent(Seq),
    /// Another of Didit's `event_id`s names this event: a later resend carrying it (with a
    /// fresh timestamp, after the subject moved on) is the same event.
    AttachAlias {
        /// The event.
        seq: Seq,
        /// Didit's `event_id`.
        alias: String,
    },
    /// The subject was erased at this moment: reconciliation takes nothing more about it
    /// until the mark expires ([`super::Inbox::erased_until`]).
    MarkErased(UnixMs),
    /// The erasure mark expired.
    ForgetErasure,
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn every_stored_name_reads_back_and_unknown_text_is_an_error() {
        for name in StateName::ALL {
            assert_eq!(name.as_str().parse(), Ok(name));
        }
        for sync in [IndexSync::Put, IndexSync::Remove] {
            assert_eq!(sync.as_str().parse(), Ok(sync));
        }
        for version in [
            IdVersion::Legacy,
            IdVersion::ContentDigest,
            IdVersion::Reconciled,
        ] {
            assert_eq!(IdVersion::from_number(version.number()), Ok(version));
        }
        for level in [Level::Unknown, Level::Low, Level::Medium, Level::High] {
            assert_eq!(level_from_str(level.as_str()), Ok(level));
        }
        assert_eq!("deadd".parse::<StateName>(), Err(UnknownValue::CopyState));
        assert_eq!("Pending".parse::<StateName>(), Err(UnknownValue::CopyState));
        assert_eq!("".parse::<IndexSync>(), Err(UnknownValue::IndexSync));
        assert_eq!(IdVersion::from_number(0), Err(UnknownValue::IdVersion));
        assert_eq!(IdVersion::from_number(4), Err(UnknownValue::IdVersion));
        assert_eq!(level_from_str("severe"), Err(UnknownValue::RiskLevel));
        assert_eq!(flag_from_number(1), Ok(true));
        assert_eq!(flag_from_number(0), Ok(false));
        assert_eq!(flag_from_number(2), Err(UnknownValue::Flag));
    }

    #[test]
    fn every_copy_state_round_trips_through_its_columns() {
        let reasons = [
            DeadReason::RetriesExhausted,
            DeadReason::AbortedByOrigin,
            DeadReason::RefusedByEveryOrigin,
            DeadReason::Erased,
            DeadReason::Superseded,
        ];
        let mut states = alloc::vec![
            CopyState::Pending {
                failures: u32::MAX,
                next_attempt_at: UnixMs(7),
            },
            CopyState::new(UnixMs(0)),
            CopyState::Delivered { at: UnixMs(9) },
        ];
        for reason in reasons {
            states.push(CopyState::Dead {
                at: UnixMs(5),
                reason,
            });
            states.push(CopyState::Expired {
                at: UnixMs(6),
                reason,
            });
        }
        for state in states {
            let stored = StoredState::of(state);
            assert_eq!(stored.read(), Ok(state), "{stored:?}");
        }
    }

    fn dead_letter() -> StoredState<'static> {
        StoredState::of(CopyState::Dead {
            at: UnixMs(5),
            reason: DeadReason::RetriesExhausted,
        })
    }

    #[test]
    fn a_state_this_release_does_not_know_names_its_column_and_text() {
        let bad = |stored: StoredState<'_>| stored.read().expect_err("unreadable");
        assert_eq!(
            bad(StoredState {
                state: "deadd",
                ..dead_letter()
            }),
            BadValue::new("state", UnknownValue::CopyState, Some("deadd"))
        );
        assert_eq!(
            bad(StoredState {
                dead_reason: Some("bored"),
                ..dead_letter()
            }),
            BadValue::new("dead_reason", UnknownValue::DeadReason, Some("bored"))
        );
        assert_eq!(
            bad(StoredState {
                dead_reason: None,
                ..dead_letter()
            }),
            BadValue::new("dead_reason", UnknownValue::Missing, None::<&str>)
        );
        assert_eq!(
            bad(StoredState {
                dead_at_ms: None,
                ..dead_letter()
            })
            .column,
            "dead_at_ms"
        );
        let pending = StoredState::of(CopyState::new(UnixMs(1)));
        assert_eq!(
            bad(StoredState {
                failures: -1,
                ..pending.clone()
            }),
            BadValue::new("failures", UnknownValue::OutOfRange, Some(-1))
        );
        assert_eq!(
            bad(StoredState {
                next_attempt_at_ms: None,
                ..pending
            })
            .unknown,
            UnknownValue::Missing
        );
        // Columns a state does not use are not looked at.
        assert!(StoredState {
            failures: -3,
            next_attempt_at_ms: None,
            ..dead_letter()
        }
        .read()
        .is_ok());
    }

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
        assert_eq!(line["table"], "deliveries");
        assert_eq!(line["column"], "state");
        assert_eq!(line["row"], "event_seq=3 consumer=crm");
        assert_eq!(line["expected"], "copy_state");
        assert_eq!(line["event_id"], "evt_1");
        assert_eq!(line["subject_kind"], "session");
        assert_eq!(
            alloc::format!("{unreadable}"),
            alloc::format!(
                "deliveries row event_seq=3 consumer=crm: state {text:?} is not a known copy state"
            )
        );
    }
}
