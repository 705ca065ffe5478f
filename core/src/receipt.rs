//! The inbox's answer to a claim, which the edge passes on to Didit, and what follows from it.

use alloc::string::String;

use serde::{de, Deserialize, Deserializer, Serialize};

/// What an accepted delivery gets back, on the wire as `{"status":"accepted"|"duplicate","id":…}`
/// (the same shape between the inbox and the edge, and from the edge to Didit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Receipt {
    /// First time this event was seen: it is stored and will be delivered.
    Accepted {
        /// The stable event id.
        id: String,
    },
    /// This event was already taken; nothing more will happen.
    Duplicate {
        /// The stable event id of the original.
        id: String,
    },
    /// The subject was erased, and the event was read from Didit's API by reconciliation:
    /// nothing about the subject is taken from there any more (a webhook still is).
    Erased,
}

/// The wire shape of a [`Receipt`], read flat rather than as serde's internally tagged enum
/// (which buffers the whole object first and costs the upload several KiB); what it accepts
/// is the same.
#[derive(Deserialize)]
struct WireReceipt {
    status: Status,
    id: Option<String>,
}

/// The `status` tag.
enum Status {
    Accepted,
    Duplicate,
    Erased,
}

crate::named::by_name!(Status {
    Accepted = "accepted",
    Duplicate = "duplicate",
    Erased = "erased",
});

impl<'de> Deserialize<'de> for Receipt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let WireReceipt { status, id } = WireReceipt::deserialize(deserializer)?;
        let id = id.ok_or_else(|| de::Error::missing_field("id"));
        Ok(match status {
            Status::Accepted => Self::Accepted { id: id? },
            Status::Duplicate => Self::Duplicate { id: id? },
            Status::Erased => Self::Erased,
        })
    }
}

impl Receipt {
    /// The response body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Receipt {
    /// Whether the claim brought news a status watcher should hear: only a new event is news,
    /// and only when the stream is on (`stream_on`) can anyone be watching. One rule for the
    /// webhook path, events classified late by an inbox, and reconciliation.
    pub fn publishes_status(&self, stream_on: bool) -> bool {
        stream_on && matches!(self, Self::Accepted { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn receipts_render_status_and_id() {
        let duplicate = Receipt::Duplicate { id: "evt_1".into() };
        assert_eq!(
            duplicate.to_json(),
            r#"{"status":"duplicate","id":"evt_1"}"#
        );
        assert_eq!(
            serde_json::from_str::<Receipt>(&duplicate.to_json()).ok(),
            Some(duplicate)
        );
        for receipt in [Receipt::Accepted { id: "evt_2".into() }, Receipt::Erased] {
            assert_eq!(serde_json::from_str(&receipt.to_json()).ok(), Some(receipt));
        }
        assert!(serde_json::from_str::<Receipt>(r#"{"status":"accepted"}"#).is_err());
        assert!(serde_json::from_str::<Receipt>(r#"{"status":"taken","id":"e"}"#).is_err());
    }

    #[test]
    fn only_a_new_event_with_the_stream_on_is_published() {
        let accepted = Receipt::Accepted { id: "evt_1".into() };
        let duplicate = Receipt::Duplicate { id: "evt_1".into() };
        assert!(accepted.publishes_status(true));
        assert!(!accepted.publishes_status(false));
        assert!(!duplicate.publishes_status(true));
        assert!(!Receipt::Erased.publishes_status(true));
    }
}
