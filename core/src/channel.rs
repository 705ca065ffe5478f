//! The rules of one status-stream channel (the `StatusStream` Durable Object): how much a
//! connect catches up on, how long statuses and spent tokens are kept, who is closed, and which
//! channels an erasure reaches. The object reads, writes and sends; it decides nothing itself.
//! ([`crate::stream`] says who sees what; this module says what a channel keeps and does.)

use alloc::string::String;
use alloc::vec::Vec;

use crate::config::{Feature, StreamConfig, DEFAULT_STREAM_STATUS_RETENTION_SECS};
use crate::rejection::Rejection;
use crate::stream::{user_channel, StatusUpdate, Watch, ADMIN_CHANNEL};
use crate::time::{UnixMs, UnixSecs};

/// Most current statuses a connection is sent on connect (the most recent ones it may see).
pub const SNAPSHOT_LIMIT: usize = 500;
/// Most statuses read to find them: a connect must not scan a day of every subject.
pub const SNAPSHOT_SCAN_LIMIT: u32 = 20_000;
/// Close code sent when the connection's token expires (an application code, 4000–4999).
pub const TOKEN_EXPIRED_CLOSE: u16 = 4001;

/// How long a channel remembers a subject's current status, in ms: `STREAM_STATUS_RETENTION_SECS`
/// while the stream is on; the default while it is off or broken (nothing is published then,
/// but what was remembered is still forgotten in time).
pub fn status_retention_ms(stream: &Feature<StreamConfig>) -> i64 {
    let secs = stream
        .on()
        .map_or(DEFAULT_STREAM_STATUS_RETENTION_SECS, |stream| {
            stream.status_retention_secs
        });
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The latest update time a status may have and be forgotten at `now`: one updated at `t` goes
/// once `t + retention` has come (when [`crate::stream::next_alarm`] wakes the channel for it).
pub fn forget_statuses_up_to(now: UnixMs, retention_ms: i64) -> UnixMs {
    UnixMs(now.0.saturating_sub(retention_ms))
}

/// The latest `exp` a spent token may have and be forgotten at `now`: an expired token is
/// refused by verification anyway, so its id need not be kept to refuse its reuse.
pub fn forget_tokens_up_to(now: UnixMs) -> UnixSecs {
    now.secs()
}

/// One connection per token: a token whose id (`jti`) opened a connection already is refused,
/// so a token that leaks after use opens nothing.
pub fn admit_token(already_used: bool) -> Result<(), Rejection> {
    match already_used {
        true => Err(Rejection::TokenReused),
        false => Ok(()),
    }
}

/// Whether the alarm closes a socket at `now` (with [`TOKEN_EXPIRED_CLOSE`]): its token has
/// expired, or its watch cannot be read, when what it may see cannot be checked either.
pub fn closes(watch: Option<&Watch>, now: UnixMs) -> bool {
    watch.is_none_or(|watch| watch.expired(now.0))
}

/// The close code to answer a peer's close with: its own, except 1005 and 1006 (which report a
/// close and may not be sent) and codes that are no close code, answered with 1000.
pub fn close_reply(code: usize) -> u16 {
    u16::try_from(code)
        .ok()
        .filter(|c| *c != 1005 && *c != 1006)
        .unwrap_or(1000)
}

/// The statuses a connection catches up on when it opens: the most recent ones it may see,
/// offered newest first, at most [`SNAPSHOT_LIMIT`], sent oldest first. Filters apply while
/// reading, so a narrow admin filter still finds its matches behind many newer statuses it
/// may not see.
#[derive(Debug)]
pub struct Catchup<'w> {
    watch: &'w Watch,
    admitted: Vec<String>,
    unreadable: u32,
}

impl<'w> Catchup<'w> {
    /// A catch-up for `watch`.
    pub fn new(watch: &'w Watch) -> Self {
        Self {
            watch,
            admitted: Vec::new(),
            unreadable: 0,
        }
    }

    /// Offers the next status (newer ones first): its `message` and stored `routing` (a
    /// [`StatusUpdate`] as JSON). A routing that cannot be read is not shown, since who may see
    /// it cannot be checked, and is counted ([`Catchup::finish`]). Returns whether more are
    /// wanted.
    pub fn offer(&mut self, message: String, routing: &str) -> bool {
        match crate::json::from_str::<StatusUpdate>(routing) {
            Ok(update) if self.watch.admits(&update) => self.admitted.push(message),
            Ok(_) => {}
            Err(_) => self.unreadable = self.unreadable.saturating_add(1),
        }
        self.admitted.len() < SNAPSHOT_LIMIT
    }

