//! Classifying a named event: what the delivery settings make of it. Its risk level, the
//! consumers that take it, the CloudEvent they receive and what the status stream says.
//!
//! This is the only step of the intake that needs the risk rules and the origins, so it is
//! kept apart: while those settings are broken, an event is named and stored, and classified
//! here once they are fixed.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde_json::value::RawValue;

use super::Identified;
use crate::cloudevent::{self, EventParts};
use crate::normalize::{Decision, Status};
use crate::origin::Origin;
use crate::rejection::Rejection;
use crate::risk::{Level, RiskRules};
use crate::route::consumers_for;
use crate::stream::StatusUpdate;

/// What classification is judged against.
#[derive(Clone, Copy, Debug)]
pub struct ClassifyPolicy<'c> {
    /// Rules for the risk level.
    pub risk_rules: &'c RiskRules,
    /// Where events can go, for choosing consumers.
    pub origins: &'c [Origin],
}

/// What configuration makes of an identified event: where it goes and what it says.
#[derive(Clone, Debug)]
pub struct Classified {
    /// The CloudEvent to deliver, as JSON.
    pub cloud_event: Box<RawValue>,
    /// The assessed risk level (routing filters use it).
    pub risk_level: Level,
    /// The consumers that take this event; empty when no origin wants it.
    pub consumers: Vec<String>,
    /// What the real-time stream says about it.
    pub status_update: StatusUpdate,
}

impl Identified<'_> {
    /// Assesses the risk, picks the consumers and shapes the CloudEvent.
    pub fn classify(&self, policy: &ClassifyPolicy<'_>) -> Result<Classified, Rejection> {
        let envelope = &self.envelope;
        let webhook_type = self.webhook_type.as_ref();
        // The body parsed, so the decision is valid JSON; one of an unexpected shape summarizes
        // to nothing and the payload still carries it whole.
        let decision = envelope
            .decision
            .and_then(|raw| crate::json::from_str::<Decision>(raw.get()).ok());
        let summary = decision.as_ref().map(|d| d.summary.clone());
        let status = self.status.as_deref().map(Status::of);
        let risk = policy.risk_rules.assess(
            webhook_type,
            status.as_ref().map(|s| s.code.as_str()),
            summary.as_ref(),
        );
        let consumers = consumers_for(policy.origins, webhook_type, risk.level)
            .into_iter()
            .map(String::from)
            .collect();
        let risk_level = risk.level;
        let status_update = StatusUpdate {
            event_id: String::from(self.event_id.as_str()),
            subject_kind: self.subject.kind.as_str().into(),
            subject_id: self.subject.id.clone().into_owned(),
            status_code: status.as_ref().map(|s| s.code.clone()),
            risk_level,
            time: self.created_at,
            test: self.test,
            vendor_data: envelope.vendor_data.as_deref().map(String::from),
            session_id: envelope.session_id.as_deref().map(String::from),
            workflow_id: envelope.workflow_id.as_deref().map(String::from),
            webhook_type: webhook_type.into(),
        };
        let cloud_event = cloudevent::to_json(&EventParts {
            payload_version: decision.as_ref().and_then(|d| d.version),
            status,
            decision: summary,
            risk,
            id: &self.event_id,
            subject: &self.subject,
            webhook_type,
            timestamp: self.created_at,
            envelope,
            payload: self.body,
            provenance: self.provenance,
            test: self.test,
            received_at: self.received_at,
        })
        .map_err(|error| Rejection::InvalidPayload {
            reason: error.to_string(),
        })?;
        Ok(Classified {
            cloud_event,
            risk_level,
            consumers,
            status_update,
        })
    }
}
