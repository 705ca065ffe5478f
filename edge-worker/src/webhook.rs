//! `POST /webhooks/didit`: Didit's front door. Limits, then the core's intake, then the
//! subject's inbox; the answer waits until the inbox has stored the event.

use didit_edge_core::inbox::Source;
use didit_edge_core::intake::{Incoming, Intake};
use didit_edge_core::receipt::Receipt;
use didit_edge_core::rejection::Rejection;
use didit_edge_core::stream::StatusUpdate;
use didit_edge_core::verify::SignatureHeaders;
use worker::{console_error, Env, Request};

use crate::claim::{Claim, Content};
use crate::clock::now_secs;
use crate::http::{header, read_json_body, EdgeResult};
use crate::{settings, webcrypto};

/// Receives one delivery: its receipt, and the status to publish when it is news someone
/// may be watching.
pub(crate) async fn receive(
    request: &mut Request,
    env: &Env,
) -> EdgeResult<(Receipt, Option<StatusUpdate>)> {
    let config = settings::config(env);
    let intake_settings = config.intake_or_refusal()?;
    intake_settings.admits_source(header(request, "cf-connecting-ip").as_deref())?;
    let body = read_json_body(request, intake_settings.max_body_bytes).await?;
    let (signature, signature_v2, signature_simple, timestamp) = (
        header(request, "x-signature"),
        header(request, "x-signature-v2"),
        header(request, "x-signature-simple"),
        header(request, "x-timestamp"),
    );
    let delivery = Incoming {
        body: &body,
        headers: SignatureHeaders {
            signature: signature.as_deref(),
            signature_v2: signature_v2.as_deref(),
            signature_simple: signature_simple.as_deref(),
            timestamp: timestamp.as_deref(),
        },
        test_header: header(request, "x-didit-test-webhook")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
    };
    let intake = Intake::new(delivery, intake_settings.allow_simple_signature)?;
    let verified = webcrypto::answer(intake.challenges(), &intake_settings.webhook_secrets)
        .await
        .map_err(|_| Rejection::InvalidSignature)?;
    let now = now_secs();
    let identified = intake.identify(verified, now, intake_settings.timestamp_tolerance_secs)?;
    // Classifying needs the delivery settings; while they are broken the event is stored as it
    // came and the inbox classifies it once they are fixed.
    let classified = match settings::delivery(&config) {
        Some(delivery) => Some(identified.classify(&delivery.classify_policy())?),
        None => None,
    };
    let content = match &classified {
        Some(classified) => Content::Classified {
            risk_level: classified.risk_level,
            consumers: classified.consumers.clone(),
            cloud_event: &classified.cloud_event,
        },
        None => Content::Unclassified {
            verified,
            test: identified.test,
            received_at: now,
            body: identified.body,
        },
    };
    let inbox = identified.inbox();
    let claim = Claim::new(&identified, &inbox, content, Source::Webhook);
    let receipt = claim.send(env).await.map_err(|error| {
        // The inbox's name holds the subject id (vendor_data for users): never logged.
        console_error!(
            "the {} inbox could not store {}: {error}",
            identified.subject.kind.as_str(),
            identified.event_id
        );
        Rejection::StorageUnavailable
    })?;
    let update = classified
        .filter(|_| receipt.publishes_status(config.stream.on().is_some()))
        .map(|classified| classified.status_update);
    Ok((receipt, update))
}
