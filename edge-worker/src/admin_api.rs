//! The admin API (`/admin/…`: a Bearer token, `ADMIN_TOKEN` or `ADMIN_READ_TOKEN`, or a
//! Cloudflare Access sign-in): who is signed in, origins and their health, the dead letters of
//! every subject, listed and replayed, the erasure of one subject's data, and the lookup of
//! what happened to a subject's events.

use std::rc::Rc;

use didit_edge_core::admin::{self, AdminSession, Credential, Provenance, Via};
use didit_edge_core::admin::{
    lookup_answer, lookup_request, subject_of_inbox, BulkReplay, DeadLetterKey, DeadLetterQuery,
    ErasureReport, LookupAsk, LookupTarget, OriginView, OriginsView, Replayed,
    MAX_ERASURE_BODY_BYTES, MAX_LOOKUP_BODY_BYTES, SUBJECTS_PER_REPLAY,
};
use didit_edge_core::config::{Config, ReconcileConfig};
use didit_edge_core::didit_view::{
    self, answer_body, parse_destinations, select_destinations, ChosenBy, DayWindow, Destination,
    DestinationsView, SessionScan, DESTINATIONS_PATH, MAX_DELIVERIES_PAGE_BYTES,
    MAX_DESTINATIONS_BYTES, REQUEST_TIMEOUT_MS,
};
use didit_edge_core::endpoint::Endpoint;
use didit_edge_core::identity::Subject;
use didit_edge_core::rejection::Rejection;
use didit_edge_core::stream_token;
use didit_edge_core::time::UnixSecs;
use serde::Serialize;
use worker::{Env, Request, Response, Result};

use crate::dead_letters;
use crate::fields::{InboxErasure, LookupCall, Replays};
use crate::http::{self, header, ok_json, EdgeError, EdgeResult};
use crate::inbox::ReplayRequest;
use crate::objects::{self, InboxCall};
use crate::{settings, stream};

/// The configuration and the caller, once the request has shown a credential whose role may
/// call `endpoint` (`didit_edge_core::admin::needs`, `permit`).
async fn authorized(
    request: &Request,
    env: &Env,
    endpoint: &Endpoint<'_>,
) -> EdgeResult<(Rc<Config>, AdminSession)> {
    let config = settings::config(env);
    let auth = config.required(
        &config.admin,
        Rejection::Unauthorized {
            reason: "the admin API is off: set ADMIN_TOKEN, ADMIN_READ_TOKEN or ACCESS_TEAM_DOMAIN",
        },
    )?;
    let authorization = header(request, "authorization");
    let assertion = header(request, "cf-access-jwt-assertion");
    let session = match admin::credential(authorization.as_deref(), assertion.as_deref())? {
        Credential::Bearer(token) => AdminSession {
            role: admin::bearer_role(token, auth)?,
            via: Via::Token,
            identity: None,
        },
        Credential::Access(text) => {
            let access = auth.access.as_ref().ok_or(Rejection::Unauthorized {
                reason: "Cloudflare Access sign-in is not set up here (ACCESS_TEAM_DOMAIN)",
            })?;
            let identity = crate::access::identity(text, access).await?;
            AdminSession {
                role: access.role_of(&identity).map_err(Rejection::Access)?,
                via: Via::Access,
                identity: Some(identity.name),
            }
        }
    };
    let site = header(request, "sec-fetch-site");
    let provenance = Provenance {
        sec_fetch_site: site.as_deref(),
        console_header: header(request, admin::CONSOLE_HEADER).is_some(),
    };
    admin::permit(
        session.role,
        session.via,
        admin::needs(endpoint),
        provenance,
    )?;
    Ok((config.clone(), session))
}

/// Answers an admin endpoint for a caller allowed to call it.
pub(crate) async fn serve(
    endpoint: Endpoint<'_>,
    request: &mut Request,
    env: &Env,
) -> EdgeResult<Response> {
    let (config, session) = authorized(request, env, &endpoint).await?;
    match endpoint {
        Endpoint::AdminOrigins => origins(&config, env).await,
        Endpoint::Reconciliation => reconciliation(&config, env).await,
        Endpoint::AdminMetrics => metrics(env).await,
        Endpoint::DeadLetters => list_dead_letters(request, env).await,
        Endpoint::ReplayDeadLetter { id } => replay_one(env, id).await,
        Endpoint::ReplayDeadLetters => replay_all(request, env).await,
        Endpoint::Erase => erase_subject(request, env).await,
        Endpoint::Lookup => lookup(request, env).await,
        Endpoint::DiditDestinations => didit_destinations(&config, request).await,
        Endpoint::DiditDeliveries => didit_deliveries(&config, request, env).await,
        Endpoint::AdminSession => answer(&session),
        Endpoint::ConsoleStreamToken => stream_token(&config).await,
        _ => Err(Rejection::NotFound.into()),
    }
}

