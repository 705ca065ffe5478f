//! The real-time status stream: one Durable Object per channel (`admin`, `user:<vendor_data>`)
//! holds its WebSockets through the Hibernation API and remembers each subject's current status.
//!
//! Nothing about a socket lives in the object's memory: who may see what travels with the
//! socket as its attachment (the core's [`Watch`]), so the object can be evicted between
//! messages and rebuilt when the next update or expiry arrives. `ping` is answered by the
//! runtime's auto-response without waking the object.

use didit_edge_core::channel::{self, Catchup, ChannelErasure, TOKEN_EXPIRED_CLOSE};
use didit_edge_core::identity::{Subject, SubjectKind};
use didit_edge_core::rejection::Rejection;
use didit_edge_core::stream::{next_alarm, StatusUpdate, Watch, ADMIN_CHANNEL, SUBPROTOCOL};
use didit_edge_core::time::UnixMs;
use wasm_bindgen::JsValue;
use worker::worker_sys::ext::WebSocketExt;
use worker::{
    console_error, console_log, durable_object, DurableObject, Env, Headers, Method, Request,
    Response, Result, State, WebSocket, WebSocketIncomingMessage, WebSocketPair,
};

use crate::clock::{alarm_at, now_ms};
use crate::http;
use crate::objects::{self, StreamCall};
use crate::rows::{self, Columns};

/// Header carrying the verified watch from the edge to the object.
const WATCH_HEADER: &str = "x-didit-edge-watch";
/// Header telling the object the client offered [`SUBPROTOCOL`] (and so must get it back; a
/// client that offered none must get none).
const SUBPROTOCOL_HEADER: &str = "x-didit-edge-subprotocol";

/// Current status per subject, with what filtering needs; `tokens` the ids of tokens that
/// have opened a connection, until they expire.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS statuses (
    subject TEXT PRIMARY KEY,
    time INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    message TEXT NOT NULL,
    routing TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    jti TEXT PRIMARY KEY,
    exp INTEGER NOT NULL
);
";

/// Which statuses an erasure takes from a channel: its subject's, and with `vendor_data` every
/// status routed to that user (written as `crate::fields` says).
pub(crate) struct EraseRequest {
    /// The subject's key (`kind:id`).
    pub subject: String,
    /// The user whose every status goes (an erasure of a `user` subject).
    pub vendor_data: Option<String>,
}

/// What an erasure took from a channel (written as `crate::fields` says).
#[derive(Default)]
pub(crate) struct Erased {
    /// Statuses removed.
    pub statuses: usize,
    /// The users those statuses were routed to, whose channels hold them too.
    pub vendor_data: Vec<String>,
}

/// One channel's sockets and current statuses.
#[durable_object]
pub struct StatusStream {
    state: State,
    env: Env,
}

/// The watch a socket carries: JSON text (what [`Watch::encode`] writes). Read as the raw
/// attachment rather than through `WebSocket::deserialize_attachment`, whose serde-wasm-bindgen
/// reader would be one more deserializer in the upload. (Releases before issue 10 attached the
/// watch as an object; a deploy disconnects every socket, so none of those is still open.)
fn watch_of(socket: &WebSocket) -> Option<Watch> {
    let attachment = socket.as_ref().deserialize_attachment().ok()?;
    Watch::decode(&attachment.as_string()?)
}

impl StatusStream {
    fn sql(&self) -> worker::SqlStorage {
        self.state.storage().sql()
    }

    /// How long statuses are remembered ([`channel::status_retention_ms`]).
    fn retention_ms(&self) -> i64 {
        channel::status_retention_ms(&crate::settings::config(&self.env).stream)
    }

    /// Forgets the spent tokens [`channel::forget_tokens_up_to`] names at `now`.
    fn forget_tokens(&self, now: UnixMs) -> Result<()> {
        let up_to = channel::forget_tokens_up_to(now);
        self.sql()
            .exec("DELETE FROM tokens WHERE exp <= ?", vec![up_to.0.into()])?;
        Ok(())
    }

