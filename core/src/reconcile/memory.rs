//! What reconciliation remembers between runs, and the changes that write it: per session, the
//! status it last compared and whether the edge held it, or why a missing result was set aside
//! and when it is tried again; and which erased subjects it must leave alone.
//!
//! Nothing here is identity data: session ids, statuses, times and failure codes. An erased
//! subject is remembered only by a digest of its name, never by its id.

use alloc::string::String;
use core::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::api::SessionKind;
use crate::identity::{Subject, SubjectKind};
use crate::time::UnixSecs;

/// Tries a set-aside gap gets before reconciliation gives up on it (and alerts).
pub const MAX_TRIES: u32 = 10;
/// The wait after a gap's first failed try; it doubles with each try, up to
/// [`RETRY_MAX_SECS`]: ten tries span about 22 hours, well inside the default lookback.
pub const RETRY_BASE_SECS: u64 = 300;
/// The longest wait between two tries of one gap.
pub const RETRY_MAX_SECS: u64 = 6 * 3_600;

/// How a set-aside gap is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GapRetry {
    /// Tries before giving up.
    pub tries: u32,
    /// The first wait; it doubles with each try.
    pub base_secs: u64,
    /// The longest wait.
    pub max_secs: u64,
}

impl Default for GapRetry {
    fn default() -> Self {
        Self {
            tries: MAX_TRIES,
            base_secs: RETRY_BASE_SECS,
            max_secs: RETRY_MAX_SECS,
        }
    }
}

/// What reconciliation remembers of one session: the status it last compared and whether the
/// edge held it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The status compared.
    pub status: String,
    /// `None`: the edge holds it. `Some`: missing since then (a gap waiting to settle).
    pub gap_since: Option<UnixSecs>,
    /// When the inbox was last asked.
    pub checked_at: UnixSecs,
    /// Why the gap could not be filled, when a try failed: it waits on its own schedule while
    /// every other session goes on.
    pub set_aside: Option<SetAside>,
}

/// A gap whose own tries failed (its decision could not be read, or its inbox reached).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetAside {
    /// Failed tries so far.
    pub tries: u32,
    /// What went wrong the last time.
    pub failure: Failure,
    /// When it is tried again; `None` once given up (after [`MAX_TRIES`]).
    pub retry_at: Option<UnixSecs>,
}

impl SetAside {
    /// The gap after one more failed try at `now`: its next try, or given up.
    pub fn after(
        previous: Option<&Self>,
        failure: Failure,
        now: UnixSecs,
        retry: GapRetry,
    ) -> Self {
        let tries = previous
            .map_or(0, |set_aside| set_aside.tries)
            .saturating_add(1);
        let retry_at = (tries < retry.tries).then(|| {
            let exponent = tries.saturating_sub(1).min(16);
            let wait = retry
                .base_secs
                .saturating_mul(1 << exponent)
                .min(retry.max_secs);
            UnixSecs(
                now.0
                    .saturating_add(i64::try_from(wait).unwrap_or(i64::MAX)),
            )
        });
        Self {
            tries,
            failure,
            retry_at,
        }
    }

    /// Whether reconciliation gave up on it.
    pub fn gave_up(&self) -> bool {
        self.retry_at.is_none()
    }
}

/// Why one gap's try failed: each is about that session alone, so it never holds up others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Its decision read answered 408 or 5xx, or did not answer in time.
    DecisionUnavailable {
        /// The status, `None` when nothing answered.
        status: Option<u16>,
    },
    /// Its decision read was refused with another 4xx (403: the session is outside the API
    /// key's scope).
    DecisionRefused {
        /// The status.
        status: u16,
    },
    /// Its decision read answered 404.
    DecisionNotFound,
    /// Its decision is not the documented JSON (or names another session).
    DecisionUnreadable,
    /// Its decision is larger than an event may be stored ([`super::api::MAX_DECISION_BYTES`]).
    DecisionTooLarge,
    /// Its inbox could not be asked, or could not store the event.
    InboxUnreachable,
    /// The edge could not name or classify the event it wrote from the decision.
    EventRefused,
}

