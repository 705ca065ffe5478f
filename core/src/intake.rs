//! One delivery from Didit, from bytes to a named event, then to a classified one.
//!
//! The order of checks is deliberate: authenticity first, so an unauthenticated sender learns
//! nothing about what the edge would accept; then the fields the edge needs; then freshness,
//! judged on the body's `timestamp` (which every signature covers) and on `X-Timestamp` when
//! present, both bounded in both directions.
//!
//! Naming an event ([`Intake::identify`]) needs no configuration but the secrets and the
//! freshness window, so an authentic delivery can be stored even while the rest of the
//! configuration is broken. Classifying it ([`Identified::classify`]: risk, consumers, the
//! CloudEvent) needs the risk rules and origins; when they are broken it waits in the inbox,
//! which classifies it later from the stored body ([`Identified::recall`]).
//!
//! ```text
//! let intake = Intake::new(incoming, allow_simple)?;       // which messages to authenticate
//! let verified = intake.verify_with(&secrets, &mut mac)?;  // or answer intake.challenges() async
//! let identified = intake.identify(verified, now, tolerance_secs)?;
//! let classified = identified.classify(&policy)?;          // or later, from the stored body
//! ```

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde_json::value::RawValue;

use crate::cloudevent::{self, EventParts};
use crate::envelope::{Envelope, EnvelopeError};
use crate::identity::{subject_of, ContentDigest, EventId, Subject};
use crate::mac::HmacSha256;
use crate::normalize::{Decision, Status};
use crate::origin::Origin;
use crate::rejection::Rejection;
use crate::risk::{Level, RiskRules};
use crate::route::consumers_for;
use crate::secret::WebhookSecrets;
use crate::stream::StatusUpdate;
use crate::verify::{self, ChallengeTiers, Provenance, SignatureHeaders, Verified, VerifyError};

/// A webhook request as received: the body and the headers that sign it.
#[derive(Clone, Copy, Debug)]
pub struct Incoming<'a> {
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
    incoming: Incoming<'a>,
    envelope: Result<Envelope<'a>, EnvelopeError>,
    challenges: ChallengeTiers<'a>,
}

/// What classification is judged against.
#[derive(Clone, Copy, Debug)]
pub struct ClassifyPolicy<'c> {
    /// Rules for the risk level.
    pub risk_rules: &'c RiskRules,
    /// Where events can go, for choosing consumers.
    pub origins: &'c [Origin],
}

/// An authentic, fresh, well-formed delivery with its stable name; nothing in it depends on
/// configuration beyond the secrets and the freshness window.
#[derive(Debug)]
pub struct Identified<'a> {
    /// The stable event id (see [`crate::identity`]).
    pub event_id: EventId,
    /// The id releases before the content digest gave the same event
    /// ([`EventId::derive_v1`]), so their stored events still catch its retries.
    pub legacy_id: EventId,
    /// Didit's own `event_id`, remembered as an alias so a resend with a fresh timestamp but
    /// the same `event_id` (and the same type and status) is still recognised.
    pub alias: Option<String>,
    /// Who the event is about: its inbox.
    pub subject: Subject<'a>,
    /// Didit's `webhook_type`.
    pub webhook_type: Cow<'a, str>,
    /// Didit's `status`, when the event has one.
    pub status: Option<Cow<'a, str>>,
    /// When Didit created the event (its `timestamp`, Unix seconds): the delivery order.
    pub created_at: i64,
    /// The body as received, one JSON value.
    pub body: &'a RawValue,
    /// How it was authenticated.
    pub provenance: Provenance,
    /// A console test delivery (the header or the body says so).
    pub test: bool,
    /// When the edge accepted it (Unix seconds).
    pub received_at: i64,
    envelope: Envelope<'a>,
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

