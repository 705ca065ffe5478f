//! The inboxes, as a run's steps reach them: what one holds of a transition (`/knows`), and
//! an event reconciliation wrote, claimed and published like a webhook's (`inject`); each
//! within the step's timeout.

use didit_edge_core::inbox::{Knowledge, Source};
use didit_edge_core::intake::Identified;
use didit_edge_core::receipt::Receipt;
use didit_edge_core::reconcile::{InjectFailure, Injected, STEP_TIMEOUT_MS};
use didit_edge_core::rejection::Rejection;
use serde::Serialize;
use worker::{console_error, console_log, Env};

use crate::claim::{Claim, Content};
use crate::clock::{now_ms, within};
use crate::inbox::KnowsRequest;
use crate::objects::{self, InboxCall};
use crate::{settings, stream};

/// What `inbox` holds of the transition to `status`, or `Err` when it did not answer in time.
pub(super) async fn knows(
    env: &Env,
    inbox: &str,
    webhook_type: &str,
    status: String,
) -> Result<Knowledge, ()> {
    let ask = KnowsRequest {
        webhook_type: webhook_type.into(),
        status,
    };
    let asked = objects::ask::<Knowledge>(
        env,
        InboxCall::BINDING,
        inbox,
        InboxCall::Knows.path(),
        &ask,
    );
    within(STEP_TIMEOUT_MS, asked)
        .await
        .and_then(Result::ok)
        .ok_or(())
}

/// [`claim_and_publish`] within the step's timeout (an inbox that does not answer in time is
/// unreachable).
pub(super) async fn inject(env: &Env, body: &str) -> Result<Injected, InjectFailure> {
    within(STEP_TIMEOUT_MS, claim_and_publish(env, body))
        .await
        .unwrap_or(Err(InjectFailure::InboxUnreachable))
}

/// The `reconciled` log line: one per injected event, without identity data.
#[derive(Serialize)]
struct InjectedLine<'a> {
    event: &'static str,
    event_id: &'a str,
    subject_kind: &'static str,
    status_code: Option<&'a str>,
    receipt: &'static str,
}

/// Names, classifies and claims an event reconciliation wrote, and publishes it like a
/// webhook's. Logged without identity data.
async fn claim_and_publish(env: &Env, body: &str) -> Result<Injected, InjectFailure> {
    let config = settings::config(env);
    let delivery = settings::delivery(&config).ok_or(InjectFailure::SettingsBroken)?;
    let now = now_ms().div_euclid(1000);
    let refused = |rejection: Rejection| {
        console_error!("reconciliation wrote an event the edge refuses: {rejection}");
        InjectFailure::Refused
    };
    let identified = Identified::from_api(body.as_bytes(), now).map_err(refused)?;
    let classified = identified
        .classify(&delivery.classify_policy())
        .map_err(refused)?;
    let inbox = identified.inbox();
    let content = Content::Classified {
        risk_level: classified.risk_level,
        consumers: classified.consumers.clone(),
        cloud_event: &classified.cloud_event,
    };
    let claim = Claim::new(&identified, &inbox, content, Source::Api);
    let receipt = claim.send(env).await.map_err(|error| {
        console_error!(
            "the {} inbox could not store reconciled {}: {error}",
            identified.subject.kind.as_str(),
            identified.event_id
        );
        InjectFailure::InboxUnreachable
    })?;
    let (injected, receipt_name) = match &receipt {
        Receipt::Accepted { .. } => (Injected::Accepted, "accepted"),
        Receipt::Duplicate { .. } => (Injected::Duplicate, "duplicate"),
        Receipt::Erased => (Injected::Erased, "erased"),
    };
    let line = InjectedLine {
        event: "reconciled",
        event_id: identified.event_id.as_str(),
        subject_kind: identified.subject.kind.as_str(),
        status_code: classified.status_update.status_code.as_deref(),
        receipt: receipt_name,
    };
    if let Ok(line) = serde_json::to_string(&line) {
        console_log!("{line}");
    }
    if receipt.publishes_status(config.stream.on().is_some()) {
        stream::publish(env, &classified.status_update).await;
    }
    Ok(injected)
}
