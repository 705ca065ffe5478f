//! The `decision` object of a session payload: which features a session with this status ran,
//! which of them fail, and how each payload version writes them.

use serde_json::{Map, Value};

use super::features::{
    abandoned_features, approved_features, business_features, failing_feature, Feature, Outcome,
};
use super::payload::{Failing, PayloadSpec, PayloadVersion};
use crate::error::{Failure, Result};

/// A failure that was asked for (`--fail`), which a payload version must be able to carry.
struct Chosen(bool);

/// The decision object for a session, in the chosen payload version; `None` for a status that
/// has none.
pub(super) fn decision(spec: &PayloadSpec, status: &str) -> Result<Option<Value>> {
    let Some(ran) = features_run(spec, status) else {
        return Ok(None);
    };
    let features = with_failures(ran, spec, status);
    write(features, spec.version).map(Some)
}

/// What a session with `status` ran, all passed; `None` when it has no decision (it never got
/// that far, and no failure was asked for).
fn features_run(spec: &PayloadSpec, status: &str) -> Option<Vec<Feature>> {
    let features = match status {
        "Approved" | "Declined" | "In Review" => approved_features(),
        "Abandoned" => abandoned_features(),
        _ if spec.failing.is_empty() => return None,
        _ => Vec::new(),
    };
    Some(if spec.kyb {
        business_features()
    } else {
        features
    })
}

/// The features that fail: those asked for, else the one a KYC session fails on when it is
/// declined, or waits on when it is in review (it must fail or wait on something).
fn failures(spec: &PayloadSpec, status: &str) -> Vec<Failing> {
    let mut failing = spec.failing.clone();
    if failing.is_empty() && !spec.kyb {
        match status {
            "Declined" => failing.push(Failing::Liveness),
            "In Review" => failing.push(Failing::Aml),
            _ => {}
        }
    }
    failing
}

/// `ran`, with each failing feature's result in place of its passed one (or added after them),
/// each marked with whether its failure was asked for.
fn with_failures(ran: Vec<Feature>, spec: &PayloadSpec, status: &str) -> Vec<(Feature, Chosen)> {
    let outcome = if status == "In Review" {
        Outcome::InReview
    } else {
        Outcome::Declined
    };
    let mut features: Vec<(Feature, Chosen)> =
        ran.into_iter().map(|f| (f, Chosen(false))).collect();
    for failing in failures(spec, status) {
        let feature = failing_feature(failing, outcome);
        let chosen = Chosen(spec.failing.contains(&failing));
        match features
            .iter_mut()
            .find(|(f, _)| f.slot.v3 == feature.slot.v3)
        {
            Some(existing) => *existing = (feature, chosen),
            None => features.push((feature, chosen)),
        }
    }
    features
}

/// The decision as `version` writes it. v3 lists each feature's results under a plural key; v2
/// and v1 hold one result per key, without node ids. v1 leaves out the features it has no key
/// for, but refuses one whose failure was asked for rather than silently dropping it.
fn write(features: Vec<(Feature, Chosen)>, version: PayloadVersion) -> Result<Value> {
    let mut decision = Map::new();
    for (feature, Chosen(chosen)) in features {
        let slot = feature.slot;
        match version {
            PayloadVersion::V3 => {
                let list = decision
                    .entry(slot.v3)
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(items) = list {
                    items.push(feature.item);
                }
            }
            PayloadVersion::V2 | PayloadVersion::V1 => {
                let key = match (version, slot.v1) {
                    (PayloadVersion::V2, _) => slot.v2,
                    (_, Some(v1)) => v1,
                    (_, None) if chosen => {
                        return Err(Failure::usage(format!(
                            "payload version v1 has no `{}` (v1 knows kyc, face, aml, location)",
                            slot.v2
                        )))
                    }
                    (_, None) => continue,
                };
                let mut item = feature.item;
                if let Value::Object(fields) = &mut item {
                    fields.remove("node_id");
                }
                decision.insert(key.to_owned(), item);
            }
        }
    }
    Ok(Value::Object(decision))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const EVENTS: &str = include_str!("../../../tests/fixtures/events.json");

    #[test]
    fn outcomes_shape_the_decision_as_the_fixtures_do() {
        let fixtures: Value = serde_json::from_str(EVENTS).expect("events.json");
        let fixture = |name: &str| {
            fixtures["cases"]
                .as_array()
                .expect("cases")
                .iter()
                .find(|c| c["name"] == name)
                .map(|c| c["payload"].clone())
                .expect("fixture")
        };
        let spec = |status: &str, failing: Vec<Failing>, version| PayloadSpec {
            webhook_type: "status.updated".into(),
            status: Some(status.into()),
            previous_status: None,
            version,
            failing,
            kyb: false,
            test: false,
            session_id: None,
            vendor_data: None,
            business_id: None,
            transaction_id: None,
            event_id: None,
            timestamp: None,
            set: vec![],
        };
        // Declined with a presentation attack, as in the fixture: the same warning tags.
        let declined = spec(
            "declined",
            vec![Failing::Liveness, Failing::Aml],
            PayloadVersion::V3,
        )
        .build(1)
        .expect("builds");
        let expected = fixture("v3_declined_many_failures");
        assert_eq!(declined["status"], "Declined");
        assert_eq!(
            declined["decision"]["liveness_checks"][0]["warnings"][0]["risk"],
            expected["decision"]["liveness_checks"][0]["warnings"][0]["risk"]
        );
        assert_eq!(declined["decision"]["aml_screenings"][0]["total_hits"], 3);
        // v2 uses singular keys without node ids; v1 Didit's first names.
        let v2 = spec("Declined", vec![Failing::Document], PayloadVersion::V2)
            .build(1)
            .expect("v2");
        assert_eq!(
            v2["decision"]["id_verification"]["warnings"][0]["risk"],
            "DOCUMENT_EXPIRED"
        );
        assert!(v2["decision"]["id_verification"].get("node_id").is_none());
        let v1 = spec("approved", vec![], PayloadVersion::V1)
            .build(1)
            .expect("v1");
        let keys: Vec<&String> = v1["decision"]
            .as_object()
            .expect("decision")
            .keys()
            .collect();
        assert_eq!(keys, ["face", "kyc"], "v1 has no liveness: left out");
        let v1 = spec("declined", vec![Failing::FaceMatch], PayloadVersion::V1)
            .build(1)
            .expect("v1");
        assert_eq!(v1["decision"]["face"]["status"], "Declined");
        let v1 = spec("declined", vec![Failing::Liveness], PayloadVersion::V1);
        assert!(
            v1.build(1).is_err(),
            "a chosen failure v1 cannot carry is refused, not dropped"
        );
        // In review waits on AML by default; statuses are spelled as Didit spells them.
        let review = spec("in-review", vec![], PayloadVersion::V3)
            .build(1)
            .expect("review");
        assert_eq!(review["status"], "In Review");
        assert_eq!(
            review["decision"]["aml_screenings"][0]["status"],
            "In Review"
        );
        let resubmitted = spec("resubmitted", vec![], PayloadVersion::V3)
            .build(1)
            .expect("ok");
        assert!(resubmitted.get("decision").is_none());
        assert_eq!(
            resubmitted["resubmit_info"]["nodes_to_resubmit"],
            json!(["id-1"])
        );
        let in_progress = spec("In Progress", vec![], PayloadVersion::V3)
            .build(1)
            .expect("ok");
        assert!(in_progress.get("decision").is_none());
    }
}