/// `POST /admin/stream-token`: an admin-scope stream token for the console's live feed, signed
/// here so the console never holds `STREAM_TOKEN_SECRET`; it opens one connection.
async fn stream_token(config: &Config) -> EdgeResult<Response> {
    let stream = config.required(&config.stream, Rejection::StreamOff)?;
    let jti = crate::access::random_id().map_err(|error| EdgeError::Unavailable {
        what: "random token id",
        error: worker::Error::from(error),
    })?;
    let now = crate::clock::now_secs();
    let (signed, expires_at) =
        stream_token::console_token(&stream.audience, now, stream.max_lifetime_secs, &jti);
    let tag = crate::webcrypto::tag(stream.secret.key(), signed.as_bytes()).await;
    // A token is base64url and dots, and the time a number: nothing to escape.
    ok_json(format!(
        "{{\"token\":\"{}\",\"expires_at\":{}}}",
        stream_token::finish(&signed, &tag),
        expires_at
    ))
}

fn query(request: &Request) -> std::result::Result<DeadLetterQuery, Rejection> {
    DeadLetterQuery::parse(http::query(request).as_deref())
}

/// `GET /admin/origins`: every origin with its consumer, failover priority and breaker state.
/// URLs are left out: they may carry credentials.
async fn origins(config: &Config, env: &Env) -> EdgeResult<Response> {
    let delivery = config.delivery_or_refusal()?;
    let snapshot = crate::health::fresh_snapshot(env)
        .await
        .map_err(EdgeError::unavailable("origin health unavailable"))?;
    let origins = delivery
        .origins
        .iter()
        .map(|origin| OriginView::of(origin, snapshot.get(&origin.name).copied()))
        .collect();
    answer(&OriginsView { origins })
}

/// `GET /admin/metrics`: each origin's delivery over the last hour and day, summed by the
/// `Health` object, which writes the body.
async fn metrics(env: &Env) -> EdgeResult<Response> {
    let body = crate::health::metrics_json(env)
        .await
        .map_err(EdgeError::unavailable("delivery metrics unavailable"))?;
    ok_json(body)
}

/// `GET /admin/dead-letters`: one page of every subject's dead letters, with their attempts.
async fn list_dead_letters(request: &Request, env: &Env) -> EdgeResult<Response> {
    let query = query(request)?;
    let page = dead_letters::page_json(env, query.consumer, query.limit, query.after)
        .await
        .map_err(EdgeError::unavailable("dead-letter index unavailable"))?;
    ok_json(page)
}

/// `POST /admin/dead-letters/{id}/replay`: every dead copy of one event goes back in line.
async fn replay_one(env: &Env, id: &str) -> EdgeResult<Response> {
    let found = dead_letters::inboxes(env, Some(id), None, SUBJECTS_PER_REPLAY)
        .await
        .map_err(EdgeError::unavailable("dead-letter index unavailable"))?;
    let mut replayed = Vec::new();
    for inbox in &found.inboxes {
        let ask = ReplayRequest {
            id: Some(id.into()),
            consumer: None,
        };
        replayed.extend(
            replay_in(env, inbox, &ask)
                .await
                .map_err(EdgeError::unavailable("inbox unavailable for replay"))?,
        );
    }
    answer(&Replayed { replayed }.of_one_event()?)
}

/// `POST /admin/dead-letters/replay[?consumer=…]`: the dead letters of up to
/// [`SUBJECTS_PER_REPLAY`] subjects go back in line; `remaining` says whether to call again.
async fn replay_all(request: &Request, env: &Env) -> EdgeResult<Response> {
    let query = query(request)?;
    let found = dead_letters::inboxes(
        env,
        None,
        query.consumer.clone(),
        query.subjects_to_replay(),
    )
    .await
    .map_err(EdgeError::unavailable("dead-letter index unavailable"))?;
    let mut replayed: u64 = 0;
    for inbox in &found.inboxes {
        let ask = ReplayRequest {
            id: None,
            consumer: query.consumer.clone(),
        };
        replayed += replay_in(env, inbox, &ask)
            .await
            .map_err(EdgeError::unavailable("inbox unavailable for replay"))?
            .len() as u64;
    }
    let remaining = dead_letters::inboxes(env, None, query.consumer, 1)
        .await
        .map_err(EdgeError::unavailable("dead-letter index unavailable"))?
        .total;
    answer(&BulkReplay {
        replayed,
        remaining,
    })
}

