//! What a generated payload is: a [`PayloadSpec`] of everything the flags can vary, built into
//! the JSON Didit sends for each `webhook_type` family and payload version.

use serde_json::{json, Value};

use super::decision::decision;
use crate::config;
use crate::error::Result;

/// The application id of generated payloads (as in `tests/didit.py`).
const APPLICATION_ID: &str = "app-7d1c";

/// Every `webhook_type` Didit sends.
pub(crate) const WEBHOOK_TYPES: [&str; 9] = [
    "status.updated",
    "data.updated",
    "user.status.updated",
    "user.data.updated",
    "business.status.updated",
    "business.data.updated",
    "activity.created",
    "transaction.created",
    "transaction.status.updated",
];

/// Didit's payload versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PayloadVersion {
    V1,
    V2,
    V3,
}

/// A feature that fails in a declined (or in-review) session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Failing {
    /// The ID document: declined as expired.
    Document,
    /// Liveness: a presentation attack.
    Liveness,
    /// Face match: low similarity.
    FaceMatch,
    /// AML screening: hits.
    Aml,
    /// IP analysis: a VPN or Tor exit.
    Ip,
    /// Email: a disposable address.
    Email,
    /// Phone: a virtual (VoIP) number.
    Phone,
    /// Database validation: no match.
    Database,
    /// Proof of address: declined.
    Poa,
}

/// Everything a generated payload can vary.
#[derive(Clone, Debug)]
pub(crate) struct PayloadSpec {
    pub(crate) webhook_type: String,
    pub(crate) status: Option<String>,
    pub(crate) previous_status: Option<String>,
    pub(crate) version: PayloadVersion,
    pub(crate) failing: Vec<Failing>,
    pub(crate) kyb: bool,
    pub(crate) test: bool,
    pub(crate) session_id: Option<String>,
    pub(crate) vendor_data: Option<String>,
    pub(crate) business_id: Option<String>,
    pub(crate) transaction_id: Option<String>,
    pub(crate) event_id: Option<String>,
    pub(crate) timestamp: Option<i64>,
    /// Top-level fields to set last (`--set key=json`).
    pub(crate) set: Vec<(String, Value)>,
}

/// What kind of subject a `webhook_type` is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Session,
    User,
    Business,
    Activity,
    Transaction,
}

fn family(webhook_type: &str) -> Family {
    match webhook_type.split('.').next() {
        Some("user") => Family::User,
        Some("business") => Family::Business,
        Some("activity") => Family::Activity,
        Some("transaction") => Family::Transaction,
        // status.updated, data.updated, and any type Didit adds later.
        _ => Family::Session,
    }
}

/// A status as typed (`approved`, `in-review`, `FLAGGED`) in Didit's spelling for the family.
fn didit_status(input: &str, family: Family) -> String {
    let key: String = input
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    let entity = matches!(family, Family::User | Family::Business);
    let known = match key.as_str() {
        "active" if entity => "ACTIVE",
        "flagged" if entity => "FLAGGED",
        "blocked" if entity => "BLOCKED",
        "approved" => "Approved",
        "declined" => "Declined",
        "inreview" => "In Review",
        "notstarted" => "Not Started",
        "inprogress" => "In Progress",
        "awaitinguser" => "Awaiting User",
        "resubmitted" => "Resubmitted",
        "abandoned" => "Abandoned",
        "expired" => "Expired",
        "kycexpired" => "Kyc Expired",
        "pending" => "Pending",
        _ => return input.to_owned(),
    };
    known.to_owned()
}

/// What every payload starts from, whatever its family.
struct Common {
    family: Family,
    event_id: String,
    timestamp: i64,
    vendor_data: String,
    /// The status asked for, in Didit's spelling for the family.
    status: Option<String>,
}

/// The id given, else a fresh UUID.
fn given_or_fresh(id: Option<&String>) -> Result<String> {
    match id {
        Some(id) => Ok(id.clone()),
        None => config::uuid4(),
    }
}