    /// Accepts a connection the edge has authenticated, once per token.
    async fn open(&self, request: Request) -> Result<Response> {
        let Some(watch) = request
            .headers()
            .get(WATCH_HEADER)?
            .and_then(|text| Watch::decode(&text))
        else {
            return http::rejection(&Rejection::MissingToken);
        };
        // Everything that can refuse comes before the token is spent.
        let attachment = match watch.encode() {
            Ok(attachment) => attachment,
            Err(rejection) => return http::rejection(&rejection),
        };
        self.forget_tokens(UnixMs(now_ms()))?;
        let seen = rows::first(
            &self.sql().exec(
                "SELECT COUNT(*) FROM tokens WHERE jti = ?",
                vec![watch.grant.jti.as_str().into()],
            )?,
            Columns::int,
        )?;
        if let Err(rejection) = channel::admit_token(seen.is_some_and(|count| count > 0)) {
            return http::rejection(&rejection);
        }
        self.sql().exec(
            "INSERT INTO tokens (jti, exp) VALUES (?, ?)",
            vec![watch.grant.jti.as_str().into(), watch.grant.exp.into()],
        )?;
        let pair = WebSocketPair::new()?;
        self.state.accept_web_socket(&pair.server);
        pair.server
            .as_ref()
            .serialize_attachment(JsValue::from_str(&attachment))?;
        // A page opened late still shows the answer: the current status of everything this
        // connection may see, before any live update.
        for message in self.snapshot(&watch)? {
            pair.server.send_with_str(&message)?;
        }
        self.schedule().await?;
        let response = Response::from_websocket(pair.client)?;
        if request.headers().get(SUBPROTOCOL_HEADER)?.is_none() {
            return Ok(response);
        }
        let headers = Headers::new();
        headers.set("sec-websocket-protocol", SUBPROTOCOL)?;
        Ok(response.with_headers(headers))
    }

    /// The statuses this connection catches up on ([`Catchup`]), read newest first and at most
    /// [`channel::SNAPSHOT_SCAN_LIMIT`] of them.
    fn snapshot(&self, watch: &Watch) -> Result<Vec<String>> {
        let cursor = self.sql().exec(
            "SELECT message, routing FROM statuses ORDER BY time DESC, event_id DESC LIMIT ?",
            vec![i64::from(channel::SNAPSHOT_SCAN_LIMIT).into()],
        )?;
        let mut catchup = Catchup::new(watch);
        for row in cursor.raw() {
            let mut row = Columns::from(row?);
            let (message, routing) = (row.text()?, row.text()?);
            if !catchup.offer(message, &routing) {
                break;
            }
        }
        let (messages, unreadable) = catchup.finish();
        if unreadable > 0 {
            console_error!("{unreadable} stored statuses are unreadable and were not sent");
        }
        Ok(messages)
    }

