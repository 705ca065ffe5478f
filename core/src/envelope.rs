//! The few fields of a Didit payload the edge needs, read into a typed, borrowed struct.
//!
//! Everything else (the decision, which can be hundreds of KB) is skipped by the parser rather
//! than built into a `Value`, and is carried onward as the original bytes. Unknown fields are
//! ignored: Didit adds fields over time. A known text field of an unexpected type is read
//! leniently (a number as its digits, anything else as absent) rather than refusing the body:
//! Didit does not retry a 400, so a strict reading would lose an authentic event for a field
//! the edge does not even need.

use alloc::borrow::Cow;
use core::fmt;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::lenient::{scalars_yield, skip_seq};

/// The top-level fields of any Didit webhook body, all optional at this layer; which ones an
/// event needs is decided by [`crate::identity`] and [`crate::intake`].
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Envelope<'a> {
    /// `status.updated`, `user.status.updated`, …
    #[serde(borrow, deserialize_with = "lenient_text")]
    pub webhook_type: Option<Cow<'a, str>>,
    /// When Didit created this webhook, in Unix seconds (covered by every signature).
    #[serde(deserialize_with = "unix_seconds")]
    pub timestamp: Option<i64>,
    /// Didit's own id for the webhook; stable or per attempt depending on the source.
    #[serde(borrow, deserialize_with = "lenient_text")]
    pub event_id: Option<Cow<'a, str>>,
    /// The verification session (KYC, or KYB with `session_kind: "business"`).
    #[serde(borrow, deserialize_with = "lenient_text")]
    pub session_id: Option<Cow<'a, str>>,
    /// `"business"` for KYB sessions.
    #[serde(borrow, deserialize_with = "lenient_text")]
    pub session_kind: Option<Cow<'a, str>>,
    /// The KYB business session.
    #[serde(borrow, deserialize_with = "lenient_text")]
    pub business_session_id: Option<Cow<'a, str>>,
    /// The transaction of `transaction.*` events.
    #[serde(borrow, deserialize_with = "lenient_text")]
    pub transaction_id: Option<Cow<'a, str>>,
    /// The integrator's own user id; also the key of User entities.
    #[serde(borrow, deserialize_with = "lenient_text")]
    pub vendor_data: Option<Cow<'a, str>>,
    /// The integrator's own business id; the key of Business entities.
    #[serde(borrow, deserialize_with = "lenient_text")]
    pub vendor_business_id: Option<Cow<'a, str>>,
    /// Didit's internal id of an entity, used when no integrator id is present.
    #[serde(borrow, deserialize_with = "lenient_text")]
    pub uuid: Option<Cow<'a, str>>,
    /// The status as Didit wrote it (`Approved`, `FLAGGED`, …).
    #[serde(borrow, deserialize_with = "lenient_text")]
    pub status: Option<Cow<'a, str>>,
    /// The status before this change, for entity events.
    #[serde(borrow, deserialize_with = "lenient_text")]
    pub previous_status: Option<Cow<'a, str>>,
    /// The workflow the session ran.
    #[serde(borrow, deserialize_with = "lenient_text")]
    pub workflow_id: Option<Cow<'a, str>>,
    /// The Didit application that sent the webhook.
    #[serde(borrow, deserialize_with = "lenient_text")]
    pub application_id: Option<Cow<'a, str>>,
    /// `live` or `sandbox`.
    #[serde(borrow, deserialize_with = "lenient_text")]
    pub environment: Option<Cow<'a, str>>,
    /// Only `metadata.test_webhook` is read; the rest of the metadata travels in the payload.
    pub metadata: MetadataFlags,
    /// The per-feature results, kept as raw JSON until [`crate::normalize`] reads them.
    #[serde(borrow)]
    pub decision: Option<&'a RawValue>,
    /// What a `Resubmitted` session must redo, carried as Didit wrote it.
    #[serde(borrow)]
    pub resubmit_info: Option<&'a RawValue>,
}

/// What the edge reads from `metadata`, which is otherwise the integrator's own free-form data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetadataFlags {
    /// `metadata.test_webhook: true` marks a delivery sent from Didit's console tester.
    pub test_webhook: bool,
}

/// Why a body could not be read as a Didit envelope.
#[derive(Debug)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The body is not well-formed JSON.
    Malformed(serde_json::Error),
    /// The body is not UTF-8, so not JSON at all.
    NotUtf8,
    /// The body is JSON, but not an object, or a known field has the wrong type.
    Invalid(serde_json::Error),
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(error) => write!(f, "body is not valid JSON: {error}"),
            Self::NotUtf8 => f.write_str("body is not valid JSON: it is not UTF-8"),
            Self::Invalid(error) => write!(f, "body is not a Didit webhook object: {error}"),
        }
    }
}