impl PayloadSpec {
    /// The payload, with fresh ids where none were given.
    pub(crate) fn build(&self, now: i64) -> Result<Value> {
        let family = family(&self.webhook_type);
        let common = Common {
            family,
            timestamp: self.timestamp.unwrap_or(now),
            event_id: given_or_fresh(self.event_id.as_ref())?,
            vendor_data: self.vendor_data.clone().unwrap_or_else(|| "user-42".into()),
            status: self.status.as_deref().map(|s| didit_status(s, family)),
        };
        let mut payload = match family {
            Family::Session => self.session(common)?,
            Family::User | Family::Business => self.entity(common)?,
            Family::Activity => self.activity(common),
            Family::Transaction => self.transaction(common)?,
        };
        self.finish(&mut payload);
        Ok(payload)
    }

    /// A verification session's event: the fields of `tests/didit.py`'s `session_payload`, and
    /// the decision its status has.
    fn session(&self, common: Common) -> Result<Value> {
        let Common {
            event_id,
            timestamp,
            vendor_data,
            status,
            ..
        } = common;
        let status = status.unwrap_or_else(|| {
            if self.failing.is_empty() {
                "Approved".into()
            } else {
                "Declined".into()
            }
        });
        let session_id = given_or_fresh(self.session_id.as_ref())?;
        let mut payload = json!({
            "event_id": event_id,
            "webhook_type": self.webhook_type,
            "timestamp": timestamp,
            "created_at": timestamp - 30,
            "application_id": APPLICATION_ID,
            "session_id": session_id,
            "status": status,
            "workflow_id": if self.kyb { "wf-kyb-basic" } else { "wf-kyc-basic" },
            "workflow_version": 3,
            "vendor_data": vendor_data,
            "metadata": {"plan": "gold", "score": 97.0},
            "environment": "live",
        });
        if self.kyb {
            payload["session_kind"] = json!("business");
            payload["business_session_id"] = json!(session_id);
            payload["vendor_business_id"] = json!(self.business_id());
        }
        if status == "Resubmitted" {
            payload["resubmit_info"] = json!({
                "nodes_to_resubmit": ["id-1"],
                "reasons": [{"node_id": "id-1", "reason": "Photo too blurry — réessayez"}],
            });
        }
        if let Some(decision) = decision(self, &status)? {
            payload["decision"] = decision;
        }
        Ok(payload)
    }

    /// A user's or a business's event: its status moved (`*.status.updated`), or its data
    /// changed.
    fn entity(&self, common: Common) -> Result<Value> {
        let Common {
            family,
            event_id,
            timestamp,
            vendor_data,
            status,
        } = common;
        let status_event = self.webhook_type.ends_with(".status.updated");
        let status =
            status.unwrap_or_else(|| if status_event { "FLAGGED" } else { "ACTIVE" }.into());
        let mut payload = json!({
            "event_id": event_id, "webhook_type": self.webhook_type, "timestamp": timestamp,
            "application_id": APPLICATION_ID, "environment": "live",
        });
        if family == Family::User {
            payload["vendor_data"] = json!(vendor_data);
            payload["uuid"] = json!(config::uuid4()?);
        } else {
            payload["vendor_business_id"] = json!(self.business_id());
        }
        if status_event {
            let previous = self.previous_entity_status(&status, family);
            payload["status"] = json!(status);
            payload["previous_status"] = json!(previous);
        } else {
            if family == Family::User || self.status.is_some() {
                payload["status"] = json!(status);
            }
            let (field, before, after) = if family == Family::User {
                ("full_name", "Jose Nunez", "José Núñez")
            } else {
                ("legal_name", "Acme", "Acme GmbH")
            };
            payload["changed_fields"] = json!([field]);
            payload["changes"] = json!({field: {"previous": before, "current": after}});
        }
        Ok(payload)
    }

    /// A user's or a business's status before this event: as given, else whichever of
    /// `ACTIVE` and `FLAGGED` the status is not.
    fn previous_entity_status(&self, status: &str, family: Family) -> String {
        self.previous_status.as_deref().map_or_else(
            || {
                if status == "ACTIVE" {
                    "FLAGGED"
                } else {
                    "ACTIVE"
                }
                .to_owned()
            },
            |s| didit_status(s, family),
        )
    }

