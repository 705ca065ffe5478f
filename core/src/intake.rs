//! One delivery from Didit, from bytes to an admitted event or a rejection.
//!
//! The order of checks is deliberate: authenticity first, so an unauthenticated sender learns
//! nothing about what the edge would accept; then the fields the edge needs; then freshness,
//! judged on the body's `timestamp` (which every signature covers) and on `X-Timestamp` when
//! present, both bounded in both directions.
//!
//! ```text
//! let intake = Intake::new(delivery, allow_simple)?;    // which messages to authenticate
//! let verified = intake.verify_with(&secrets, &mut mac)?; // or answer intake.challenges() async
//! let admission = intake.admit(verified, now, tolerance)?;
//! ```

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use serde_json::value::RawValue;

use crate::cloudevent::{self, EventParts};
use crate::config::{Config, Origin};
use crate::envelope::{Envelope, EnvelopeError};
use crate::identity::{subject_of, EventId};
use crate::mac::HmacSha256;
use crate::normalize::{Decision, Status};
use crate::rejection::Rejection;
use crate::risk::{Level, RiskRules};
use crate::route::consumers_for;
use crate::secret::WebhookSecrets;
use crate::stream::StatusUpdate;
use crate::verify::{self, ChallengeTiers, SignatureHeaders, Verified, VerifyError};

/// A delivery as received.
#[derive(Clone, Copy, Debug)]
pub struct Delivery<'a> {
    /// The body bytes exactly as received.
    pub body: &'a [u8],
    /// The signature headers.
    pub headers: SignatureHeaders<'a>,
    /// `X-Didit-Test-Webhook: true` was sent.
    pub test_header: bool,
}

/// A delivery being checked.
#[derive(Debug)]
pub struct Intake<'a> {
    delivery: Delivery<'a>,
    envelope: Result<Envelope<'a>, EnvelopeError>,
    challenges: ChallengeTiers<'a>,
}

/// What admission is judged against.
#[derive(Clone, Copy, Debug)]
pub struct Policy<'c> {
    /// Largest accepted distance between a delivery's timestamp and now.
    pub tolerance_secs: u64,
    /// Rules for the risk level.
    pub risk_rules: &'c RiskRules,
    /// Where events can go, for choosing consumers.
    pub origins: &'c [Origin],
}

impl Config {
    /// The part of the configuration admission needs.
    pub fn intake_policy(&self) -> Policy<'_> {
        Policy {
            tolerance_secs: self.timestamp_tolerance_secs,
            risk_rules: &self.risk_rules,
            origins: &self.origins,
        }
    }
}

/// An authentic, fresh, well-formed delivery, ready to be claimed and stored.
#[derive(Clone, Debug)]
pub struct Admission {
    /// The stable event id (see [`crate::identity`]).
    pub event_id: EventId,
    /// Didit's own `event_id`, remembered as an alias so a retry with a fresh timestamp but the
    /// same `event_id` is still recognised.
    pub alias: Option<String>,
    /// The inbox (Durable Object) that owns the subject.
    pub inbox: String,
    /// The CloudEvent to deliver, as JSON.
    pub cloud_event: Box<RawValue>,
    /// How it was authenticated.
    pub verified: Verified,
    /// Didit's `webhook_type`.
    pub webhook_type: String,
    /// When Didit created the event (its `timestamp`, Unix seconds): the delivery order.
    pub created_at: i64,
    /// The assessed risk level (routing filters use it).
    pub risk_level: Level,
    /// The consumers that take this event; empty when no origin wants it.
    pub consumers: alloc::vec::Vec<String>,
    /// What the real-time stream says about it.
    pub status_update: StatusUpdate,
}

impl<'a> Intake<'a> {
    /// Reads the delivery and lists what must be authenticated.
    pub fn new(delivery: Delivery<'a>, allow_simple: bool) -> Result<Self, Rejection> {
        let envelope = Envelope::parse(delivery.body);
        let challenges = verify::challenges(
            delivery.body,
            &delivery.headers,
            envelope.as_ref().ok(),
            allow_simple,
        )
        .map_err(rejection_of)?;
        Ok(Self {
            delivery,
            envelope,
            challenges,
        })
    }

