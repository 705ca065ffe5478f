//! Breakers read back from storage, where a row this release cannot read must never keep
//! traffic from an origin.

use alloc::string::String;
use alloc::vec::Vec;

use super::{Breaker, BreakerPolicy, Snapshot};

/// A breaker as read back from storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restored {
    /// Nothing was stored: a closed breaker nobody has reported on.
    Fresh(Breaker),
    /// What was stored.
    Stored(Breaker),
    /// What was stored cannot be read (written by an unknown release, or damaged). It is
    /// replaced by a fresh, closed breaker, which the next report overwrites: health only
    /// orders origins, and a closed breaker sends traffic as if no report had come (the side
    /// delivery fails safe on). The caller logs it, so the loss of that origin's history shows.
    Unreadable(Breaker),
}

impl Restored {
    /// Reads a stored breaker (`None`: no row).
    pub fn from_stored(stored: Option<&str>) -> Self {
        match stored {
            None => Self::Fresh(Breaker::new(BreakerPolicy::default())),
            Some(text) => match crate::json::from_str(text) {
                Ok(breaker) => Self::Stored(breaker),
                Err(_) => Self::Unreadable(Breaker::new(BreakerPolicy::default())),
            },
        }
    }

    /// The breaker to go on with.
    pub fn breaker(self) -> Breaker {
        match self {
            Self::Fresh(breaker) | Self::Stored(breaker) | Self::Unreadable(breaker) => breaker,
        }
    }
}

/// The snapshot of every stored `(origin, breaker)`, and the origins whose breaker could not
/// be read. Those are left out, so they count as closed ([`Restored::Unreadable`]): an
/// unreadable breaker never keeps traffic from an origin. The caller logs them.
pub fn snapshot_of(stored: impl IntoIterator<Item = (String, String)>) -> (Snapshot, Vec<String>) {
    let mut snapshot = Snapshot::new();
    let mut unreadable = Vec::new();
    for (origin, text) in stored {
        match Restored::from_stored(Some(&text)) {
            Restored::Stored(breaker) => {
                snapshot.insert(origin, breaker.state());
            }
            Restored::Fresh(_) | Restored::Unreadable(_) => unreadable.push(origin),
        }
    }
    (snapshot, unreadable)
}