    /// An activity on a user, such as a note from a reviewer.
    fn activity(&self, common: Common) -> Value {
        let mut payload = json!({
            "event_id": common.event_id, "webhook_type": self.webhook_type,
            "timestamp": common.timestamp, "application_id": APPLICATION_ID,
            "vendor_data": common.vendor_data,
            "activity": {"type": "note", "text": "called the user"},
        });
        if let Some(status) = common.status {
            payload["status"] = json!(status);
        }
        payload
    }

    /// A transaction created, or its status changed.
    fn transaction(&self, common: Common) -> Result<Value> {
        let created = self.webhook_type == "transaction.created";
        let status = common
            .status
            .unwrap_or_else(|| if created { "Pending" } else { "Approved" }.into());
        let transaction_id = given_or_fresh(self.transaction_id.as_ref())?;
        Ok(json!({
            "event_id": common.event_id, "webhook_type": self.webhook_type,
            "timestamp": common.timestamp, "application_id": APPLICATION_ID,
            "transaction_id": transaction_id, "vendor_data": common.vendor_data,
            "status": status, "amount": 1250.5, "currency": "EUR",
        }))
    }

    /// What every family gets last: `metadata.test_webhook` for a test delivery, then the
    /// fields of `--set`, over whatever was there.
    fn finish(&self, payload: &mut Value) {
        if self.test {
            match payload.get_mut("metadata") {
                Some(Value::Object(metadata)) => {
                    metadata.insert("test_webhook".into(), Value::Bool(true));
                }
                _ => payload["metadata"] = json!({"test_webhook": true}),
            }
        }
        if let Value::Object(fields) = payload {
            for (key, value) in &self.set {
                fields.insert(key.clone(), value.clone());
            }
        }
    }

    /// `vendor_business_id` of business events and KYB sessions.
    fn business_id(&self) -> String {
        self.business_id.clone().unwrap_or_else(|| "acme-de".into())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn entity_and_transaction_events_carry_their_subjects() {
        let build = |webhook_type: &str, status: Option<&str>| {
            PayloadSpec {
                webhook_type: webhook_type.into(),
                status: status.map(Into::into),
                previous_status: None,
                version: PayloadVersion::V3,
                failing: vec![],
                kyb: false,
                test: false,
                session_id: None,
                vendor_data: Some("user-7".into()),
                business_id: Some("biz-1".into()),
                transaction_id: Some("tx-1".into()),
                event_id: None,
                timestamp: Some(5),
                set: vec![("extra".into(), json!({"a": 1}))],
            }
            .build(0)
            .expect("builds")
        };
        let user = build("user.status.updated", Some("blocked"));
        assert_eq!(
            (
                &user["vendor_data"],
                &user["status"],
                &user["previous_status"]
            ),
            (&json!("user-7"), &json!("BLOCKED"), &json!("ACTIVE"))
        );
        assert_eq!(user["extra"], json!({"a": 1}));
        let business = build("business.status.updated", None);
        assert_eq!(
            (&business["vendor_business_id"], &business["status"]),
            (&json!("biz-1"), &json!("FLAGGED"))
        );
        let data = build("business.data.updated", None);
        assert!(data.get("status").is_none());
        let tx = build("transaction.status.updated", Some("declined"));
        assert_eq!(
            (&tx["transaction_id"], &tx["status"]),
            (&json!("tx-1"), &json!("Declined"))
        );
        let kyb = PayloadSpec {
            kyb: true,
            session_id: Some("b-1".into()),
            ..PayloadSpec {
                webhook_type: "status.updated".into(),
                status: None,
                previous_status: None,
                version: PayloadVersion::V3,
                failing: vec![],
                kyb: false,
                test: false,
                session_id: None,
                vendor_data: None,
                business_id: None,
                transaction_id: None,
                event_id: None,
                timestamp: None,
                set: vec![],
            }
        }
        .build(9)
        .expect("kyb");
        assert_eq!(
            (&kyb["session_kind"], &kyb["business_session_id"]),
            (&json!("business"), &json!("b-1"))
        );
        assert!(kyb["decision"]["registry_checks"].is_array());
    }
}