async fn replay_in(env: &Env, inbox: &str, ask: &ReplayRequest) -> Result<Vec<DeadLetterKey>> {
    let Replays(replayed) = objects::ask(
        env,
        InboxCall::BINDING,
        inbox,
        InboxCall::Replay.path(),
        ask,
    )
    .await?;
    Ok(replayed)
}

/// `POST /admin/erasures` (`{"subject_kind": …, "subject_id": …}`): erases what is stored
/// about one subject (a data-subject request): its payloads and bodies, pending deliveries,
/// dead letters and stream statuses, and reconciliation's memory of it. Its inbox keeps what
/// deduplication needs, so Didit's retries and resends of an erased event are still answered
/// `duplicate` and never delivered again, and an erasure mark, so reconciliation never takes
/// anything about it from Didit's API again. The id rides in the body, so no URL
/// normalisation can change which subject is erased.
async fn erase_subject(request: &mut Request, env: &Env) -> EdgeResult<Response> {
    let body = http::read_json_body(request, MAX_ERASURE_BODY_BYTES).await?;
    let subject = admin::erasure_request(&body)?;
    let InboxErasure(erased) = objects::ask(
        env,
        InboxCall::BINDING,
        &subject.inbox_name(),
        InboxCall::Erase.path(),
        &(),
    )
    .await
    .map_err(EdgeError::unavailable("inbox unavailable for erasure"))?;
    let statuses = stream::erase(env, &subject)
        .await
        .map_err(EdgeError::unavailable(
            "status stream unavailable for erasure",
        ))?;
    let reconciliation =
        crate::reconciler::forget(env, &subject)
            .await
            .map_err(EdgeError::unavailable(
                "reconciliation unavailable for erasure",
            ))?;
    // Kind only: the id is identity data, and the log keeps none. Written by hand (a kind's
    // name and two numbers need no escaping) rather than as a `json!` tree, which compiles a
    // map build and its serializer (docs/performance.md); keys in the order `json!` wrote them.
    worker::console_log!(
        "{{\"event\":\"subject_erased\",\"events\":{},\"statuses\":{},\"subject_kind\":\"{}\"}}",
        erased.events,
        statuses,
        subject.kind.as_str(),
    );
    answer(&ErasureReport::new(
        subject.kind,
        erased,
        statuses,
        reconciliation.map(|forgotten| forgotten.sessions),
    ))
}

/// `POST /admin/lookup` (`{"subject_kind", "subject_id"}`, with or without `"event_id"`, or
/// `{"event_id"}` alone): what happened to a subject's events, one timeline each, read from its
/// inbox and changing nothing. An event id alone is found through the dead-letter index, the
/// one place that maps event ids to subjects, so only while the event is a dead letter: the
/// event's path writes no global index (a row for every event, for a rare question).
async fn lookup(request: &mut Request, env: &Env) -> EdgeResult<Response> {
    let body = http::read_json_body(request, MAX_LOOKUP_BODY_BYTES).await?;
    let (subject, event_id) = match lookup_request(&body)? {
        LookupTarget::Subject { subject, event_id } => (subject, event_id),
        LookupTarget::Event(id) => {
            let found = dead_letters::inboxes(env, Some(&id), None, 1)
                .await
                .map_err(EdgeError::unavailable("dead-letter index unavailable"))?;
            let subject = found
                .inboxes
                .first()
                .and_then(|inbox| subject_of_inbox(inbox))
                .ok_or(Rejection::EventNotFound)?;
            (subject, Some(id))
        }
    };
    let found = ask_lookup(env, &subject, event_id).await?;
    lookup_answer(&found)?;
    ok_json(found)
}

