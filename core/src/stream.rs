//! Who sees which status update on the real-time stream, decided from a verified token's
//! [`Grant`] and the filters given at connect time.
//!
//! Updates fan out by channel: `user:<vendor_data>` for the people verifying themselves and
//! `admin` for operators. A `self` connection is only ever attached to its own user's channel,
//! so an update for another user never reaches the object that holds its socket; the session
//! narrowing and admin filters are then checked per socket.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::rejection::Rejection;
use crate::risk::Level;
use crate::stream_token::{Grant, Scope};

/// The channel of every admin connection.
pub const ADMIN_CHANNEL: &str = "admin";

/// The subprotocol a client offers (with its token) and the server answers with.
pub const SUBPROTOCOL: &str = "didit-edge.v1";

/// A token as a connection presented it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Presented<'a> {
    /// The token.
    pub token: &'a str,
    /// Whether it came with [`SUBPROTOCOL`], which the server must then answer with (and
    /// must not, when the client offered no subprotocol).
    pub in_subprotocol: bool,
}

/// The token a connection presents: the entry after [`SUBPROTOCOL`] in
/// `Sec-WebSocket-Protocol`, or, for clients that cannot set that header, the `access_token`
/// query parameter (which ends up in logs, so it is only the fallback).
pub fn presented_token<'a>(
    protocols: Option<&'a str>,
    query: Option<&'a str>,
) -> Result<Presented<'a>, Rejection> {
    if let Some(protocols) = protocols {
        let offered: Vec<&str> = protocols.split(',').map(str::trim).collect();
        if offered.contains(&SUBPROTOCOL) {
            return offered
                .into_iter()
                .find(|p| *p != SUBPROTOCOL && !p.is_empty())
                .map(|token| Presented {
                    token,
                    in_subprotocol: true,
                })
                .ok_or(Rejection::MissingToken);
        }
    }
    query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("access_token="))
        .filter(|token| !token.is_empty())
        .map(|token| Presented {
            token,
            in_subprotocol: false,
        })
        .ok_or(Rejection::MissingToken)
}

/// What the stream knows about one accepted event. Only [`StatusUpdate::to_message`] is sent:
/// no names, documents or decision details, and not the routing fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The stable event id (`webhook-id` at the origins).
    pub event_id: String,
    /// `session`, `business_session`, `user`, `business` or `transaction`.
    pub subject_kind: String,
    /// The subject's id.
    pub subject_id: String,
    /// The stable status code (`approved`, `declined`, …), when the event has a status.
    pub status_code: Option<String>,
    /// The assessed risk level.
    pub risk_level: Level,
    /// When Didit created the event (Unix seconds): updates of a session are ordered by it.
    pub time: i64,
    /// A console test delivery.
    pub test: bool,
    /// For routing only, never sent: whose event it is.
    pub vendor_data: Option<String>,
    /// For session narrowing only, never sent.
    pub session_id: Option<String>,
    /// For admin filters only, never sent.
    pub workflow_id: Option<String>,
    /// For admin filters only, never sent.
    pub webhook_type: String,
}

/// The most channels one update goes to (admin, and its user's): the subrequests a publish
/// costs at most.
pub const CHANNELS_PER_UPDATE: u32 = 2;

impl StatusUpdate {
    /// The channels that get this update: its user's (when it has `vendor_data`) and admin.
    pub fn channels(&self) -> Vec<String> {
        let mut channels = Vec::from([String::from(ADMIN_CHANNEL)]);
        if let Some(user) = self.vendor_data.as_deref().filter(|v| !v.is_empty()) {
            channels.push(user_channel(user));
        }
        channels
    }

    /// The message as sent: `{"type":"status",…}`, without the routing fields.
    pub fn to_message(&self) -> String {
        #[derive(Serialize)]
        struct Message<'a> {
            r#type: &'static str,
            event_id: &'a str,
            subject_kind: &'a str,
            subject_id: &'a str,
            status_code: Option<&'a str>,
            risk_level: Level,
            time: i64,
            test: bool,
        }
        serde_json::to_string(&Message {
            r#type: "status",
            event_id: &self.event_id,
            subject_kind: &self.subject_kind,
            subject_id: &self.subject_id,
            status_code: self.status_code.as_deref(),
            risk_level: self.risk_level,
            time: self.time,
            test: self.test,
        })
        .unwrap_or_default()
    }

    /// The key under which the stream remembers a subject's current status.
    pub fn subject_key(&self) -> String {
        format!("{}:{}", self.subject_kind, self.subject_id)
    }

    /// Whether this update should replace `latest`, the last one sent for its subject: only
    /// a later one does (by creation time, then event id), so each connection sees a subject's
    /// updates at most once and never goes back in time.
    pub fn supersedes(&self, latest: Option<(i64, &str)>) -> bool {
        latest.is_none_or(|(time, id)| (self.time, self.event_id.as_str()) > (time, id))
    }
}