    /// The messages to MAC, tier by tier in order of preference; stop at the first match.
    pub fn challenges(&self) -> ChallengeTiers<'a> {
        self.challenges.clone()
    }

    /// Authenticates synchronously with `mac`.
    pub fn verify_with(
        &self,
        secrets: &WebhookSecrets,
        mac: &mut impl HmacSha256,
    ) -> Result<Verified, Rejection> {
        verify::answer(self.challenges.clone(), secrets, mac).map_err(rejection_of)
    }

    /// Checks fields and freshness of an authenticated delivery and shapes its event.
    /// `now` is Unix seconds.
    pub fn admit(
        &self,
        verified: Verified,
        now: i64,
        policy: &Policy<'_>,
    ) -> Result<Admission, Rejection> {
        let tolerance_secs = policy.tolerance_secs;
        let envelope = match &self.envelope {
            Ok(envelope) => envelope,
            Err(EnvelopeError::Malformed(_)) => return Err(Rejection::MalformedJson),
            Err(EnvelopeError::Invalid(error)) => {
                return Err(Rejection::InvalidPayload {
                    reason: error.to_string(),
                })
            }
        };
        let webhook_type = envelope
            .webhook_type
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .ok_or(Rejection::MissingField {
                field: "webhook_type",
            })?;
        let timestamp = envelope
            .timestamp
            .ok_or(Rejection::MissingField { field: "timestamp" })?;
        check_freshness(timestamp, now, tolerance_secs)?;
        if let Some(header) = self.delivery.headers.timestamp {
            let header_ts = header
                .trim()
                .parse::<i64>()
                .map_err(|_| Rejection::InvalidTimestampHeader)?;
            check_freshness(header_ts, now, tolerance_secs)?;
        }
        let subject = subject_of(envelope).ok_or(Rejection::MissingField {
            field: "session_id (or the entity or transaction id its webhook_type carries)",
        })?;
        let text =
            core::str::from_utf8(self.delivery.body).map_err(|_| Rejection::MalformedJson)?;
        let payload: &RawValue =
            serde_json::from_str(text).map_err(|_| Rejection::MalformedJson)?;
        let event_id = EventId::derive(
            &subject,
            webhook_type,
            timestamp,
            envelope.status.as_deref(),
        );
        // The body parsed, so the decision is valid JSON; one of an unexpected shape summarizes
        // to nothing and the payload still carries it whole.
        let decision = envelope
            .decision
            .and_then(|raw| serde_json::from_str::<Decision>(raw.get()).ok());
        let summary = decision.as_ref().map(|d| d.summary.clone());
        let status = envelope.status.as_deref().map(Status::of);
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
        let test = self.delivery.test_header || envelope.is_test();
        let status_update = StatusUpdate {
            event_id: String::from(event_id.as_str()),
            subject_kind: subject.kind.as_str().into(),
            subject_id: subject.id.clone().into_owned(),
            status_code: status.as_ref().map(|s| s.code.clone()),
            risk_level,
            time: timestamp,
            test,
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
            id: &event_id,
            subject: &subject,
            webhook_type,
            timestamp,
            envelope,
            payload,
            verified,
            test,
            received_at: now,
        })
        .map_err(|error| Rejection::InvalidPayload {
            reason: error.to_string(),
        })?;
        Ok(Admission {
            event_id,
            alias: envelope
                .event_id
                .as_deref()
                .filter(|id| !id.is_empty())
                .map(String::from),
            inbox: subject.inbox_name(),
            cloud_event,
            verified,
            webhook_type: webhook_type.into(),
            created_at: timestamp,
            risk_level,
            consumers,
            status_update,
        })
    }
}

fn check_freshness(timestamp: i64, now: i64, tolerance_secs: u64) -> Result<(), Rejection> {
    let skew = i128::from(now) - i128::from(timestamp);
    let tolerance = i128::from(tolerance_secs);
    if skew > tolerance {
        Err(Rejection::StaleTimestamp {
            age_secs: u64::try_from(skew).unwrap_or(u64::MAX),
        })
    } else if -skew > tolerance {
        Err(Rejection::FutureTimestamp {
            ahead_secs: u64::try_from(-skew).unwrap_or(u64::MAX),
        })
    } else {
        Ok(())
    }
}

