//! Which endpoint a request is for, from its method and path, and the query of its URL.

use crate::rejection::Rejection;

/// The endpoints the edge serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint<'p> {
    /// `POST /webhooks/didit`.
    DiditWebhook,
    /// `GET /healthz`.
    Health,
    /// `GET /admin/origins`: each origin's health (admin token required).
    AdminOrigins,
    /// `GET /admin/dead-letters`: the dead letters of every subject (admin token required).
    DeadLetters,
    /// `POST /admin/dead-letters/{id}/replay`: one event's dead letters go back in line.
    ReplayDeadLetter {
        /// The event id from the path.
        id: &'p str,
    },
    /// `POST /admin/dead-letters/replay`: every dead letter (optionally one consumer's).
    ReplayDeadLetters,
    /// `GET /v1/stream`: the real-time status stream (a WebSocket upgrade).
    Stream,
    /// `GET /admin/reconciliation`: where reconciliation with Didit's API stands.
    Reconciliation,
    /// `GET /admin/metrics`: delivery per origin over the last hour and day.
    AdminMetrics,
    /// `GET /admin/session`: the caller's role, for the console's sign-in.
    AdminSession,
    /// `POST /admin/stream-token`: a short-lived admin-scope token for the console's live feed.
    ConsoleStreamToken,
    /// `POST /admin/erasures`: erase what is stored about the subject its body names
    /// ([`crate::admin::erasure_request`]).
    Erase,
    /// `POST /admin/lookup`: the timelines of the events of the subject (or the event) its body
    /// names ([`crate::admin::lookup_request`]); reads only.
    Lookup,
    /// `GET /admin/didit/destinations`: Didit's webhook destinations and their health as
    /// Didit reports it ([`crate::didit_view`]).
    DiditDestinations,
    /// `POST /admin/didit/deliveries`: Didit's attempts for the session its body names (the
    /// lookup's body), beside the edge's timeline.
    DiditDeliveries,
}

/// Maps a method and path to an endpoint, or the rejection for it.
pub fn endpoint<'p>(method: &str, path: &'p str) -> Result<Endpoint<'p>, Rejection> {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    match path {
        "/webhooks/didit" if method == "POST" => Ok(Endpoint::DiditWebhook),
        "/webhooks/didit" => Err(Rejection::MethodNotAllowed { allow: "POST" }),
        "/healthz" if method == "GET" || method == "HEAD" => Ok(Endpoint::Health),
        "/healthz" => Err(Rejection::MethodNotAllowed { allow: "GET" }),
        "/admin/origins" if method == "GET" => Ok(Endpoint::AdminOrigins),
        "/admin/origins" => Err(Rejection::MethodNotAllowed { allow: "GET" }),
        "/admin/reconciliation" if method == "GET" => Ok(Endpoint::Reconciliation),
        "/admin/reconciliation" => Err(Rejection::MethodNotAllowed { allow: "GET" }),
        "/admin/metrics" if method == "GET" => Ok(Endpoint::AdminMetrics),
        "/admin/metrics" => Err(Rejection::MethodNotAllowed { allow: "GET" }),
        "/v1/stream" if method == "GET" => Ok(Endpoint::Stream),
        "/v1/stream" => Err(Rejection::MethodNotAllowed { allow: "GET" }),
        "/admin/dead-letters" if method == "GET" => Ok(Endpoint::DeadLetters),
        "/admin/dead-letters" => Err(Rejection::MethodNotAllowed { allow: "GET" }),
        "/admin/dead-letters/replay" if method == "POST" => Ok(Endpoint::ReplayDeadLetters),
        "/admin/dead-letters/replay" => Err(Rejection::MethodNotAllowed { allow: "POST" }),
        "/admin/session" if method == "GET" => Ok(Endpoint::AdminSession),
        "/admin/session" => Err(Rejection::MethodNotAllowed { allow: "GET" }),
        "/admin/stream-token" if method == "POST" => Ok(Endpoint::ConsoleStreamToken),
        "/admin/stream-token" => Err(Rejection::MethodNotAllowed { allow: "POST" }),
        "/admin/erasures" if method == "POST" => Ok(Endpoint::Erase),
        "/admin/erasures" => Err(Rejection::MethodNotAllowed { allow: "POST" }),
        "/admin/lookup" if method == "POST" => Ok(Endpoint::Lookup),
        "/admin/lookup" => Err(Rejection::MethodNotAllowed { allow: "POST" }),
        "/admin/didit/destinations" if method == "GET" => Ok(Endpoint::DiditDestinations),
        "/admin/didit/destinations" => Err(Rejection::MethodNotAllowed { allow: "GET" }),
        "/admin/didit/deliveries" if method == "POST" => Ok(Endpoint::DiditDeliveries),
        "/admin/didit/deliveries" => Err(Rejection::MethodNotAllowed { allow: "POST" }),
        _ => {
            // The path form could not name every id (URLs drop `..` and rewrite `%2F`).
            if path.starts_with("/admin/subjects/") {
                return Err(Rejection::Moved {
                    to: "POST /admin/erasures with {\"subject_kind\": …, \"subject_id\": …}",
                });
            }
            match path
                .strip_prefix("/admin/dead-letters/")
                .and_then(|rest| rest.strip_suffix("/replay"))
            {
                Some(id) if !id.is_empty() && !id.contains('/') => match method {
                    "POST" => Ok(Endpoint::ReplayDeadLetter { id }),
                    _ => Err(Rejection::MethodNotAllowed { allow: "POST" }),
                },
                _ => Err(Rejection::NotFound),
            }
        }
    }
}