impl core::error::Error for EnvelopeError {}

impl<'a> Envelope<'a> {
    /// Reads the envelope; the body must be exactly one JSON object.
    pub fn parse(body: &'a [u8]) -> Result<Self, EnvelopeError> {
        // JSON is UTF-8 (RFC 8259); read as text, every JSON the edge parses goes through one
        // copy of serde_json's parser (its `StrRead`) instead of one per input type.
        let body = core::str::from_utf8(body).map_err(|_| EnvelopeError::NotUtf8)?;
        // serde would read an array as the struct's fields in order, and lenient text fields
        // would take its numbers: an array is never an envelope.
        if body.trim_ascii_start().starts_with('[') {
            return Err(match crate::json::from_str::<IgnoredAny>(body) {
                Err(error) => EnvelopeError::Malformed(error),
                Ok(_) => EnvelopeError::Invalid(de::Error::custom("expected a JSON object")),
            });
        }
        crate::json::from_str(body).map_err(|error| match error.classify() {
            serde_json::error::Category::Data => EnvelopeError::Invalid(error),
            _ => EnvelopeError::Malformed(error),
        })
    }

    /// Whether Didit marked this as a console test delivery, in the body (the header is judged
    /// by the adapter and combined in [`crate::intake`]).
    pub fn is_test(&self) -> bool {
        self.metadata.test_webhook
    }
}

impl<'de> Deserialize<'de> for MetadataFlags {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FlagsVisitor;
        impl<'de> Visitor<'de> for FlagsVisitor {
            type Value = MetadataFlags;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MetadataFlags, A::Error> {
                let mut flags = MetadataFlags::default();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "test_webhook" {
                        flags.test_webhook = map.next_value::<TruthyFlag>()?.0;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(flags)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<MetadataFlags, A::Error> {
                skip_seq(seq).map(|()| MetadataFlags::default())
            }
            scalars_yield!(MetadataFlags, MetadataFlags::default());
        }
        deserializer.deserialize_any(FlagsVisitor)
    }
}

/// `true` or `"true"` (any case) is a flag that is set; every other value is not.
struct TruthyFlag(bool);

impl<'de> Deserialize<'de> for TruthyFlag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TruthyVisitor;
        impl<'de> Visitor<'de> for TruthyVisitor {
            type Value = TruthyFlag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, value: bool) -> Result<TruthyFlag, E> {
                Ok(TruthyFlag(value))
            }
            fn visit_str<E>(self, value: &str) -> Result<TruthyFlag, E> {
                Ok(TruthyFlag(value.eq_ignore_ascii_case("true")))
            }
            fn visit_i64<E>(self, _: i64) -> Result<TruthyFlag, E> {
                Ok(TruthyFlag(false))
            }
            fn visit_u64<E>(self, _: u64) -> Result<TruthyFlag, E> {
                Ok(TruthyFlag(false))
            }
            fn visit_f64<E>(self, _: f64) -> Result<TruthyFlag, E> {
                Ok(TruthyFlag(false))
            }
            fn visit_unit<E>(self) -> Result<TruthyFlag, E> {
                Ok(TruthyFlag(false))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TruthyFlag, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(TruthyFlag(false))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<TruthyFlag, A::Error> {
                skip_seq(seq).map(|()| TruthyFlag(false))
            }
        }
        deserializer.deserialize_any(TruthyVisitor)
    }
}

/// A text field read leniently: a string as it is (borrowed when it has no escapes), a number
/// as its digits, and `null`, a boolean, an object or an array as absent.
fn lenient_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct TextVisitor;
    impl<'de> Visitor<'de> for TextVisitor {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(value)))
        }
        fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(value.into())))
        }
        fn visit_string<E>(self, value: alloc::string::String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(value)))
        }
        fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(alloc::format!("{value}"))))
        }
        fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(alloc::format!("{value}"))))
        }
        fn visit_f64<E>(self, value: f64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(alloc::format!("{value}"))))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            skip_seq(seq).map(|()| None)
        }
    }
    deserializer.deserialize_any(TextVisitor)
}

