//! What the edge checks before it reads a body: route, method, media type and size.

use crate::rejection::Rejection;

/// The routes the edge serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'p> {
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
    /// `POST /admin/erasures`: erase what is stored about the subject its body names
    /// ([`crate::admin::erasure_request`]).
    Erase,
}

/// Maps a method and path to a route, or the rejection for it.
pub fn route<'p>(method: &str, path: &'p str) -> Result<Route<'p>, Rejection> {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    match path {
        "/webhooks/didit" if method == "POST" => Ok(Route::DiditWebhook),
        "/webhooks/didit" => Err(Rejection::MethodNotAllowed { allow: "POST" }),
        "/healthz" if method == "GET" || method == "HEAD" => Ok(Route::Health),
        "/healthz" => Err(Rejection::MethodNotAllowed { allow: "GET" }),
        "/admin/origins" if method == "GET" => Ok(Route::AdminOrigins),
        "/admin/origins" => Err(Rejection::MethodNotAllowed { allow: "GET" }),
        "/admin/reconciliation" if method == "GET" => Ok(Route::Reconciliation),
        "/admin/reconciliation" => Err(Rejection::MethodNotAllowed { allow: "GET" }),
        "/v1/stream" if method == "GET" => Ok(Route::Stream),
        "/v1/stream" => Err(Rejection::MethodNotAllowed { allow: "GET" }),
        "/admin/dead-letters" if method == "GET" => Ok(Route::DeadLetters),
        "/admin/dead-letters" => Err(Rejection::MethodNotAllowed { allow: "GET" }),
        "/admin/dead-letters/replay" if method == "POST" => Ok(Route::ReplayDeadLetters),
        "/admin/dead-letters/replay" => Err(Rejection::MethodNotAllowed { allow: "POST" }),
        "/admin/erasures" if method == "POST" => Ok(Route::Erase),
        "/admin/erasures" => Err(Rejection::MethodNotAllowed { allow: "POST" }),
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
                    "POST" => Ok(Route::ReplayDeadLetter { id }),
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

/// Checks the declared media type and length. A body without a declared length is still
/// bounded by the adapter while it streams it in (see [`BodyBudget`]).
pub fn check_body_headers(
    content_type: Option<&str>,
    content_length: Option<&str>,
    max_body_bytes: u64,
) -> Result<(), Rejection> {
    let media_type = content_type
        .and_then(|value| value.split(';').next())
        .map(str::trim);
    if !media_type.is_some_and(|t| t.eq_ignore_ascii_case("application/json")) {
        return Err(Rejection::UnsupportedMediaType);
    }
    if let Some(length) = content_length.and_then(|v| v.trim().parse::<u64>().ok()) {
        if length > max_body_bytes {
            return Err(Rejection::PayloadTooLarge {
                limit: max_body_bytes,
            });
        }
    }
    Ok(())
}

/// Counts streamed body bytes against the limit.
#[derive(Clone, Copy, Debug)]
pub struct BodyBudget {
    limit: u64,
    used: u64,
}

impl BodyBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Self { limit, used: 0 }
    }

    /// Takes a chunk; past the limit, reading must stop and the request be refused.
    pub fn take(&mut self, chunk_len: usize) -> Result<(), Rejection> {
        self.used = self.used.saturating_add(chunk_len as u64);
        if self.used > self.limit {
            Err(Rejection::PayloadTooLarge { limit: self.limit })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn routes_and_methods() {
        assert_eq!(route("POST", "/webhooks/didit"), Ok(Route::DiditWebhook));
        assert_eq!(route("POST", "/webhooks/didit/"), Ok(Route::DiditWebhook));
        assert_eq!(
            route("GET", "/webhooks/didit"),
            Err(Rejection::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(route("GET", "/healthz"), Ok(Route::Health));
        assert_eq!(route("POST", "/nope"), Err(Rejection::NotFound));
        assert_eq!(route("GET", "/admin/dead-letters/"), Ok(Route::DeadLetters));
        assert_eq!(route("GET", "/v1/stream"), Ok(Route::Stream));
        assert_eq!(
            route("GET", "/admin/reconciliation"),
            Ok(Route::Reconciliation)
        );
        assert_eq!(
            route("POST", "/admin/reconciliation"),
            Err(Rejection::MethodNotAllowed { allow: "GET" })
        );
        assert_eq!(
            route("POST", "/admin/dead-letters/replay"),
            Ok(Route::ReplayDeadLetters)
        );
        assert_eq!(
            route("POST", "/admin/dead-letters/evt_1/replay"),
            Ok(Route::ReplayDeadLetter { id: "evt_1" })
        );
        assert_eq!(
            route("GET", "/admin/dead-letters/evt_1/replay"),
            Err(Rejection::MethodNotAllowed { allow: "POST" })
        );
        for path in [
            "/admin/dead-letters//replay",
            "/admin/dead-letters/a/b/replay",
            "/admin/dead-letters/evt_1",
        ] {
            assert_eq!(route("POST", path), Err(Rejection::NotFound), "{path}");
        }
        assert_eq!(route("POST", "/"), Err(Rejection::NotFound));
        assert_eq!(route("POST", "/admin/erasures"), Ok(Route::Erase));
        assert_eq!(
            route("DELETE", "/admin/erasures"),
            Err(Rejection::MethodNotAllowed { allow: "POST" })
        );
        // The old path form answers where erasure went, whatever it names.
        for path in ["/admin/subjects/user/alice%2Fb", "/admin/subjects/user/"] {
            let moved = route("DELETE", path).expect_err(path);
            assert_eq!((moved.status(), moved.code()), (410, "route_moved"));
        }
    }

    #[test]
    fn body_headers() {
        assert!(
            check_body_headers(Some("application/json; charset=utf-8"), Some("10"), 10).is_ok()
        );
        assert!(check_body_headers(Some("Application/JSON"), None, 10).is_ok());
        assert_eq!(
            check_body_headers(Some("text/plain"), None, 10),
            Err(Rejection::UnsupportedMediaType)
        );
        assert_eq!(
            check_body_headers(None, None, 10),
            Err(Rejection::UnsupportedMediaType)
        );
        assert_eq!(
            check_body_headers(Some("application/json"), Some("11"), 10),
            Err(Rejection::PayloadTooLarge { limit: 10 })
        );
    }

    #[test]
    fn budget_stops_at_the_limit() {
        let mut budget = BodyBudget::new(10);
        assert!(budget.take(6).is_ok());
        assert!(budget.take(4).is_ok());
        assert_eq!(
            budget.take(1),
            Err(Rejection::PayloadTooLarge { limit: 10 })
        );
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