/// The query of an absolute request URL, without the `?` and any fragment; `None` when it
/// has none. (The runtime hands over the URL as text; parsing it whole would bring a URL
/// parser and its Unicode tables into the worker for two query strings.)
pub fn query_of(url: &str) -> Option<&str> {
    let before_fragment = url.split_once('#').map_or(url, |(before, _)| before);
    before_fragment.split_once('?').map(|(_, query)| query)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn endpoints_and_methods() {
        assert_eq!(
            endpoint("POST", "/webhooks/didit"),
            Ok(Endpoint::DiditWebhook)
        );
        assert_eq!(
            endpoint("POST", "/webhooks/didit/"),
            Ok(Endpoint::DiditWebhook)
        );
        assert_eq!(
            endpoint("GET", "/webhooks/didit"),
            Err(Rejection::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(endpoint("GET", "/healthz"), Ok(Endpoint::Health));
        assert_eq!(endpoint("POST", "/nope"), Err(Rejection::NotFound));
        assert_eq!(
            endpoint("GET", "/admin/dead-letters/"),
            Ok(Endpoint::DeadLetters)
        );
        assert_eq!(endpoint("GET", "/v1/stream"), Ok(Endpoint::Stream));
        assert_eq!(
            endpoint("GET", "/admin/reconciliation"),
            Ok(Endpoint::Reconciliation)
        );
        assert_eq!(
            endpoint("POST", "/admin/reconciliation"),
            Err(Rejection::MethodNotAllowed { allow: "GET" })
        );
        assert_eq!(
            endpoint("GET", "/admin/metrics"),
            Ok(Endpoint::AdminMetrics)
        );
        assert_eq!(
            endpoint("GET", "/admin/didit/destinations"),
            Ok(Endpoint::DiditDestinations)
        );
        assert_eq!(
            endpoint("POST", "/admin/didit/deliveries"),
            Ok(Endpoint::DiditDeliveries)
        );
        assert_eq!(
            endpoint("GET", "/admin/didit/deliveries"),
            Err(Rejection::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(
            endpoint("DELETE", "/admin/metrics"),
            Err(Rejection::MethodNotAllowed { allow: "GET" })
        );
        assert_eq!(
            endpoint("POST", "/admin/dead-letters/replay"),
            Ok(Endpoint::ReplayDeadLetters)
        );
        assert_eq!(
            endpoint("POST", "/admin/dead-letters/evt_1/replay"),
            Ok(Endpoint::ReplayDeadLetter { id: "evt_1" })
        );
        assert_eq!(
            endpoint("GET", "/admin/dead-letters/evt_1/replay"),
            Err(Rejection::MethodNotAllowed { allow: "POST" })
        );
        for path in [
            "/admin/dead-letters//replay",
            "/admin/dead-letters/a/b/replay",
            "/admin/dead-letters/evt_1",
        ] {
            assert_eq!(endpoint("POST", path), Err(Rejection::NotFound), "{path}");
        }
        assert_eq!(endpoint("POST", "/"), Err(Rejection::NotFound));
        assert_eq!(endpoint("POST", "/admin/erasures"), Ok(Endpoint::Erase));
        assert_eq!(
            endpoint("GET", "/admin/session"),
            Ok(Endpoint::AdminSession)
        );
        assert_eq!(
            endpoint("GET", "/admin/stream-token"),
            Err(Rejection::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(
            endpoint("POST", "/admin/stream-token"),
            Ok(Endpoint::ConsoleStreamToken)
        );
        assert_eq!(
            endpoint("DELETE", "/admin/erasures"),
            Err(Rejection::MethodNotAllowed { allow: "POST" })
        );
        // The old path form answers where erasure went, whatever it names.
        for path in ["/admin/subjects/user/alice%2Fb", "/admin/subjects/user/"] {
            let moved = endpoint("DELETE", path).expect_err(path);
            assert_eq!((moved.status(), moved.code()), (410, "route_moved"));
        }
    }

    #[test]
    fn the_query_is_what_follows_the_question_mark_and_precedes_a_fragment() {
        assert_eq!(query_of("https://edge/v1/stream?a=1&b=2"), Some("a=1&b=2"));
        assert_eq!(query_of("https://edge/x?a=1#frag?no"), Some("a=1"));
        assert_eq!(query_of("https://edge/x?"), Some(""));
        assert_eq!(
            query_of("https://edge/x#a?b"),
            None,
            "a fragment holds no query"
        );
        assert_eq!(query_of("https://edge/x"), None);
    }
}