/// Didit writes `timestamp` as Unix seconds; an older entity envelope wrote RFC 3339. Both are
/// accepted, as are whole floats and digit strings. `null` counts as absent.
fn unix_seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    struct SecondsVisitor;
    impl<'de> Visitor<'de> for SecondsVisitor {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Unix seconds or an RFC 3339 date-time")
        }
        fn visit_unit<E>(self) -> Result<Option<i64>, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Option<i64>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<i64>, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_i64<E: de::Error>(self, value: i64) -> Result<Option<i64>, E> {
            Ok(Some(value))
        }
        fn visit_u64<E: de::Error>(self, value: u64) -> Result<Option<i64>, E> {
            i64::try_from(value)
                .map(Some)
                .map_err(|_| E::custom("timestamp out of range"))
        }
        fn visit_f64<E: de::Error>(self, value: f64) -> Result<Option<i64>, E> {
            if value.is_finite() && value.abs() < 1e15 {
                Ok(Some(value as i64))
            } else {
                Err(E::custom("timestamp out of range"))
            }
        }
        fn visit_str<E: de::Error>(self, value: &str) -> Result<Option<i64>, E> {
            value
                .trim()
                .parse::<i64>()
                .ok()
                .or_else(|| crate::time::parse_rfc3339(value.trim()))
                .map(Some)
                .ok_or_else(|| E::custom("timestamp is neither Unix seconds nor RFC 3339"))
        }
    }
    deserializer.deserialize_any(SecondsVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn reads_the_fields_and_skips_the_rest() {
        let body = br#"{"session_id":"s-1","status":"Approved","webhook_type":"status.updated",
            "timestamp":1700000000,"vendor_data":"user-\u00e9","decision":{"big":[1,2,3]},
            "metadata":{"test_webhook":true,"other":{"x":1}},"new_field_from_didit":[null]}"#;
        let envelope = Envelope::parse(body).expect("valid envelope");
        assert_eq!(envelope.session_id.as_deref(), Some("s-1"));
        assert_eq!(envelope.vendor_data.as_deref(), Some("user-\u{e9}"));
        assert_eq!(envelope.timestamp, Some(1_700_000_000));
        assert!(envelope.is_test());
    }

    #[test]
    fn timestamp_forms() {
        let read = |json: &str| Envelope::parse(json.as_bytes()).map(|e| e.timestamp).ok();
        assert_eq!(
            read(r#"{"timestamp":1700000000.0}"#),
            Some(Some(1_700_000_000))
        );
        assert_eq!(
            read(r#"{"timestamp":"1700000000"}"#),
            Some(Some(1_700_000_000))
        );
        assert_eq!(
            read(r#"{"timestamp":"2023-11-14T22:13:20Z"}"#),
            Some(Some(1_700_000_000))
        );
        assert_eq!(read(r#"{"timestamp":null}"#), Some(None));
        assert_eq!(read(r#"{}"#), Some(None));
        assert_eq!(read(r#"{"timestamp":"soon"}"#), None);
    }

    #[test]
    fn metadata_of_any_shape_is_tolerated() {
        for (json, test) in [
            (r#"{"metadata":null}"#, false),
            (r#"{"metadata":"free text"}"#, false),
            (r#"{"metadata":[1,{"test_webhook":true}]}"#, false),
            (r#"{"metadata":{"test_webhook":"TRUE"}}"#, true),
            (r#"{"metadata":{"test_webhook":{"nested":true}}}"#, false),
        ] {
            let envelope = Envelope::parse(json.as_bytes()).expect(json);
            assert_eq!(envelope.is_test(), test, "{json}");
        }
    }

    #[test]
    fn tells_malformed_from_invalid() {
        assert!(matches!(
            Envelope::parse(b"{\"a\":"),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::parse(b"not json"),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::parse(b"[1,2]"),
            Err(EnvelopeError::Invalid(_))
        ));
        assert!(matches!(
            Envelope::parse(br#"{"timestamp":true}"#),
            Err(EnvelopeError::Invalid(_))
        ));
    }

    #[test]
    fn text_fields_of_another_type_are_read_leniently() {
        let envelope = Envelope::parse(
            br#"{"session_id":5,"vendor_data":4.5,"workflow_id":{"id":"w"},"status":["x"],
                "previous_status":true,"event_id":null,"uuid":"a\"b"}"#,
        )
        .expect("lenient");
        assert_eq!(envelope.session_id.as_deref(), Some("5"));
        assert_eq!(envelope.vendor_data.as_deref(), Some("4.5"));
        assert_eq!(envelope.workflow_id, None);
        assert_eq!(envelope.status, None);
        assert_eq!(envelope.previous_status, None);
        assert_eq!(envelope.event_id, None);
        assert_eq!(envelope.uuid.as_deref(), Some("a\"b"));
    }
}
