//! Every Durable Object's binding, calls and instance names, declared once for callers and
//! callees (the way cloudflare/daphne's `define_do_binding!` does), and the one way to call
//! one: a JSON POST to a named object, anything but a 200 turned into an error that carries
//! the object's answer.

use didit_edge_core::rejection::Rejection;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use worker::{
    console_error, web_sys, Env, Method, ObjectNamespace, Request, Response, Result, State, Stub,
};

use crate::http;

/// The name of the objects there is one of (`Health`, `DeadLetters`).
pub(crate) const GLOBAL: &str = "global";

/// Declares a Durable Object's binding and its calls, each with its path.
macro_rules! object_calls {
    ($(#[$doc:meta])* $calls:ident on $binding:literal {
        $($(#[$call_doc:meta])* $call:ident = $path:literal,)+
    }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum $calls {
            $($(#[$call_doc])* $call,)+
        }

        impl $calls {
            /// The binding in `wrangler.toml`.
            pub(crate) const BINDING: &'static str = $binding;

            /// The call's path.
            pub(crate) fn path(self) -> &'static str {
                match self {
                    $(Self::$call => $path,)+
                }
            }

            /// The call a request's path names, if any.
            pub(crate) fn of_path(path: &str) -> Option<Self> {
                match path {
                    $($path => Some(Self::$call),)+
                    _ => None,
                }
            }
        }
    };
}

object_calls! {
    /// The calls of a subject's `Inbox` (named by its subject, `session:…`, `user:…`).
    InboxCall on "INBOX" {
        /// Claim and store an event (`claim::Claim` → `Receipt`).
        Claim = "/claim",
        /// Replay dead letters (`inbox::ReplayRequest` → `inbox::Replayed`).
        Replay = "/replay",
        /// Erase the subject's data (→ `inbox::Erasure`).
        Erase = "/erase",
        /// What it holds of a transition reconciliation found (`inbox::KnowsRequest` →
        /// `inbox::Knowledge`).
        Knows = "/knows",
        /// Its events' timelines, changing nothing (`admin::LookupAsk` →
        /// `Result<admin::Lookup, admin::LookupMiss>`).
        Lookup = "/lookup",
    }
}

object_calls! {
    /// The calls of the `Reconciler` ([`GLOBAL`]).
    ReconcilerCall on "RECONCILER" {
        /// Run the sweep now if it is due (→ the run's report, or why not).
        Run = "/run",
        /// Where reconciliation stands (→ `GET /admin/reconciliation`'s body).
        Status = "/status",
        /// Forget an erased subject, and leave it alone (`reconciler::ForgetRequest` →
        /// `reconciler::Forgotten`).
        Forget = "/forget",
    }
}

object_calls! {
    /// The calls of the `Health` object ([`GLOBAL`]), and of each limited origin's gate
    /// (`gate:<origin>`, an instance of the same class: `origin_gate`).
    HealthCall on "HEALTH" {
        /// One outcome (`health::Report`).
        Report = "/report",
        /// Every breaker (→ `health::Snapshot`); the body is the caller's metrics flush.
        Snapshot = "/snapshot",
        /// Delivery per origin (the caller's metrics flush → `admin::MetricsView`).
        Metrics = "/metrics",
        /// A limited origin's gate (the object `gate:<origin>`): a turn
        /// (`origin_gate::GateLimits` → `origin_gate::Answer`, hand-written arrays).
        GateAsk = "/gate/ask",
        /// A limited origin's gate: a lease back (`[id]`).
        GateRelease = "/gate/release",
    }
}

object_calls! {
    /// The calls of the `DeadLetters` index ([`GLOBAL`]).
    DeadLettersCall on "DEAD_LETTERS" {
        /// An inbox's changes (`dead_letters::Changes`).
        Sync = "/sync",
        /// One page of the listing (`dead_letters::Query` → the page as JSON).
        Page = "/page",
        /// The inboxes holding matching dead letters (`dead_letters::Query` → `Inboxes`).
        Inboxes = "/inboxes",
    }
}

object_calls! {
    /// The calls of a `StatusStream` channel (`admin`, or `user:<vendor_data>`).
    StreamCall on "STREAM" {
        /// Accept an authenticated WebSocket (the watch rides in a header).
        Connect = "/connect",
        /// Record and broadcast a status (`stream::StatusUpdate`).
        Publish = "/publish",
        /// Forget statuses (`stream::EraseRequest` → `stream::Erased`).
        Erase = "/erase",
    }
}

object_calls! {
    /// The calls of the `Alerts` outbox ([`GLOBAL`]).
    AlertsCall on "ALERTS" {
        /// Queue alerts (`alerts::Enqueue`).
        Enqueue = "/enqueue",
    }
}

/// Creates an object's tables as it starts (every statement of `schema` is idempotent). A
/// failure is logged and the object still answers: its first statement then reports what is
/// wrong to whoever called, instead of the object failing to start.
pub(crate) fn create_tables(state: &State, object: &str, schema: &str) {
    if let Err(error) = state.storage().sql().exec(schema, None) {
        console_error!("{object} schema could not be created: {error}");
    }
}

/// Every object's answer to a path that names none of its calls.
pub(crate) fn no_such_call() -> Result<Response> {
    http::rejection(&Rejection::NotFound)
}

/// The stub of the object `name` of `binding`.
/// Every object lives in `DURABLE_OBJECT_JURISDICTION` when it is set; while it is broken no
/// object is reached, so nothing is stored outside the jurisdiction asked for.
pub(crate) fn stub(env: &Env, binding: &str, name: &str) -> Result<Stub> {
    let namespace = env.durable_object(binding)?;
    match crate::settings::config(env).jurisdiction {
        Ok(None) => namespace.id_from_name(name)?.get_stub(),
        Ok(Some(jurisdiction)) => {
            let restricted = JurisdictionNamespace::from(JsValue::from(namespace.as_ref()))
                .jurisdiction(jurisdiction)
                .map_err(worker::Error::from)?;
            ObjectNamespace::unchecked_from_js(restricted)
                .id_from_name(name)?
                .get_stub()
        }
        Err(()) => {
            Err("DURABLE_OBJECT_JURISDICTION is invalid: no Durable Object is reached".into())
        }
    }
}

#[wasm_bindgen]
extern "C" {
    /// A Durable Object namespace, for the one method `worker` 0.8 does not bind.
    #[wasm_bindgen(extends = js_sys::Object)]
    type JurisdictionNamespace;

    /// The namespace of the objects restricted to `jurisdiction` (`eu`, `us`, `fedramp`, `fedramp-high`), whose
    /// `idFromName` and `get` work as the unrestricted namespace's do.
    #[wasm_bindgen(method, catch)]
    fn jurisdiction(
        this: &JurisdictionNamespace,
        jurisdiction: &str,
    ) -> std::result::Result<JsValue, JsValue>;
}

#[wasm_bindgen]
extern "C" {
    /// A Durable Object stub as the runtime has it.
    #[wasm_bindgen(extends = js_sys::Object)]
    type RawStub;

    #[wasm_bindgen(method, catch)]
    fn fetch(
        this: &RawStub,
        request: &web_sys::Request,
    ) -> std::result::Result<js_sys::Promise, JsValue>;
}

/// An object's 200 answer, as the runtime's `Response`: read whole with one `text()`, where
/// workers-rs' `Response` would read it through a stream reader, a promise and a copy across
/// the wasm boundary per chunk (scripts/profile_worker.py showed that on every event's claim).
pub(crate) struct Answer(web_sys::Response);

impl Answer {
    /// The answer's body.
    pub(crate) async fn text(self) -> Result<String> {
        let text = JsFuture::from(self.0.text()?).await?;
        text.as_string()
            .ok_or_else(|| "an object's answer is not text".into())
    }
}

/// POSTs `body` to the call at `path` of the object `name` of `binding`.
pub(crate) async fn post(
    env: &Env,
    binding: &str,
    name: &str,
    path: &str,
    body: String,
) -> Result<Answer> {
    let url = format!("https://object{path}");
    let request = http::outgoing(&url, Method::Post, None, Some(&body), true)?;
    let stub = stub(env, binding, name)?.into_rpc::<RawStub>();
    let answered = JsFuture::from(stub.fetch(request.inner())?).await?;
    let response = Answer(answered.dyn_into::<web_sys::Response>()?);
    let status = response.0.status();
    if status != 200 {
        let text = response.text().await.unwrap_or_default();
        return Err(format!("{binding} object answered {status}: {text}").into());
    }
    Ok(response)
}

/// Sends `message` as JSON to the call at `path` of the object `name` of `binding`, and reads
/// its JSON answer.
pub(crate) async fn ask<T: DeserializeOwned>(
    env: &Env,
    binding: &str,
    name: &str,
    path: &str,
    message: &impl Serialize,
) -> Result<T> {
    let body = serde_json::to_string(message)?;
    let answer = ask_text(env, binding, name, path, body).await?;
    Ok(didit_edge_core::json::from_str(&answer)?)
}

/// `ask`'s round trip, as text. Boxed behind `dyn Future` so that each answer type's `ask`
/// awaits this one future instead of inlining a copy of the fetch into its own (the upload
/// pays for every copy: docs/performance.md).
pub(crate) fn ask_text<'a>(
    env: &'a Env,
    binding: &'a str,
    name: &'a str,
    path: &'a str,
    body: String,
) -> LocalBoxFuture<'a, Result<String>> {
    Box::pin(async move { post(env, binding, name, path, body).await?.text().await })
}

/// Reads the JSON message a call carries with serde_json, the way `ask` reads answers:
/// `Request::json` would read it through serde-wasm-bindgen, a second deserializer for each
/// message type.
pub(crate) async fn message<T: DeserializeOwned>(request: &mut Request) -> Result<T> {
    let text = request.text().await?;
    Ok(didit_edge_core::json::from_str(&text)?)
}