impl Failure {
    /// The stable code stored and shown by the admin API.
    pub fn code(self) -> &'static str {
        match self {
            Self::DecisionUnavailable { .. } => "decision_unavailable",
            Self::DecisionRefused { .. } => "decision_refused",
            Self::DecisionNotFound => "decision_not_found",
            Self::DecisionUnreadable => "decision_unreadable",
            Self::DecisionTooLarge => "decision_too_large",
            Self::InboxUnreachable => "inbox_unreachable",
            Self::EventRefused => "event_refused",
        }
    }

    /// The HTTP status Didit's API answered, where one came.
    pub fn status(self) -> Option<u16> {
        match self {
            Self::DecisionUnavailable { status } => status,
            Self::DecisionRefused { status } => Some(status),
            Self::DecisionNotFound => Some(404),
            _ => None,
        }
    }

    /// The failure stored as `code` and `status`; `None` for a code this release does not
    /// know (the adapter reports it instead of guessing).
    pub fn from_stored(code: &str, status: Option<u16>) -> Option<Self> {
        Some(match code {
            "decision_unavailable" => Self::DecisionUnavailable { status },
            "decision_refused" => Self::DecisionRefused { status: status? },
            "decision_not_found" => Self::DecisionNotFound,
            "decision_unreadable" => Self::DecisionUnreadable,
            "decision_too_large" => Self::DecisionTooLarge,
            "inbox_unreachable" => Self::InboxUnreachable,
            "event_refused" => Self::EventRefused,
            _ => return None,
        })
    }

    /// One line for the run report and the log: what failed and what happens next, without
    /// the session's id.
    pub fn describe(self, set_aside: &SetAside, retry: GapRetry) -> String {
        let mut text = String::new();
        let _ = match self {
            Self::DecisionUnavailable {
                status: Some(status),
            } => {
                write!(text, "a decision read answered {status}")
            }
            Self::DecisionUnavailable { status: None } => {
                write!(text, "a decision read got no answer in time")
            }
            Self::DecisionRefused { status } => {
                write!(text, "a decision read was refused with {status}")
            }
            Self::DecisionNotFound => write!(text, "a decision read answered 404"),
            Self::DecisionUnreadable => write!(text, "a decision was not the documented JSON"),
            Self::DecisionTooLarge => write!(
                text,
                "a decision was larger than {} bytes",
                super::api::MAX_DECISION_BYTES
            ),
            Self::InboxUnreachable => write!(text, "an inbox could not be reached"),
            Self::EventRefused => write!(text, "the event written from a decision was refused"),
        };
        let _ = if set_aside.gave_up() {
            write!(text, "; given up after {} tries", set_aside.tries)
        } else {
            write!(
                text,
                "; the session is set aside (try {} of {})",
                set_aside.tries, retry.tries
            )
        };
        text
    }

    /// Whether Didit's API itself may be struggling: the run stops and backs off as after a
    /// failed list page (the session is set aside all the same).
    pub fn backs_off(self) -> bool {
        matches!(self, Self::DecisionUnavailable { .. })
    }
}

/// The digest an erased subject is remembered by: enough to recognise it in a listing,
/// without keeping its id.
pub fn erasure_key(subject: &Subject<'_>) -> String {
    let digest = Sha256::digest(subject.inbox_name().as_bytes());
    hex::encode(digest.get(..16).unwrap_or_default())
}

/// The erasure key of a listed session.
pub fn session_erasure_key(kind: SessionKind, session_id: &str) -> String {
    erasure_key(&Subject {
        kind: kind.subject_kind(),
        id: session_id.into(),
    })
}

/// How alerts and the admin API name a gap: a digest of its session id, so an alert carries
/// no id and an operator still finds the session in `GET /admin/reconciliation`.
pub fn gap_reference(session_id: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(b"didit-edge gap:");
    digest.update(session_id.as_bytes());
    hex::encode(digest.finalize().get(..8).unwrap_or_default())
}

