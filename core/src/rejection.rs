//! Every way a request is turned away, with its HTTP status and stable machine-readable code,
//! and the receipts of accepted deliveries. The adapter writes these as they are.

use alloc::string::String;
use core::fmt;
use serde::Serialize;

/// Why a request was refused. Nothing is stored or forwarded for any of these.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// No route at this path.
    NotFound,
    /// The route exists but not for this method; the allowed method is given.
    MethodNotAllowed {
        /// The method the route takes.
        allow: &'static str,
    },
    /// The body is not declared as JSON.
    UnsupportedMediaType,
    /// The body is larger than `MAX_BODY_BYTES`; refused before it is all read.
    PayloadTooLarge {
        /// The configured limit in bytes.
        limit: u64,
    },
    /// No Didit signature header is present.
    MissingSignature,
    /// Only `X-Signature-Simple` was sent and it is not accepted.
    SimpleSignatureNotAllowed,
    /// No signature matches any configured secret.
    InvalidSignature,
    /// `X-Timestamp` is present but is not Unix seconds.
    InvalidTimestampHeader,
    /// The delivery's timestamp is older than the tolerance allows.
    StaleTimestamp {
        /// How many seconds old it is.
        age_secs: u64,
    },
    /// The delivery's timestamp is further in the future than the tolerance allows.
    FutureTimestamp {
        /// How many seconds ahead it is.
        ahead_secs: u64,
    },
    /// The body is not well-formed JSON.
    MalformedJson,
    /// The body is JSON but not a Didit webhook object (wrong shape or field types).
    InvalidPayload {
        /// What is wrong, from the parser.
        reason: String,
    },
    /// A field the edge needs is missing.
    MissingField {
        /// The field, or the list of fields of which one is needed.
        field: &'static str,
    },
    /// Configuration is missing or invalid; the names of the bad settings are given.
    Misconfigured {
        /// Setting names only, never values.
        settings: String,
    },
    /// Durable storage could not take the event, so it must not be acknowledged.
    StorageUnavailable,
    /// No key of the Access team is held and its keys URL did not answer (or did moments
    /// ago): an Access sign-in cannot be checked for now.
    AccessKeysUnavailable,
    /// The admin API was called without the right `Authorization: Bearer` token.
    Unauthorized {
        /// Which part was wrong (never the token).
        reason: &'static str,
    },
    /// A read-only caller (`ADMIN_READ_TOKEN`, or an Access identity that is no operator)
    /// asked for what only an operator may do (replay, erasure).
    OperatorRequired,
    /// A state-changing call authenticated by Cloudflare Access without the console's header
    /// or from another site: the Access cookie rides along on cross-site requests.
    CrossSite,
    /// The Cloudflare Access assertion was refused.
    Access(crate::access::AccessError),
    /// `GET /v1/stream` without a token (in `Sec-WebSocket-Protocol` or `access_token`).
    MissingToken,
    /// The stream token was refused.
    Token(crate::stream_token::TokenError),
    /// The stream token has already opened a connection.
    TokenReused,
    /// The token's grant and the connect filters take more than a connection can carry;
    /// nothing was spent, a smaller token will do.
    WatchTooLarge {
        /// How many bytes they would take.
        bytes: usize,
        /// How many a connection carries.
        max: usize,
    },
    /// `GET /v1/stream` without `Upgrade: websocket`.
    UpgradeRequired,
    /// The stream is off: `STREAM_TOKEN_SECRET` is not set.
    StreamOff,
    /// A valid token that does not allow what was asked.
    Forbidden {
        /// What it does not allow.
        reason: &'static str,
    },
    /// An admin call named an event that is not a dead letter (never was, was already
    /// replayed, or its retention ended).
    DeadLetterNotFound,
    /// An admin call's query string is not understood.
    InvalidQuery {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `DIDIT_SOURCE_IPS` is set and the delivery came from another address.
    ForbiddenSource,
    /// An erasure names no subject: not the documented body, an unknown kind, or an id that
    /// is blank or too long.
    InvalidSubject {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A lookup's subject has nothing in its inbox: never seen, or everything about it has
    /// reached the end of its retention (an erasure leaves a mark, which is found).
    SubjectNotFound,
    /// A lookup's event is not among its subject's, or (by id alone) not a dead letter: only
    /// the dead-letter index maps an event id to its subject.
    EventNotFound,
    /// Didit's view of its webhooks could not be read from its API.
    Didit(crate::didit_view::DiditViewError),
    /// A route that moved: the message says where.
    Moved {
        /// The route to use instead.
        to: &'static str,
    },
}

impl Rejection {
    /// The HTTP status. 5xx only where a retry by Didit can succeed.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound
            | Self::DeadLetterNotFound
            | Self::SubjectNotFound
            | Self::EventNotFound => 404,
            Self::Moved { .. } => 410,
            Self::MethodNotAllowed { .. } => 405,
            Self::UnsupportedMediaType => 415,
            Self::PayloadTooLarge { .. } => 413,
            Self::MissingSignature
            | Self::SimpleSignatureNotAllowed
            | Self::InvalidSignature
            | Self::InvalidTimestampHeader
            | Self::StaleTimestamp { .. }
            | Self::FutureTimestamp { .. }
            | Self::Unauthorized { .. } => 401,
            Self::MalformedJson
            | Self::InvalidPayload { .. }
            | Self::MissingField { .. }
            | Self::InvalidQuery { .. }
            | Self::InvalidSubject { .. }
            | Self::WatchTooLarge { .. } => 400,
            Self::Forbidden { .. }
            | Self::OperatorRequired
            | Self::CrossSite
            | Self::Access(crate::access::AccessError::NotListed)
            | Self::ForbiddenSource
            | Self::Token(crate::stream_token::TokenError::UnknownScope) => 403,
            Self::Access(crate::access::AccessError::Keys) => 503,
            Self::MissingToken | Self::Token(_) | Self::TokenReused | Self::Access(_) => 401,
            Self::UpgradeRequired => 426,
            Self::Didit(error) => error.status(),
            Self::StreamOff => 404,
            Self::Misconfigured { .. } | Self::StorageUnavailable | Self::AccessKeysUnavailable => {
                503
            }
        }
    }

    /// The stable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::MissingSignature => "missing_signature",
            Self::SimpleSignatureNotAllowed => "simple_signature_not_allowed",
            Self::InvalidSignature => "invalid_signature",
            Self::InvalidTimestampHeader => "invalid_timestamp_header",
            Self::StaleTimestamp { .. } => "stale_timestamp",
            Self::FutureTimestamp { .. } => "future_timestamp",
            Self::MalformedJson => "malformed_json",
            Self::InvalidPayload { .. } => "invalid_payload",
            Self::MissingField { .. } => "missing_field",
            Self::Misconfigured { .. } => "configuration_error",
            Self::StorageUnavailable => "storage_unavailable",
            Self::AccessKeysUnavailable => "access_keys_unavailable",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } | Self::Token(crate::stream_token::TokenError::UnknownScope) => {
                "insufficient_scope"
            }
            Self::OperatorRequired => "operator_required",
            Self::CrossSite => "cross_site_request",
            Self::Access(crate::access::AccessError::NotListed) => "access_not_allowed",
            Self::Access(_) => "invalid_access_assertion",
            Self::MissingToken => "missing_token",
            Self::Token(crate::stream_token::TokenError::Expired) => "token_expired",
            Self::Token(_) => "invalid_token",
            Self::TokenReused => "token_reused",
            Self::WatchTooLarge { .. } => "token_too_large",
            Self::UpgradeRequired => "upgrade_required",
            Self::StreamOff => "stream_off",
            Self::DeadLetterNotFound => "dead_letter_not_found",
            Self::InvalidQuery { .. } => "invalid_query",
            Self::InvalidSubject { .. } => "invalid_subject",
            Self::SubjectNotFound => "subject_not_found",
            Self::EventNotFound => "event_not_found",
            Self::Moved { .. } => "route_moved",
            Self::Didit(error) => error.code(),
            Self::ForbiddenSource => "forbidden_source",
        }
    }

    /// The response body: `{"error":{"code":…,"message":…}}`.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: String,
        }
        let body = Body {
            error: Inner {
                code: self.code(),
                message: alloc::format!("{self}"),
            },
        };
        serde_json::to_string(&body).unwrap_or_default()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("no such route"),
            Self::MethodNotAllowed { allow } => write!(f, "this route only takes {allow}"),
            Self::UnsupportedMediaType => f.write_str("content-type must be application/json"),
            Self::PayloadTooLarge { limit } => write!(f, "body is larger than {limit} bytes"),
            Self::MissingSignature => {
                f.write_str("no X-Signature, X-Signature-V2 or X-Signature-Simple header")
            }
            Self::SimpleSignatureNotAllowed => f.write_str(
                "X-Signature-Simple alone does not cover the payload and is not accepted here",
            ),
            Self::InvalidSignature => f.write_str("signature does not match"),
            Self::InvalidTimestampHeader => f.write_str("X-Timestamp is not Unix seconds"),
            Self::StaleTimestamp { age_secs } => {
                write!(
                    f,
                    "timestamp is {age_secs} s old, outside the accepted window"
                )
            }
            Self::FutureTimestamp { ahead_secs } => {
                write!(
                    f,
                    "timestamp is {ahead_secs} s in the future, outside the accepted window"
                )
            }
            Self::MalformedJson => f.write_str("body is not valid JSON"),
            Self::InvalidPayload { reason } => write!(f, "body is not a Didit webhook: {reason}"),
            Self::MissingField { field } => write!(f, "missing field: {field}"),
            Self::Misconfigured { settings } => {
                write!(
                    f,
                    "receiver is misconfigured ({settings}); the delivery was not stored"
                )
            }
            Self::StorageUnavailable => {
                f.write_str("durable storage is unavailable; the delivery was not stored")
            }
            Self::AccessKeysUnavailable => f.write_str(
                "the Access team's keys could not be fetched; sign-in through Access works again once they can",
            ),
            Self::Unauthorized { reason } => f.write_str(reason),
            Self::Forbidden { reason } => f.write_str(reason),
            Self::OperatorRequired => {
                f.write_str("only an operator may do this; this sign-in is read-only")
            }
            Self::CrossSite => f.write_str(
                "a change signed in through Cloudflare Access must come from the console (same origin, with its header)",
            ),
            Self::Access(error) => write!(f, "{error}"),
            Self::ForbiddenSource => f.write_str(
                "deliveries are accepted only from the addresses in DIDIT_SOURCE_IPS",
            ),
            Self::MissingToken => f.write_str(
                "no token: send `Sec-WebSocket-Protocol: didit-edge.v1, <token>` (or `access_token`)",
            ),
            Self::Token(error) => write!(f, "{error}"),
            Self::TokenReused => f.write_str("this token has already opened a connection"),
            Self::WatchTooLarge { bytes, max } => write!(
                f,
                "the token's claims and filters take {bytes} bytes; a connection carries at most {max} (list fewer sessions)"
            ),
            Self::UpgradeRequired => f.write_str("this route takes a WebSocket upgrade"),
            Self::StreamOff => f.write_str("the status stream is off (STREAM_TOKEN_SECRET is not set)"),
            Self::DeadLetterNotFound => f.write_str(
                "no dead letter has this id (never dead, already replayed, or past its retention)",
            ),
            Self::InvalidQuery { reason } | Self::InvalidSubject { reason } => f.write_str(reason),
            Self::SubjectNotFound => f.write_str(
                "nothing is kept about this subject (never seen, or past its retention)",
            ),
            Self::EventNotFound => f.write_str(
                "no such event: not among the subject's events, or, looked up by id alone, not a dead letter (give the subject too)",
            ),
            Self::Moved { to } => write!(f, "this route has moved: use {to}"),
            Self::Didit(error) => write!(f, "{error}"),
        }
    }
}

impl core::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn rejections_render_as_error_objects() {
        let json = Rejection::PayloadTooLarge { limit: 10 }.to_json();
        let value: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(value["error"]["code"], "payload_too_large");
        assert_eq!(value["error"]["message"], "body is larger than 10 bytes");
        assert_eq!(Rejection::StorageUnavailable.status(), 503);
        assert_eq!(Rejection::StaleTimestamp { age_secs: 1 }.status(), 401);
        assert_eq!(Rejection::MissingField { field: "timestamp" }.status(), 400);
    }
}