fn rejection_of(error: VerifyError) -> Rejection {
    match error {
        VerifyError::MissingSignature => Rejection::MissingSignature,
        VerifyError::SimpleSignatureNotAllowed => Rejection::SimpleSignatureNotAllowed,
        VerifyError::SignatureMismatch => Rejection::InvalidSignature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mac::RustCrypto;
    use alloc::format;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NOW: i64 = 1_700_000_000;

    fn signed(body: &str) -> String {
        hex::encode(RustCrypto.tag(b"k", body.as_bytes()))
    }

    fn run(body: &str, signature: &str, x_timestamp: Option<&str>) -> Result<Admission, Rejection> {
        let delivery = Delivery {
            body: body.as_bytes(),
            headers: SignatureHeaders {
                signature: Some(signature),
                timestamp: x_timestamp,
                ..Default::default()
            },
            test_header: false,
        };
        let intake = Intake::new(delivery, false)?;
        let verified = intake.verify_with(
            &WebhookSecrets::parse("k").expect("secret"),
            &mut RustCrypto,
        )?;
        let origins = crate::config::parse_origins(
            r#"[{"name":"main","url":"https://main"},{"name":"fraud","url":"https://fraud","consumer":"fraud","risk_levels":["high"]}]"#,
        )
        .expect("origins");
        let rules = RiskRules::default();
        intake.admit(
            verified,
            NOW,
            &Policy {
                tolerance_secs: 600,
                risk_rules: &rules,
                origins: &origins,
            },
        )
    }

    #[test]
    fn admits_a_fresh_authentic_delivery() {
        let body = format!(
            r#"{{"webhook_type":"status.updated","session_id":"s1","status":"Approved","timestamp":{NOW},"event_id":"e1","vendor_data":"user-7","workflow_id":"wf","metadata":{{"test_webhook":true}}}}"#
        );
        let admission = run(&body, &signed(&body), None).expect("admitted");
        assert_eq!(admission.inbox, "session:s1");
        let update = &admission.status_update;
        assert_eq!(update.event_id, admission.event_id.as_str());
        assert_eq!(
            (
                update.subject_kind.as_str(),
                update.subject_id.as_str(),
                update.time,
                update.test
            ),
            ("session", "s1", NOW, true)
        );
        assert_eq!(update.status_code.as_deref(), Some("approved"));
        assert_eq!(update.channels(), ["admin", "user:user-7"]);
        assert_eq!(
            (update.session_id.as_deref(), update.workflow_id.as_deref()),
            (Some("s1"), Some("wf"))
        );
        assert_eq!(admission.alias.as_deref(), Some("e1"));
        let event: serde_json::Value =
            serde_json::from_str(admission.cloud_event.get()).expect("json");
        assert_eq!(event["id"], admission.event_id.as_str());
        assert_eq!(event["type"], "me.didit.status.updated");
        assert_eq!(event["subject"], "s1");
        assert_eq!(event["time"], "2023-11-14T22:13:20Z");
        assert_eq!(event["data"]["test"], true);
        assert_eq!(event["data"]["verification"]["covers"], "payload");
        assert_eq!(event["data"]["status_code"], "approved");
        assert_eq!(
            event["data"]["risk"],
            serde_json::json!({"level": "low", "signals": []})
        );
        assert_eq!(admission.consumers, ["default"]);
        let payload: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(event["data"]["payload"], payload);
    }

    #[test]
    fn risky_events_reach_the_consumers_that_want_them() {
        let body = format!(
            r#"{{"webhook_type":"status.updated","session_id":"s9","status":"Declined","timestamp":{NOW},
               "decision":{{"aml_screenings":[{{"node_id":"aml-1","status":"Declined","total_hits":4}}]}}}}"#
        );
        let admission = run(&body, &signed(&body), None).expect("admitted");
        assert_eq!(admission.risk_level, Level::High);
        assert_eq!(admission.consumers, ["default", "fraud"]);
        let event: serde_json::Value =
            serde_json::from_str(admission.cloud_event.get()).expect("json");
        assert_eq!(event["data"]["payload_version"], "v3");
        assert_eq!(event["data"]["decision"]["features"][0]["feature"], "aml");
        assert_eq!(
            event["data"]["risk"]["signals"][1],
            serde_json::json!({"code": "aml_declined", "source": "aml:aml-1"})
        );
    }

    #[test]
    fn authenticity_is_judged_before_content() {
        assert_eq!(
            run("not json", &"0".repeat(64), None).err(),
            Some(Rejection::InvalidSignature)
        );
        assert_eq!(
            run("not json", &signed("not json"), None).err(),
            Some(Rejection::MalformedJson)
        );
        let array = "[1]";
        assert!(matches!(
            run(array, &signed(array), None),
            Err(Rejection::InvalidPayload { .. })
        ));
    }

    #[test]
    fn freshness_is_bounded_both_ways_on_body_and_header() {
        let at = |ts: i64| {
            format!(r#"{{"webhook_type":"status.updated","session_id":"s1","timestamp":{ts}}}"#)
        };
        for (ts, ok) in [
            (NOW - 600, true),
            (NOW + 600, true),
            (NOW - 601, false),
            (NOW + 601, false),
        ] {
            let body = at(ts);
            assert_eq!(run(&body, &signed(&body), None).is_ok(), ok, "ts {ts}");
        }
        let body = at(NOW);
        assert_eq!(
            run(&body, &signed(&body), Some("1")).err(),
            Some(Rejection::StaleTimestamp {
                age_secs: NOW as u64 - 1
            })
        );
        assert_eq!(
            run(&body, &signed(&body), Some("abc")).err(),
            Some(Rejection::InvalidTimestampHeader)
        );
    }

    #[test]
    fn missing_fields_are_named() {
        for (body, field) in [
            (
                format!(r#"{{"session_id":"s1","timestamp":{NOW}}}"#),
                "webhook_type",
            ),
            (
                r#"{"session_id":"s1","webhook_type":"status.updated"}"#.into(),
                "timestamp",
            ),
        ] {
            assert_eq!(
                run(&body, &signed(&body), None).err(),
                Some(Rejection::MissingField { field })
            );
        }
        let body = format!(r#"{{"webhook_type":"status.updated","timestamp":{NOW}}}"#);
        assert!(matches!(
            run(&body, &signed(&body), None),
            Err(Rejection::MissingField { .. })
        ));
    }
}