impl<'a> Intake<'a> {
    /// Reads the delivery and lists what must be authenticated.
    pub fn new(incoming: Incoming<'a>, allow_simple: bool) -> Result<Self, Rejection> {
        let envelope = Envelope::parse(incoming.body);
        let challenges = verify::challenges(
            incoming.body,
            &incoming.headers,
            envelope.as_ref().ok(),
            allow_simple,
        )
        .map_err(rejection_of)?;
        Ok(Self {
            incoming,
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

    /// Checks the fields and freshness of an authenticated delivery and names its event.
    /// `now` is Unix seconds.
    pub fn identify(
        self,
        verified: Verified,
        now: i64,
        tolerance_secs: u64,
    ) -> Result<Identified<'a>, Rejection> {
        let envelope = match self.envelope {
            Ok(envelope) => envelope,
            Err(EnvelopeError::Malformed(_)) => return Err(Rejection::MalformedJson),
            Err(EnvelopeError::Invalid(error)) => {
                return Err(Rejection::InvalidPayload {
                    reason: error.to_string(),
                })
            }
        };
        let timestamp = envelope
            .timestamp
            .ok_or(Rejection::MissingField { field: "timestamp" })?;
        check_freshness(timestamp, now, tolerance_secs)?;
        if let Some(header) = self.incoming.headers.timestamp {
            let header_ts = header
                .trim()
                .parse::<i64>()
                .map_err(|_| Rejection::InvalidTimestampHeader)?;
            check_freshness(header_ts, now, tolerance_secs)?;
        }
        let test = self.incoming.test_header;
        Identified::name(
            self.incoming.body,
            envelope,
            Provenance::Signed(verified),
            test,
            now,
        )
    }
}

impl<'a> Identified<'a> {
    /// Names a stored event again from its body and the facts kept with it, for classifying
    /// it later; freshness was judged when it arrived.
    pub fn recall(
        body: &'a [u8],
        verified: Verified,
        test_header: bool,
        received_at: i64,
    ) -> Result<Self, Rejection> {
        let envelope = Envelope::parse(body).map_err(|_| Rejection::MalformedJson)?;
        Self::name(
            body,
            envelope,
            Provenance::Signed(verified),
            test_header,
            received_at,
        )
    }

    /// Names an event that reconciliation built from Didit's API ([`crate::reconcile`]): the
    /// body is Didit's webhook shape, written by the edge, so no freshness or signature
    /// applies; the connection and the API key vouched for what it holds.
    pub fn from_api(body: &'a [u8], received_at: i64) -> Result<Self, Rejection> {
        let envelope = Envelope::parse(body).map_err(|_| Rejection::MalformedJson)?;
        Self::name(body, envelope, Provenance::Api, false, received_at)
    }

    fn name(
        body: &'a [u8],
        envelope: Envelope<'a>,
        provenance: Provenance,
        test_header: bool,
        received_at: i64,
    ) -> Result<Self, Rejection> {
        let webhook_type = envelope
            .webhook_type
            .clone()
            .filter(|t| !t.trim().is_empty())
            .ok_or(Rejection::MissingField {
                field: "webhook_type",
            })?;
        let created_at = envelope
            .timestamp
            .ok_or(Rejection::MissingField { field: "timestamp" })?;
        let subject = subject_of(&envelope).ok_or(Rejection::MissingField {
            field: "session_id (or the entity or transaction id its webhook_type carries)",
        })?;
        let text = core::str::from_utf8(body).map_err(|_| Rejection::MalformedJson)?;
        let body: &RawValue = serde_json::from_str(text).map_err(|_| Rejection::MalformedJson)?;
        let status = envelope.status.clone();
        // An event from the API has no body Didit wrote to digest; it is matched to the
        // webhook of the same transition by type and status instead (see `crate::inbox`).
        let content = matches!(provenance, Provenance::Signed(v) if v.header.covers_payload())
            .then(|| ContentDigest::of_body(body.get().as_bytes()));
        let event_id = EventId::derive(
            &subject,
            &webhook_type,
            created_at,
            status.as_deref(),
            content.as_ref(),
        );
        let legacy_id = EventId::derive_v1(&subject, &webhook_type, created_at, status.as_deref());
        let alias = envelope
            .event_id
            .as_deref()
            .filter(|id| !id.is_empty())
            .map(String::from);
        let test = test_header || envelope.is_test();
        Ok(Self {
            event_id,
            legacy_id,
            alias,
            subject,
            webhook_type,
            status,
            created_at,
            body,
            provenance,
            test,
            received_at,
            envelope,
        })
    }

    /// The inbox (Durable Object) that owns the subject.
    pub fn inbox(&self) -> String {
        self.subject.inbox_name()
    }

    /// Assesses the risk, picks the consumers and shapes the CloudEvent.
    pub fn classify(&self, policy: &ClassifyPolicy<'_>) -> Result<Classified, Rejection> {
        let envelope = &self.envelope;
        let webhook_type = self.webhook_type.as_ref();
        // The body parsed, so the decision is valid JSON; one of an unexpected shape summarizes
        // to nothing and the payload still carries it whole.
        let decision = envelope
            .decision
            .and_then(|raw| serde_json::from_str::<Decision>(raw.get()).ok());
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

    /// What one delivery comes to: its name and its classification.
    struct Admission<'a> {
        identified: Identified<'a>,
        classified: Classified,
    }

    fn run<'a>(
        body: &'a str,
        signature: &'a str,
        x_timestamp: Option<&'a str>,
    ) -> Result<Admission<'a>, Rejection> {
        let incoming = Incoming {
            body: body.as_bytes(),
            headers: SignatureHeaders {
                signature: Some(signature),
                timestamp: x_timestamp,
                ..Default::default()
            },
            test_header: false,
        };
        let intake = Intake::new(incoming, false)?;
        let verified = intake.verify_with(
            &WebhookSecrets::parse("k").expect("secret"),
            &mut RustCrypto,
        )?;
        let origins = crate::origin::parse_origins(
            r#"[{"name":"main","url":"https://main"},{"name":"fraud","url":"https://fraud","consumer":"fraud","risk_levels":["high"]}]"#,
        )
        .expect("origins");
        let rules = RiskRules::default();
        let identified = intake.identify(verified, NOW, 600)?;
        let classified = identified.classify(&ClassifyPolicy {
            risk_rules: &rules,
            origins: &origins,
        })?;
        Ok(Admission {
            identified,
            classified,
        })
    }