    /// The messages to send, oldest first, and how many statuses were left out unread.
    pub fn finish(mut self) -> (Vec<String>, u32) {
        self.admitted.reverse();
        (self.admitted, self.unreadable)
    }
}

/// The users whose channels also hold the statuses an erasure took from a channel, from those
/// statuses' stored routings, each once; and how many routings could not be read (their user,
/// if any, is unknown: the caller logs it, as those channels may still hold the status until
/// it is forgotten).
pub fn erased_users<'a>(routings: impl IntoIterator<Item = &'a str>) -> (Vec<String>, u32) {
    let mut users = Vec::new();
    let mut unreadable = 0u32;
    for routing in routings {
        match crate::json::from_str::<StatusUpdate>(routing) {
            Ok(update) => {
                if let Some(user) = update.vendor_data.filter(|user| !user.is_empty()) {
                    if !users.contains(&user) {
                        users.push(user);
                    }
                }
            }
            Err(_) => unreadable = unreadable.saturating_add(1),
        }
    }
    (users, unreadable)
}

/// One channel an erasure reaches, and what it takes there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelErasure {
    /// The channel.
    pub channel: String,
    /// With `Some(user)`, every status routed to that user goes too (not only the subject's).
    pub everything_of: Option<String>,
}

/// Where an erasure of a subject goes first: the admin channel, taking with a `user` subject
/// (`erased_user`) every status of that user. Its answer names the users to reach next
/// ([`user_erasures`]).
pub fn admin_erasure(erased_user: Option<&str>) -> ChannelErasure {
    ChannelErasure {
        channel: ADMIN_CHANNEL.into(),
        everything_of: erased_user.map(String::from),
    }
}