/// The channel of the user whose `vendor_data` this is.
pub fn user_channel(user: &str) -> String {
    format!("user:{user}")
}

/// What an admin connection narrows itself to (`?workflow=…&type=…&risk=…`, each repeatable).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminFilters {
    /// Only these workflows.
    pub workflow_ids: Vec<String>,
    /// Only these event types (exact, `family.*` or `*`).
    pub event_types: Vec<String>,
    /// Only these risk levels.
    pub risk_levels: Vec<Level>,
}

impl AdminFilters {
    /// Parses the connect query. `access_token` is skipped (it is the token, read elsewhere);
    /// anything else unknown is refused.
    pub fn parse(query: Option<&str>) -> Result<Self, Rejection> {
        let mut filters = Self::default();
        let bad = |reason| Err(Rejection::InvalidQuery { reason });
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let plain = !value.is_empty()
                && value.len() <= 128
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*'));
            match key {
                "access_token" => {}
                "workflow" if plain => filters.workflow_ids.push(value.into()),
                "type" if plain && crate::event_type::is_valid_pattern(value) => {
                    filters.event_types.push(value.into());
                }
                "risk" => match value.parse() {
                    Ok(level) => filters.risk_levels.push(level),
                    Err(_) => {
                        return bad("`risk` must be a risk level (`low`, `medium`, `high`, …)")
                    }
                },
                "workflow" | "type" => return bad("`workflow` and `type` take plain names"),
                _ => return bad("unknown parameter; use `workflow`, `type` or `risk`"),
            }
        }
        Ok(filters)
    }

    fn is_empty(&self) -> bool {
        self.workflow_ids.is_empty() && self.event_types.is_empty() && self.risk_levels.is_empty()
    }

    fn admits(&self, update: &StatusUpdate) -> bool {
        let type_ok = self.event_types.is_empty()
            || self
                .event_types
                .iter()
                .any(|p| crate::event_type::matches(p, &update.webhook_type));
        let workflow_ok = self.workflow_ids.is_empty()
            || update
                .workflow_id
                .as_ref()
                .is_some_and(|w| self.workflow_ids.contains(w));
        let risk_ok = self.risk_levels.is_empty() || self.risk_levels.contains(&update.risk_level);
        type_ok && workflow_ok && risk_ok
    }
}

/// The soonest a channel's alarm comes again: sockets closed for an expired token can stay
/// listed while the peer takes its time to answer the close, and must not make it spin.
pub const MIN_ALARM_DELAY_MS: i64 = 1_000;

/// When a channel next has something to do, at `now_ms`: the first token expiry among its
/// watches that are still open, or the first remembered status to forget, and never sooner
/// than [`MIN_ALARM_DELAY_MS`]. Watches whose token has expired were closed already.
pub fn next_alarm(
    watch_expiries_secs: impl IntoIterator<Item = i64>,
    oldest_status_ms: Option<i64>,
    status_retention_ms: i64,
    now_ms: i64,
) -> Option<i64> {
    let expiry = watch_expiries_secs
        .into_iter()
        .map(|exp| exp.saturating_mul(1000))
        .filter(|&exp_ms| exp_ms > now_ms)
        .min();
    let forget = oldest_status_ms.map(|at| at.saturating_add(status_retention_ms));
    let next = match (expiry, forget) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }?;
    Some(next.max(now_ms.saturating_add(MIN_ALARM_DELAY_MS)))
}

/// Most bytes a connection's watch may take as its socket's attachment: the Hibernation API
/// keeps at most 2,048 per socket, and a little goes to the serialization's own header.
pub const MAX_WATCH_BYTES: usize = 2_000;

/// The size of `text` as the runtime stores a string (V8's serializer: one byte per character
/// when every character fits in Latin-1, else two per UTF-16 unit), plus a small header.
fn stored_size(text: &str) -> usize {
    let units = if text.chars().all(|c| u32::from(c) <= 0xFF) {
        text.chars().count()
    } else {
        text.encode_utf16().count().saturating_mul(2)
    };
    units.saturating_add(16)
}