    #[test]
    fn admits_a_fresh_authentic_delivery() {
        let body = format!(
            r#"{{"webhook_type":"status.updated","session_id":"s1","status":"Approved","timestamp":{NOW},"event_id":"e1","vendor_data":"user-7","workflow_id":"wf","metadata":{{"test_webhook":true}}}}"#
        );
        let tag = signed(&body);
        let admission = run(&body, &tag, None).expect("admitted");
        assert_eq!(admission.identified.inbox(), "session:s1");
        let update = &admission.classified.status_update;
        assert_eq!(update.event_id, admission.identified.event_id.as_str());
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
        assert_eq!(admission.identified.alias.as_deref(), Some("e1"));
        let event: serde_json::Value =
            serde_json::from_str(admission.classified.cloud_event.get()).expect("json");
        assert_eq!(event["id"], admission.identified.event_id.as_str());
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
        assert_eq!(admission.classified.consumers, ["default"]);
        let payload: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(event["data"]["payload"], payload);
    }

    #[test]
    fn risky_events_reach_the_consumers_that_want_them() {
        let body = format!(
            r#"{{"webhook_type":"status.updated","session_id":"s9","status":"Declined","timestamp":{NOW},
               "decision":{{"aml_screenings":[{{"node_id":"aml-1","status":"Declined","total_hits":4}}]}}}}"#
        );
        let tag = signed(&body);
        let admission = run(&body, &tag, None).expect("admitted");
        assert_eq!(admission.classified.risk_level, Level::High);
        assert_eq!(admission.classified.consumers, ["default", "fraud"]);
        let event: serde_json::Value =
            serde_json::from_str(admission.classified.cloud_event.get()).expect("json");
        assert_eq!(event["data"]["payload_version"], "v3");
        assert_eq!(event["data"]["decision"]["features"][0]["feature"], "aml");
        assert_eq!(
            event["data"]["risk"]["signals"][1],
            serde_json::json!({"code": "aml_declined", "source": "aml:aml-1"})
        );
    }

    #[test]
    fn a_stored_event_classified_later_is_the_same_event() {
        let body = format!(
            r#"{{"webhook_type":"status.updated","session_id":"s1","status":"Declined","timestamp":{NOW},"event_id":"e1","vendor_data":"u\"7"}}"#
        );
        let tag = signed(&body);
        let now = run(&body, &tag, None).expect("admitted");
        let identified = &now.identified;
        let Provenance::Signed(verified) = identified.provenance else {
            panic!("a webhook is signed");
        };
        let later = Identified::recall(
            body.as_bytes(),
            verified,
            identified.test,
            identified.received_at,
        )
        .expect("recalled");
        assert_eq!(later.event_id, identified.event_id);
        assert_eq!(later.legacy_id, identified.legacy_id);
        assert_eq!(later.alias, identified.alias);
        let origins = crate::origin::parse_origins(r#"[{"name":"main","url":"https://main"}]"#)
            .expect("origins");
        let rules = RiskRules::default();
        let classified = later
            .classify(&ClassifyPolicy {
                risk_rules: &rules,
                origins: &origins,
            })
            .expect("classified");
        assert_eq!(
            classified.cloud_event.get(),
            now.classified.cloud_event.get()
        );
        assert_eq!(classified.status_update, now.classified.status_update);
    }

    #[test]
    fn only_what_the_signature_covers_names_the_event() {
        let body = format!(
            r#"{{"webhook_type":"status.updated","session_id":"s1","status":"Approved","timestamp":{NOW},"event_id":"e1"}}"#
        );
        let identify = |body: &str, header| {
            let verified = Verified {
                header,
                form: verify::SignedMessage::RawBody,
                secret_index: 0,
            };
            Identified::recall(body.as_bytes(), verified, false, NOW)
                .expect("named")
                .event_id
        };
        let edited = body.replace(r#""event_id":"e1""#, r#""event_id":"e1","decision":{}"#);
        use crate::verify::SignatureHeader::{Raw, Simple};
        assert_ne!(identify(&body, Raw), identify(&edited, Raw));
        // Only the four simple fields are authenticated: an edited decision is the same event.
        assert_eq!(identify(&body, Simple), identify(&edited, Simple));
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
    fn an_authentic_body_that_is_not_utf8_is_malformed_json() {
        // The envelope skips the fields it does not read without checking their UTF-8 (the
        // envelope fuzz target found it), so the intake must refuse such a body itself.
        let body = format!(
            r#"{{"webhook_type":"status.updated","session_id":"s1","timestamp":{NOW},"note":"A"#
        )
        .into_bytes()
        .into_iter()
        .chain(*b"\xffB\"}")
        .collect::<Vec<u8>>();
        assert!(
            Envelope::parse(&body).is_ok(),
            "the envelope alone reads it"
        );
        let tag = hex::encode(RustCrypto.tag(b"k", &body));
        let incoming = Incoming {
            body: &body,
            headers: SignatureHeaders {
                signature: Some(&tag),
                ..Default::default()
            },
            test_header: false,
        };
        let intake = Intake::new(incoming, false).expect("a signature header is present");
        let verified = intake
            .verify_with(
                &WebhookSecrets::parse("k").expect("secret"),
                &mut RustCrypto,
            )
            .expect("authentic");
        assert_eq!(
            intake.identify(verified, NOW, 600).err(),
            Some(Rejection::MalformedJson)
        );
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