/// The user channels an erasure reaches after the admin channel, which named `holders`: every
/// holder's channel loses the subject's statuses, and an erased user's own channel loses
/// everything (it is reached even when the admin channel held nothing of theirs).
pub fn user_erasures(erased_user: Option<&str>, mut holders: Vec<String>) -> Vec<ChannelErasure> {
    if let Some(user) = erased_user {
        if !holders.iter().any(|holder| holder == user) {
            holders.push(user.into());
        }
    }
    holders
        .into_iter()
        .map(|user| ChannelErasure {
            channel: user_channel(&user),
            everything_of: (Some(user.as_str()) == erased_user).then_some(user),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::Level;
    use crate::stream::{next_alarm, AdminFilters};
    use crate::stream_token::{Grant, Scope, StreamTokenSecret};
    use alloc::format;
    use alloc::vec;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn update(user: &str, n: i64) -> StatusUpdate {
        StatusUpdate {
            event_id: format!("evt_{n}"),
            subject_kind: "session".into(),
            subject_id: format!("s{n}"),
            status_code: Some("approved".into()),
            risk_level: Level::Low,
            time: n,
            test: false,
            vendor_data: Some(user.into()),
            session_id: Some(format!("s{n}")),
            workflow_id: None,
            webhook_type: "status.updated".into(),
        }
    }

    fn watch(sub: &str, scope: Scope, exp: i64) -> Watch {
        Watch::new(
            Grant {
                sub: sub.into(),
                sessions: None,
                scope,
                jti: "j".into(),
                exp,
            },
            AdminFilters::default(),
        )
        .expect("watch")
    }

    #[test]
    fn a_connect_catches_up_on_the_newest_it_may_see_oldest_first_and_skips_the_unreadable() {
        let alice = watch("alice", Scope::OwnEvents, 10);
        let mut catchup = Catchup::new(&alice);
        // Newest first: bob's and an unreadable one are not shown.
        let routing = |u: &StatusUpdate| serde_json::to_string(u).expect("json");
        assert!(catchup.offer("a3".into(), &routing(&update("alice", 3))));
        assert!(catchup.offer("b2".into(), &routing(&update("bob", 2))));
        assert!(catchup.offer("x".into(), "{not json"));
        assert!(catchup.offer("a1".into(), &routing(&update("alice", 1))));
        assert_eq!(catchup.finish(), (vec!["a1".into(), "a3".into()], 1));

        let admin = watch("ops", Scope::Admin, 10);
        let mut catchup = Catchup::new(&admin);
        let text = routing(&update("bob", 1));
        let wanted: Vec<bool> = (0..SNAPSHOT_LIMIT)
            .map(|n| catchup.offer(format!("m{n}"), &text))
            .collect();
        assert!(wanted[..SNAPSHOT_LIMIT - 1].iter().all(|more| *more));
        assert!(!wanted[SNAPSHOT_LIMIT - 1], "full at {SNAPSHOT_LIMIT}");
        let (sent, _) = catchup.finish();
        assert_eq!(sent.first().map(String::as_str), Some("m499"));
        assert_eq!(SNAPSHOT_SCAN_LIMIT, 20_000);
    }

    #[test]
    fn statuses_are_kept_for_the_setting_or_the_default_and_forgotten_when_the_alarm_says() {
        assert_eq!(status_retention_ms(&Feature::Off), 86_400_000);
        assert_eq!(status_retention_ms(&Feature::Broken), 86_400_000);
        let on = Feature::On(StreamConfig {
            secret: StreamTokenSecret::parse("a-stream-secret-of-thirty-two-bytes!!").expect("key"),
            max_lifetime_secs: 3_600,
            audience: "didit-edge".into(),
            status_retention_secs: 60,
        });
        assert_eq!(status_retention_ms(&on), 60_000);
        // A status updated at 1 000 with a 60 s retention: the alarm comes at 61 000, and then
        // (not a millisecond before) it is forgotten.
        let wake = next_alarm([], Some(1_000), 60_000, 2_000).expect("a status to forget");
        assert_eq!(wake, 61_000);
        assert_eq!(forget_statuses_up_to(UnixMs(wake), 60_000), UnixMs(1_000));
        assert_eq!(forget_statuses_up_to(UnixMs(wake - 1), 60_000), UnixMs(999));
        assert_eq!(
            forget_statuses_up_to(UnixMs(5), i64::MAX),
            UnixMs(5 - i64::MAX)
        );
    }

    #[test]
    fn a_token_opens_one_connection_and_is_forgotten_once_expired() {
        assert_eq!(admit_token(false), Ok(()));
        assert_eq!(admit_token(true), Err(Rejection::TokenReused));
        assert_eq!(forget_tokens_up_to(UnixMs(10_999)), UnixSecs(10));
        let w = watch("a", Scope::OwnEvents, 10);
        assert!(!closes(Some(&w), UnixMs(9_999)));
        assert!(closes(Some(&w), UnixMs(10_000)));
        assert!(closes(None, UnixMs(0)), "an unreadable watch is closed");
    }

    #[test]
    fn a_close_is_answered_with_a_code_that_may_be_sent() {
        assert_eq!(close_reply(4001), 4001);
        assert_eq!(close_reply(1001), 1001);
        assert_eq!(close_reply(1005), 1000);
        assert_eq!(close_reply(1006), 1000);
        assert_eq!(close_reply(70_000), 1000);
    }

    #[test]
    fn an_erasure_reaches_every_channel_holding_the_subject() {
        let routings = [
            serde_json::to_string(&update("bob", 1)).expect("json"),
            serde_json::to_string(&update("bob", 2)).expect("json"),
            serde_json::to_string(&update("", 3)).expect("json"),
            String::from("{bad"),
        ];
        let (users, unreadable) = erased_users(routings.iter().map(String::as_str));
        assert_eq!((users, unreadable), (vec![String::from("bob")], 1));

        assert_eq!(admin_erasure(None).channel, "admin");
        assert_eq!(
            admin_erasure(Some("carol")).everything_of.as_deref(),
            Some("carol")
        );
        let session = user_erasures(None, vec!["bob".into()]);
        assert_eq!(
            session,
            [ChannelErasure {
                channel: "user:bob".into(),
                everything_of: None
            }]
        );
        let user = user_erasures(Some("carol"), vec!["bob".into()]);
        assert_eq!(
            user,
            [
                ChannelErasure {
                    channel: "user:bob".into(),
                    everything_of: None
                },
                ChannelErasure {
                    channel: "user:carol".into(),
                    everything_of: Some("carol".into())
                },
            ]
        );
        assert_eq!(
            user_erasures(Some("carol"), vec!["carol".into()]).len(),
            1,
            "once"
        );
    }
}