    /// Records and broadcasts an update, if it is newer than what its subject last showed.
    async fn publish(&self, mut request: Request) -> Result<Response> {
        let update: StatusUpdate = objects::message(&mut request).await?;
        let message = update.to_message();
        let subject = update.subject_key();
        let latest = rows::first(
            &self.sql().exec(
                "SELECT time, event_id FROM statuses WHERE subject = ?",
                vec![subject.as_str().into()],
            )?,
            |row| Ok((row.int()?, row.text()?)),
        )?;
        let latest = latest.as_ref().map(|(time, id)| (*time, id.as_str()));
        if !update.supersedes(latest) {
            return http::json(200, r#"{"sent":0}"#.into());
        }
        self.sql().exec(
            "INSERT INTO statuses (subject, time, event_id, updated_at_ms, message, routing) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT(subject) DO UPDATE SET time = excluded.time, event_id = excluded.event_id, \
             updated_at_ms = excluded.updated_at_ms, message = excluded.message, routing = excluded.routing",
            vec![
                subject.as_str().into(),
                update.time.into(),
                update.event_id.as_str().into(),
                now_ms().into(),
                message.as_str().into(),
                serde_json::to_string(&update)?.into(),
            ],
        )?;
        let mut sent = 0;
        for socket in self.state.get_websockets() {
            if watch_of(&socket).is_some_and(|watch| watch.admits(&update))
                && socket.send_with_str(&message).is_ok()
            {
                sent += 1;
            }
        }
        self.schedule().await?;
        http::json(200, format!(r#"{{"sent":{sent}}}"#))
    }

    /// Forgets the statuses an erasure names, saying whose channels may hold them too.
    async fn erase(&self, mut request: Request) -> Result<Response> {
        let ask: EraseRequest = objects::message(&mut request).await?;
        let sql = self.sql();
        let by_user = "json_extract(routing, '$.vendor_data') = ?";
        let (filter, values): (String, Vec<worker::SqlStorageValue>) = match &ask.vendor_data {
            Some(user) => (
                format!("subject = ? OR {by_user}"),
                vec![ask.subject.as_str().into(), user.as_str().into()],
            ),
            None => ("subject = ?".into(), vec![ask.subject.as_str().into()]),
        };
        let routings = rows::all(
            &sql.exec(
                &format!("SELECT routing FROM statuses WHERE {filter}"),
                values.clone(),
            )?,
            |row| row.text(),
        )?;
        sql.exec(&format!("DELETE FROM statuses WHERE {filter}"), values)?;
        let (vendor_data, unreadable) = channel::erased_users(routings.iter().map(String::as_str));
        if unreadable > 0 {
            console_error!(
                "{unreadable} erased statuses had unreadable routing: their users' channels forget them only by retention"
            );
        }
        let erased = Erased {
            statuses: routings.len(),
            vendor_data,
        };
        http::json(200, serde_json::to_string(&erased)?)
    }

    /// Sets the alarm where the core's [`next_alarm`] says: the first token expiry among the
    /// open sockets or the first status to forget, never in a tight loop over sockets that
    /// are closing.
    async fn schedule(&self) -> Result<()> {
        let oldest = rows::first(
            &self
                .sql()
                .exec("SELECT MIN(updated_at_ms) FROM statuses", None)?,
            Columns::opt_int,
        )?
        .flatten();
        let expiries: Vec<i64> = self
            .state
            .get_websockets()
            .iter()
            .filter_map(watch_of)
            .map(|watch| watch.grant.exp)
            .collect();
        let next = next_alarm(expiries, oldest, self.retention_ms(), now_ms());
        let storage = self.state.storage();
        match next {
            Some(at) => storage.set_alarm(alarm_at(at)).await,
            None => storage.delete_alarm().await,
        }
    }
}

impl DurableObject for StatusStream {
    fn new(state: State, env: Env) -> Self {
        objects::create_tables(&state, "stream", SCHEMA);
        match worker::worker_sys::WebSocketRequestResponsePair::new("ping", "pong") {
            Ok(pair) => state.set_websocket_auto_response(&pair),
            Err(_) => console_error!("stream ping auto-response unavailable"),
        }
        Self { state, env }
    }

    async fn fetch(&self, request: Request) -> Result<Response> {
        match StreamCall::of_path(&request.path()) {
            Some(StreamCall::Connect) => self.open(request).await,
            Some(StreamCall::Publish) => self.publish(request).await,
            Some(StreamCall::Erase) => self.erase(request).await,
            None => objects::no_such_call(),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        let now = UnixMs(now_ms());
        let sockets = self.state.get_websockets();
        let mut closed = 0;
        for socket in &sockets {
            if channel::closes(watch_of(socket).as_ref(), now) {
                let _ = socket.close(Some(TOKEN_EXPIRED_CLOSE), Some("token expired"));
                closed += 1;
            }
        }
        // Numbers only: written by hand rather than as a `json!` tree (docs/performance.md).
        console_log!(
            "{{\"closed\":{closed},\"event\":\"stream_alarm\",\"sockets\":{}}}",
            sockets.len()
        );
        let forget_up_to = channel::forget_statuses_up_to(now, self.retention_ms());
        self.sql().exec(
            "DELETE FROM statuses WHERE updated_at_ms <= ?",
            vec![forget_up_to.0.into()],
        )?;
        self.forget_tokens(now)?;
        self.schedule().await?;
        Response::ok("done")
    }

    async fn websocket_message(
        &self,
        _socket: WebSocket,
        _message: WebSocketIncomingMessage,
    ) -> Result<()> {
        // The stream is one-way; `ping` is answered by the runtime before it gets here.
        Ok(())
    }

    async fn websocket_close(
        &self,
        socket: WebSocket,
        code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> Result<()> {
        // Complete the closing handshake.
        let _ = socket.close(Some(channel::close_reply(code)), Some("closed"));
        Ok(())
    }

    async fn websocket_error(&self, socket: WebSocket, _error: worker::Error) -> Result<()> {
        let _ = socket.close(Some(1011), Some("error"));
        Ok(())
    }
}

/// Hands an authenticated upgrade to its channel's object; its answer (101, or 401 for a
/// reused token) goes back to the client as it is.
pub(crate) async fn connect(
    env: &Env,
    watch: &Watch,
    offered_subprotocol: bool,
) -> Result<Response> {
    let headers = Headers::new();
    headers.set("upgrade", "websocket")?;
    if offered_subprotocol {
        headers.set(SUBPROTOCOL_HEADER, "1")?;
    }
    headers.set(WATCH_HEADER, &serde_json::to_string(watch)?)?;
    let url = format!("https://stream{}", StreamCall::Connect.path());
    let request = http::outgoing(&url, Method::Get, Some(&headers), None, true)?;
    objects::stub(env, StreamCall::BINDING, &watch.channel())?
        .fetch_with_request(request)
        .await
}

/// Erases a subject's statuses from the admin channel and from every user channel that holds
/// them (for a `user` subject, that user's whole channel).
pub(crate) async fn erase(env: &Env, subject: &Subject<'_>) -> Result<usize> {
    let user = (subject.kind == SubjectKind::User).then(|| subject.id.to_string());
    let subject = subject.inbox_name();
    let admin = erase_in(env, &subject, channel::admin_erasure(user.as_deref())).await?;
    let mut statuses = admin.statuses;
    for erasure in channel::user_erasures(user.as_deref(), admin.vendor_data) {
        statuses += erase_in(env, &subject, erasure).await?.statuses;
    }
    Ok(statuses)
}

async fn erase_in(env: &Env, subject: &str, erasure: ChannelErasure) -> Result<Erased> {
    let ask = EraseRequest {
        subject: subject.into(),
        vendor_data: erasure.everything_of,
    };
    objects::ask(
        env,
        StreamCall::BINDING,
        &erasure.channel,
        StreamCall::Erase.path(),
        &ask,
    )
    .await
}

/// Publishes an accepted event's status to its channels; a failure is logged and never
/// touches the event itself (it is stored and will be delivered regardless).
pub(crate) async fn publish(env: &Env, update: &StatusUpdate) {
    let Ok(body) = serde_json::to_string(update) else {
        return;
    };
    let sends = update.channels().into_iter().map(|channel| {
        let body = body.clone();
        async move {
            if let Err(error) = objects::post(
                env,
                StreamCall::BINDING,
                &channel,
                StreamCall::Publish.path(),
                body,
            )
            .await
            {
                // A user channel is named by vendor_data, which stays out of the logs.
                let audience = if channel == ADMIN_CHANNEL {
                    "admins"
                } else {
                    "its user"
                };
                console_error!(
                    "status of {} not published to {audience}: {error}",
                    update.event_id
                );
            }
        }
    });
    futures_util::future::join_all(sends).await;
}