/// A change for the adapter to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Remember what was found of a session (replacing what was remembered).
    Remember {
        /// Didit's session id.
        session_id: String,
        /// When it was created (what [`Change::ForgetCreatedBefore`] goes by).
        created_at: UnixSecs,
        /// What was found.
        seen: Seen,
    },
    /// Forget everything about a session (its subject was erased).
    Forget {
        /// Didit's session id.
        session_id: String,
    },
    /// Sessions created before this are out of the lookback: forget them.
    ForgetCreatedBefore(UnixSecs),
    /// Leave this erased subject alone: never ask about it, fetch or inject anything of it.
    MarkErased {
        /// Its [`erasure_key`].
        key: String,
        /// When the erasure was learned of.
        at: UnixSecs,
    },
    /// Erasure marks from before this no longer matter: every session of theirs is older than
    /// what reconciliation looks at.
    ForgetErasedBefore(UnixSecs),
}

/// What an operator's erasure of `subject` at `now` changes in reconciliation's memory: the
/// session goes, and a mark keeps it from coming back. `None` for subjects reconciliation never
/// looks at (users, businesses, transactions).
pub fn erasure(subject: &Subject<'_>, now: UnixSecs) -> Option<[Change; 2]> {
    if !matches!(
        subject.kind,
        SubjectKind::Session | SubjectKind::BusinessSession
    ) {
        return None;
    }
    Some([
        Change::Forget {
            session_id: subject.id.clone().into_owned(),
        },
        Change::MarkErased {
            key: erasure_key(subject),
            at: now,
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_gap_is_tried_on_a_growing_schedule_then_given_up() {
        let mut set_aside: Option<SetAside> = None;
        let mut waits = alloc::vec::Vec::new();
        for n in 0..MAX_TRIES {
            let now = UnixSecs(1_000 * i64::from(n));
            let next = SetAside::after(
                set_aside.as_ref(),
                Failure::DecisionNotFound,
                now,
                GapRetry::default(),
            );
            if let Some(at) = next.retry_at {
                waits.push(at.0 - now.0);
            }
            set_aside = Some(next);
        }
        assert_eq!(
            waits,
            [300, 600, 1_200, 2_400, 4_800, 9_600, 19_200, 21_600, 21_600]
        );
        let last = set_aside.expect("tried");
        assert_eq!(last.tries, MAX_TRIES);
        assert!(last.gave_up());
    }

    #[test]
    fn failures_are_stored_by_code_and_read_back_strictly() {
        for failure in [
            Failure::DecisionUnavailable { status: None },
            Failure::DecisionUnavailable { status: Some(503) },
            Failure::DecisionRefused { status: 403 },
            Failure::DecisionNotFound,
            Failure::DecisionUnreadable,
            Failure::DecisionTooLarge,
            Failure::InboxUnreachable,
            Failure::EventRefused,
        ] {
            assert_eq!(
                Failure::from_stored(failure.code(), failure.status()),
                Some(failure)
            );
        }
        assert_eq!(Failure::from_stored("pending", None), None);
        assert_eq!(Failure::from_stored("decision_refused", None), None);
    }

    #[test]
    fn an_erasure_forgets_sessions_only_and_keys_them_without_their_id() {
        let session = Subject {
            kind: SubjectKind::Session,
            id: "s-1".into(),
        };
        let [forget, mark] = erasure(&session, UnixSecs(5)).expect("a session");
        assert_eq!(
            forget,
            Change::Forget {
                session_id: "s-1".into()
            }
        );
        let Change::MarkErased { key, at } = mark else {
            panic!("{mark:?}");
        };
        assert_eq!((key.len(), at), (32, UnixSecs(5)));
        assert!(!key.contains("s-1"));
        assert_eq!(key, session_erasure_key(SessionKind::User, "s-1"));
        assert_ne!(key, session_erasure_key(SessionKind::Business, "s-1"));
        let user = Subject {
            kind: SubjectKind::User,
            id: "s-1".into(),
        };
        assert_eq!(erasure(&user, UnixSecs(5)), None);
    }
}