/// One connection's right to see updates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// The verified token's grant.
    pub grant: Grant,
    /// The admin's filters (always empty for `self`).
    pub filters: AdminFilters,
}

impl Watch {
    /// Combines a grant with the connect filters. Filters are an admin's tool: a `self` token
    /// asking for them is refused (403), not silently widened or narrowed.
    pub fn new(grant: Grant, filters: AdminFilters) -> Result<Self, Rejection> {
        if grant.scope == Scope::OwnEvents && !filters.is_empty() {
            return Err(Rejection::Forbidden {
                reason: "filters need an `admin` token",
            });
        }
        let watch = Self { grant, filters };
        watch.encode()?;
        Ok(watch)
    }

    /// The watch as it travels with its socket (JSON text), or a refusal when it would not fit
    /// the [`MAX_WATCH_BYTES`] the runtime keeps per socket: checked before the token is spent,
    /// so a token too big to attach is refused cleanly and can be reissued smaller.
    pub fn encode(&self) -> Result<String, Rejection> {
        let too_large = |bytes| Rejection::WatchTooLarge {
            bytes,
            max: MAX_WATCH_BYTES,
        };
        let text = serde_json::to_string(self).map_err(|_| too_large(usize::MAX))?;
        let bytes = stored_size(&text);
        if bytes > MAX_WATCH_BYTES {
            return Err(too_large(bytes));
        }
        Ok(text)
    }

    /// Reads a watch written by [`Watch::encode`]. Read as a `Value`, whose reader the upload
    /// holds anyway, rather than through the derived readers of its three structs
    /// (docs/performance.md); as strict: every field there with its type (`sessions` may be
    /// `null` or absent), unknown ones ignored.
    pub fn decode(text: &str) -> Option<Self> {
        let watch: Value = crate::json::from_str(text).ok()?;
        let (grant, filters) = (watch.get("grant")?, watch.get("filters")?);
        let text = |value: &Value, key: &str| value.get(key)?.as_str().map(String::from);
        let texts = |value: &Value, key: &str| -> Option<Vec<String>> {
            value
                .get(key)?
                .as_array()?
                .iter()
                .map(|one| one.as_str().map(String::from))
                .collect()
        };
        Some(Self {
            grant: Grant {
                sub: text(grant, "sub")?,
                sessions: match grant.get("sessions") {
                    None | Some(Value::Null) => None,
                    Some(_) => Some(texts(grant, "sessions")?),
                },
                scope: Scope::deserialize(grant.get("scope")?).ok()?,
                jti: text(grant, "jti")?,
                exp: grant.get("exp")?.as_i64()?,
            },
            filters: AdminFilters {
                workflow_ids: texts(filters, "workflow_ids")?,
                event_types: texts(filters, "event_types")?,
                risk_levels: filters
                    .get("risk_levels")?
                    .as_array()?
                    .iter()
                    .map(|level| Level::deserialize(level).ok())
                    .collect::<Option<_>>()?,
            },
        })
    }

    /// Whether the connection's token has expired at `now_ms` (it is then closed).
    pub fn expired(&self, now_ms: i64) -> bool {
        self.grant.exp.saturating_mul(1000) <= now_ms
    }

    /// The channel whose object holds this connection.
    pub fn channel(&self) -> String {
        match self.grant.scope {
            Scope::Admin => ADMIN_CHANNEL.into(),
            Scope::OwnEvents => user_channel(&self.grant.sub),
        }
    }

