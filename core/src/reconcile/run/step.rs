//! The protocol between a run and its adapter: the IO a run asks for ([`Step`]), and what the
//! adapter may answer about an injection ([`Injected`], [`InjectFailure`]). Each step names
//! the handler its answer goes to.

use alloc::string::String;
use alloc::vec::Vec;

use crate::alert::Alert;

/// The IO a run asks for next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `GET` this path (and query) under the base URL
    /// ([`Run::handle_page`](super::Run::handle_page)).
    List {
        /// Path and query.
        path: String,
    },
    /// Read what is remembered of these sessions, and which of these erasure keys are marked
    /// ([`Run::handle_recalled`](super::Run::handle_recalled)).
    Recall {
        /// Didit's session ids.
        session_ids: Vec<String>,
        /// Their subjects' erasure keys
        /// ([`memory::erasure_key`](crate::reconcile::memory::erasure_key)).
        erasure_keys: Vec<String>,
    },
    /// Ask an inbox what it holds of this transition
    /// ([`Run::handle_inbox`](super::Run::handle_inbox)).
    AskInbox {
        /// The inbox's name.
        inbox: String,
        /// The `webhook_type`.
        webhook_type: &'static str,
        /// The status the API reports.
        status: String,
    },
    /// `GET` this decision, reading at most
    /// [`api::MAX_DECISION_BYTES`](crate::reconcile::api::MAX_DECISION_BYTES)
    /// ([`Run::handle_decision`](super::Run::handle_decision)).
    FetchDecision {
        /// Its path under the base URL.
        path: String,
    },
    /// Name this webhook body with [`crate::intake::Identified::from_api`], classify it and
    /// claim it in its inbox, publishing it like a webhook's
    /// ([`Run::handle_injected`](super::Run::handle_injected)).
    Inject {
        /// Didit's webhook shape, written from the decision.
        body: String,
    },
    /// Queue this alert ([`Run::handle_alerted`](super::Run::handle_alerted)).
    Alert {
        /// What operators should hear.
        alert: Alert,
    },
    /// The run is over: [`Run::finish`](super::Run::finish).
    Done,
}

/// What an inbox made of an injected event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injected {
    /// Stored: it will be delivered.
    Accepted,
    /// It held the transition already.
    Duplicate,
    /// The subject was erased: nothing was taken.
    Erased,
}

/// Why an injection did not reach a verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectFailure {
    /// The delivery settings are broken: no event can be classified until they are fixed.
    SettingsBroken,
    /// The edge could not name or classify the event written from the decision.
    Refused,
    /// The inbox could not be reached, or could not store it.
    InboxUnreachable,
}