/// The inbox's answer to a lookup, as text ([`lookup_answer`] reads it).
async fn ask_lookup(
    env: &Env,
    subject: &Subject<'_>,
    event_id: Option<String>,
) -> EdgeResult<String> {
    let ask = LookupAsk {
        subject_kind: subject.kind.as_str().into(),
        event_id,
    };
    let ask = serde_json::to_string(&LookupCall(ask))
        .map_err(|error| EdgeError::unavailable("lookup")(worker::Error::from(error)))?;
    objects::ask_text(
        env,
        InboxCall::BINDING,
        &subject.inbox_name(),
        InboxCall::Lookup.path(),
        ask,
    )
    .await
    .map_err(EdgeError::unavailable("inbox unavailable for lookup"))
}

/// `{"enabled": false}`: Didit's view needs `DIDIT_API_KEY`.
const DIDIT_OFF: &str = "{\"enabled\":false}";

/// Didit's webhook destinations, those of this edge marked (`DIDIT_DESTINATION`, or the host
/// the admin call was made to).
async fn destinations(
    reconcile: &ReconcileConfig,
    request: &Request,
) -> EdgeResult<(Vec<Destination>, ChosenBy)> {
    let fetched = crate::didit_api::api_get(
        reconcile,
        DESTINATIONS_PATH,
        MAX_DESTINATIONS_BYTES,
        REQUEST_TIMEOUT_MS,
    )
    .await;
    let body = answer_body(fetched.answer(), UnixSecs(crate::clock::now_secs()))
        .map_err(Rejection::Didit)?;
    let mut destinations = parse_destinations(body).map_err(Rejection::Didit)?;
    let chosen_by = select_destinations(
        &mut destinations,
        reconcile.destination.as_deref(),
        &request.inner().url(),
    );
    Ok((destinations, chosen_by))
}

/// `GET /admin/didit/destinations`: each webhook destination with the delivery health Didit
/// reports (never its secret: only the list is read, which has none).
async fn didit_destinations(config: &Config, request: &Request) -> EdgeResult<Response> {
    let Some(reconcile) = config.unless_broken(&config.reconcile)? else {
        return ok_json(DIDIT_OFF.into());
    };
    let (destinations, chosen_by) = destinations(reconcile, request).await?;
    answer(&DestinationsView {
        enabled: true,
        chosen_by,
        destinations,
    })
}

/// `POST /admin/didit/deliveries` (the lookup's body, naming a session): Didit's attempts for
/// it, read from this edge's destinations over the days of its timeline (`core::didit_view`
/// decides which pages, and when to stop).
async fn didit_deliveries(
    config: &Config,
    request: &mut Request,
    env: &Env,
) -> EdgeResult<Response> {
    let body = http::read_json_body(request, MAX_LOOKUP_BODY_BYTES).await?;
    let subject = didit_view::deliveries_request(lookup_request(&body)?)?;
    let Some(reconcile) = config.unless_broken(&config.reconcile)? else {
        return ok_json(DIDIT_OFF.into());
    };
    let timeline = ask_lookup(env, &subject, None).await?;
    let timeline = match lookup_answer(&timeline) {
        Ok(timeline) => Some(timeline),
        Err(Rejection::SubjectNotFound) => None,
        Err(refused) => return Err(refused.into()),
    };
    let window = DayWindow::of_lookup(timeline, crate::clock::now_ms());
    let (destinations, _) = destinations(reconcile, request).await?;
    let mut scan = SessionScan::new(&subject.id, &destinations, window);
    while let Some(path) = scan.next_path() {
        let fetched = crate::didit_api::api_get(
            reconcile,
            path,
            MAX_DELIVERIES_PAGE_BYTES,
            REQUEST_TIMEOUT_MS,
        )
        .await;
        let body = answer_body(fetched.answer(), UnixSecs(crate::clock::now_secs()))
            .map_err(Rejection::Didit)?;
        scan.handle_page(body, &reconcile.base_url)
            .map_err(Rejection::Didit)?;
    }
    answer(&scan.finish())
}

/// `GET /admin/reconciliation`: the checkpoint, the sweep under way, the last run and the next
/// (`{"enabled": false}` while `DIDIT_API_KEY` is unset).
async fn reconciliation(config: &Config, env: &Env) -> EdgeResult<Response> {
    config.unless_broken(&config.reconcile)?;
    let status = crate::reconciler::status_json(env)
        .await
        .map_err(EdgeError::unavailable("reconciliation state unavailable"))?;
    ok_json(status)
}

/// A 200 with `view` as its JSON body.
fn answer(view: &impl Serialize) -> EdgeResult<Response> {
    let body = serde_json::to_string(view)
        .map_err(|error| EdgeError::unavailable("response")(worker::Error::from(error)))?;
    ok_json(body)
}