    /// Whether this connection may see `update`.
    pub fn admits(&self, update: &StatusUpdate) -> bool {
        match self.grant.scope {
            Scope::Admin => self.filters.admits(update),
            Scope::OwnEvents => {
                update.vendor_data.as_deref() == Some(self.grant.sub.as_str())
                    && self.grant.sessions.as_ref().is_none_or(|sessions| {
                        update
                            .session_id
                            .as_ref()
                            .is_some_and(|s| sessions.contains(s))
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn update(user: &str, session: &str, time: i64) -> StatusUpdate {
        StatusUpdate {
            event_id: format!("evt_{session}_{time}"),
            subject_kind: "session".into(),
            subject_id: session.into(),
            status_code: Some("approved".into()),
            risk_level: Level::Low,
            time,
            test: false,
            vendor_data: Some(user.into()),
            session_id: Some(session.into()),
            workflow_id: Some("wf-kyc".into()),
            webhook_type: "status.updated".into(),
        }
    }

    fn grant(sub: &str, scope: Scope, sessions: Option<Vec<&str>>) -> Grant {
        Grant {
            sub: sub.into(),
            sessions: sessions.map(|s| s.into_iter().map(String::from).collect()),
            scope,
            jti: "j".into(),
            exp: 0,
        }
    }

    #[test]
    fn a_user_sees_only_their_own_sessions() {
        let alice = Watch::new(
            grant("alice", Scope::OwnEvents, None),
            AdminFilters::default(),
        )
        .expect("no filters");
        assert_eq!(alice.channel(), "user:alice");
        assert!(alice.admits(&update("alice", "s1", 1)));
        assert!(!alice.admits(&update("bob", "s1", 1)));
        let narrowed = Watch::new(
            grant("alice", Scope::OwnEvents, Some(vec!["s2"])),
            AdminFilters::default(),
        )
        .expect("no filters");
        assert!(!narrowed.admits(&update("alice", "s1", 1)));
        assert!(narrowed.admits(&update("alice", "s2", 1)));
        let mut no_user = update("alice", "s2", 1);
        no_user.vendor_data = None;
        assert!(!narrowed.admits(&no_user));
        assert_eq!(no_user.channels(), ["admin"]);
        assert_eq!(update("bob", "s", 1).channels(), ["admin", "user:bob"]);
    }

    #[test]
    fn a_watch_reads_back_as_the_derived_reader_read_it() {
        let filters = AdminFilters::parse(Some("risk=high&risk=low&type=status.*&workflow=wf"))
            .expect("valid");
        for watch in [
            Watch::new(grant("ops", Scope::Admin, None), filters).expect("admin"),
            Watch::new(
                grant("alice", Scope::OwnEvents, Some(vec!["s1", "s2"])),
                AdminFilters::default(),
            )
            .expect("own"),
        ] {
            let text = watch.encode().expect("fits");
            let derived: Watch = crate::json::from_str(&text).expect("derived");
            assert_eq!(Watch::decode(&text), Some(derived));
        }
        let text = r#"{"grant":{"sub":"a","scope":"self","jti":"j","exp":1},
            "filters":{"workflow_ids":[],"event_types":[],"risk_levels":[]}}"#;
        assert_eq!(
            Watch::decode(text).map(|watch| watch.grant.sessions),
            Some(None)
        );
        for broken in [
            text.replace(r#""exp":1"#, r#""exp":1.5"#),
            text.replace(r#""scope":"self""#, r#""scope":"root""#),
            text.replace(r#""risk_levels":[]"#, r#""risk_levels":["huge"]"#),
            text.replace(r#""event_types":[]"#, r#""event_types":[1]"#),
            text.replace(r#""jti":"j","#, ""),
        ] {
            assert_eq!(Watch::decode(&broken), None, "{broken}");
            assert!(crate::json::from_str::<Watch>(&broken).is_err(), "{broken}");
        }
    }

    #[test]
    fn admins_see_everything_their_filters_let_through() {
        let all =
            Watch::new(grant("ops", Scope::Admin, None), AdminFilters::default()).expect("admin");
        assert_eq!(all.channel(), "admin");
        assert!(all.admits(&update("alice", "s1", 1)) && all.admits(&update("bob", "s2", 1)));
        let filters =
            AdminFilters::parse(Some("risk=high&type=status.*&access_token=x")).expect("valid");
        let high = Watch::new(grant("ops", Scope::Admin, None), filters).expect("admin");
        let mut risky = update("bob", "s2", 1);
        assert!(!high.admits(&risky));
        risky.risk_level = Level::High;
        assert!(high.admits(&risky));
        risky.webhook_type = "user.status.updated".into();
        assert!(!high.admits(&risky));
        let by_workflow = AdminFilters::parse(Some("workflow=wf-other")).expect("valid");
        let other = Watch::new(grant("ops", Scope::Admin, None), by_workflow).expect("admin");
        assert!(!other.admits(&update("bob", "s2", 1)));
    }

    #[test]
    fn filters_need_an_admin_and_a_clean_query() {
        let filters = AdminFilters::parse(Some("risk=high")).expect("valid");
        let many: Vec<String> = (0..60).map(|n| format!("session-{n:032}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(matches!(
            Watch::new(grant("alice", Scope::OwnEvents, Some(many)), AdminFilters::default()),
            Err(Rejection::WatchTooLarge { bytes, max: MAX_WATCH_BYTES }) if bytes > MAX_WATCH_BYTES
        ));
        let few: Vec<String> = (0..20).map(|n| format!("session-{n:032}")).collect();
        let few: Vec<&str> = few.iter().map(String::as_str).collect();
        let fits = Watch::new(
            grant("alice", Scope::OwnEvents, Some(few)),
            AdminFilters::default(),
        )
        .expect("twenty sessions fit");
        assert_eq!(Watch::decode(&fits.encode().expect("fits")), Some(fits));
        // Characters beyond Latin-1 take two bytes each.
        let wide = "\u{4e16}".repeat(1_000);
        assert!(Watch::new(
            grant(&wide, Scope::OwnEvents, None),
            AdminFilters::default()
        )
        .is_err());
        let latin = "\u{e9}".repeat(1_000);
        assert!(Watch::new(
            grant(&latin, Scope::OwnEvents, None),
            AdminFilters::default()
        )
        .is_ok());
        let refused = Watch::new(grant("alice", Scope::OwnEvents, None), filters)
            .expect_err("self with filters");
        assert_eq!(
            (refused.status(), refused.code()),
            (403, "insufficient_scope")
        );
        for bad in [
            "risk=scary",
            "type=a b",
            "workflow=",
            "colour=red",
            "type=**",
        ] {
            let rejection = AdminFilters::parse(Some(bad)).expect_err(bad);
            assert_eq!(rejection.code(), "invalid_query", "{bad}");
        }
    }

    #[test]
    fn messages_carry_status_only_and_move_forward() {
        let message = update("alice", "s1", 7).to_message();
        let value: Value = serde_json::from_str(&message).expect("json");
        assert_eq!(
            value,
            serde_json::json!({"type": "status", "event_id": "evt_s1_7", "subject_kind": "session",
                               "subject_id": "s1", "status_code": "approved", "risk_level": "low",
                               "time": 7, "test": false})
        );
        let later = update("alice", "s1", 8);
        assert!(later.supersedes(None));
        assert!(later.supersedes(Some((7, "evt_s1_7"))));
        assert!(!later.supersedes(Some((8, "evt_s1_8"))), "at most once");
        assert!(
            !update("alice", "s1", 7).supersedes(Some((8, "evt_s1_8"))),
            "never back"
        );
    }

    #[test]
    fn tokens_come_from_the_subprotocol_header_or_the_query() {
        let header = |token| {
            Ok(Presented {
                token,
                in_subprotocol: true,
            })
        };
        let query = |token| {
            Ok(Presented {
                token,
                in_subprotocol: false,
            })
        };
        assert_eq!(
            presented_token(Some("didit-edge.v1, eyJ.a.b"), Some("access_token=other")),
            header("eyJ.a.b")
        );
        assert_eq!(
            presented_token(Some("eyJ.a.b,didit-edge.v1"), None),
            header("eyJ.a.b")
        );
        assert_eq!(
            presented_token(None, Some("risk=high&access_token=eyJ.q.r")),
            query("eyJ.q.r")
        );
        assert_eq!(
            presented_token(Some("chat, superchat"), Some("access_token=eyJ.q.r")),
            query("eyJ.q.r")
        );
        for (protocols, query) in [
            (None, None),
            (Some("didit-edge.v1"), Some("access_token=x")),
            (None, Some("access_token=")),
            (Some("chat"), None),
        ] {
            assert_eq!(
                presented_token(protocols, query),
                Err(Rejection::MissingToken),
                "{protocols:?} {query:?}"
            );
        }
    }

    #[test]
    fn a_channel_wakes_for_its_next_expiry_or_forgetting_never_in_a_tight_loop() {
        // A socket whose token expired at 5 s is closing; the next open one expires at 60 s.
        assert_eq!(next_alarm([5, 60], None, 1_000, 10_000), Some(60_000));
        assert_eq!(next_alarm([5], Some(9_000), 20_000, 10_000), Some(29_000));
        // Only closing sockets and an overdue status: soon, not at once.
        assert_eq!(next_alarm([5], Some(0), 1_000, 10_000), Some(11_000));
        assert_eq!(next_alarm([], None, 1_000, 10_000), None);
        let watch =
            Watch::new(grant("a", Scope::OwnEvents, None), AdminFilters::default()).expect("watch");
        assert!(watch.expired(0), "a grant with exp 0 is expired");
    }
}
