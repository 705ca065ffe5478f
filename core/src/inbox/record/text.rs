//! The one place each stored value is spelled as text (or a number) and read back: a copy's
//! state and the columns beside it, the id derivation, the index outbox entry, risk levels and
//! flags. Every reader is strict: a value this release does not know is an [`UnknownValue`]
//! (or a [`BadValue`] naming its column), never a default, so a row written by a newer release
//! or corrupted in place is left alone instead of being rewritten as something it was not.

use core::str::FromStr;

use super::{BadValue, IdVersion, IndexSync, UnknownValue};
use crate::attempt::DeadReason;
use crate::delivery::CopyState;
use crate::risk::Level;
use crate::time::UnixMs;

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
}
