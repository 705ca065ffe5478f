//! The message from the edge to a subject's inbox: claim this id, and if it is new, keep this
//! event. Text fields are `Cow`s, borrowed when the JSON has no escapes and owned when it has
//! (a subject id can hold quotes, backslashes or control characters); JSON payloads ride as
//! raw values, so they are neither escaped nor re-encoded.

use std::borrow::Cow;

use didit_edge_core::inbox::Source;
use didit_edge_core::intake::Identified;
use didit_edge_core::receipt::Receipt;
use didit_edge_core::risk::Level;
use didit_edge_core::verify::{Provenance, Verified};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use worker::Env;

use crate::objects::{self, InboxCall};

/// A claim, as sent and as received.
#[derive(Serialize, Deserialize)]
pub(crate) struct Claim<'a> {
    /// The stable event id.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// The id releases before the content digest gave this event; matched only against
    /// events they stored.
    #[serde(borrow)]
    pub legacy_id: Cow<'a, str>,
    /// The inbox's own name (its subject), which the dead-letter index needs for replays.
    #[serde(borrow)]
    pub inbox: Cow<'a, str>,
    /// Didit's `event_id`, a second duplicate key (for the same type and status).
    #[serde(borrow)]
    pub alias: Option<Cow<'a, str>>,
    /// Didit's `webhook_type`.
    #[serde(borrow)]
    pub webhook_type: Cow<'a, str>,
    /// Didit's `status`.
    #[serde(borrow)]
    pub status: Option<Cow<'a, str>>,
    /// When Didit created the event (Unix seconds): events go out in this order.
    pub created_at: i64,
    /// What the edge could make of it.
    #[serde(borrow)]
    pub content: Content<'a>,
    /// Where the edge learned of it (a webhook, or Didit's API by reconciliation).
    #[serde(default)]
    pub source: Source,
    /// Which signature verified it, for the admin lookup's timeline (none from the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Verified>,
}

impl<'a> Claim<'a> {
    /// The claim of an identified event, to store in `inbox` (its subject's).
    pub(crate) fn new(
        identified: &'a Identified<'a>,
        inbox: &'a str,
        content: Content<'a>,
        source: Source,
    ) -> Self {
        Self {
            id: Cow::Borrowed(identified.event_id.as_str()),
            legacy_id: Cow::Borrowed(identified.legacy_id.as_str()),
            inbox: Cow::Borrowed(inbox),
            alias: identified.alias.as_deref().map(Cow::Borrowed),
            webhook_type: Cow::Borrowed(&identified.webhook_type),
            status: identified.status.as_deref().map(Cow::Borrowed),
            created_at: identified.created_at,
            content,
            source,
            verified: match identified.provenance {
                Provenance::Signed(verified) => Some(verified),
                Provenance::Api => None,
            },
        }
    }

    /// Sends the claim to its inbox, which stores the event before it answers.
    pub(crate) async fn send(&self, env: &Env) -> worker::Result<Receipt> {
        objects::ask(
            env,
            InboxCall::BINDING,
            &self.inbox,
            InboxCall::Claim.path(),
            self,
        )
        .await
    }
}

/// An event as classified at the edge, or as received when the configuration that classifies
/// it is broken (the inbox then classifies it once it is fixed).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Content<'a> {
    /// Classified: where it goes and what it says.
    Classified {
        /// The assessed risk level (routing filters use it at delivery time).
        risk_level: Level,
        /// The consumers that take this event (each gets its own ordered delivery).
        consumers: Vec<String>,
        /// The CloudEvent to deliver.
        #[serde(borrow)]
        cloud_event: &'a RawValue,
    },
    /// Stored as received, to classify later.
    Unclassified {
        /// How it was authenticated (the CloudEvent says so).
        verified: Verified,
        /// A console test delivery.
        test: bool,
        /// When the edge accepted it (Unix seconds).
        received_at: i64,
        /// Didit's body.
        #[serde(borrow)]
        body: &'a RawValue,
    },
}
