//! The small messages between the worker and its objects, written as a JSON array of their
//! fields' texts (`null` for an absent one) in the order each type lists them.
//!
//! A derived `Deserialize` compiles a struct visitor, a field-name visitor and serde_json's
//! struct reader for every message type, about two KiB of WebAssembly each that every isolate
//! loads. Here every message is read by one deserializer (`Vec<Option<String>>`) and written
//! by one serializer, and each type only says which field goes where. The worker and its
//! objects are one deploy, so both sides always agree on the order; a message that does not
//! fit its type is refused like malformed JSON. Core types that travel this way (a health
//! report, an inbox's erasure and replay answers) ride in a newtype of this module.

use std::str::FromStr;
use std::vec;

use didit_edge_core::admin::{DeadLetterKey, LookupAsk};
use didit_edge_core::health::Report;
use didit_edge_core::inbox::Erasure;
use didit_edge_core::time::UnixMs;
use serde::de::{self, Deserialize, Deserializer};
use serde::ser::{self, Serialize, Serializer};

use crate::alerts::Enqueue;
use crate::dead_letters::{Changes, DeadLetter, Inboxes, Query};
use crate::health::Reported;
use crate::inbox::{KnowsRequest, ReplayRequest};
use crate::reconciler::{ForgetRequest, Forgotten};
use crate::stream::{EraseRequest, Erased};

/// A message's fields as read, taken from the first.
struct Fields(vec::IntoIter<Option<String>>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Option<String>>::deserialize(deserializer).map(|fields| Self(fields.into_iter()))
    }
}

impl Fields {
    /// The next field, which may be absent.
    fn optional(&mut self) -> Option<String> {
        self.0.next().flatten()
    }

    /// The next field, which must be there.
    fn text<E: de::Error>(&mut self) -> Result<String, E> {
        self.optional()
            .ok_or_else(|| E::custom("a message lacks a field"))
    }

    /// The next field, a number.
    fn number<T: FromStr, E: de::Error>(&mut self) -> Result<T, E> {
        self.text::<E>()?
            .parse()
            .map_err(|_| E::custom("a message field is not a number"))
    }

    /// The next field, a number that may be absent.
    fn optional_number<T: FromStr, E: de::Error>(&mut self) -> Result<Option<T>, E> {
        self.optional()
            .map(|text| text.parse())
            .transpose()
            .map_err(|_| E::custom("a message field is not a number"))
    }

    /// Every field left (a list as the last field).
    fn rest(self) -> Vec<String> {
        self.0.flatten().collect()
    }
}

/// Writes `fields` as a message.
fn write<S: Serializer>(fields: &[Option<String>], serializer: S) -> Result<S::Ok, S::Error> {
    fields.serialize(serializer)
}

impl Serialize for ReplayRequest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        write(&[self.id.clone(), self.consumer.clone()], serializer)
    }
}

impl<'de> Deserialize<'de> for ReplayRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Fields::deserialize(deserializer)?;
        Ok(Self {
            id: fields.optional(),
            consumer: fields.optional(),
        })
    }
}

/// A lookup's question to an inbox.
pub(crate) struct LookupCall(pub LookupAsk);

impl Serialize for LookupCall {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        write(
            &[Some(self.0.subject_kind.clone()), self.0.event_id.clone()],
            serializer,
        )
    }
}

impl<'de> Deserialize<'de> for LookupCall {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Fields::deserialize(deserializer)?;
        Ok(Self(LookupAsk {
            subject_kind: fields.text()?,
            event_id: fields.optional(),
        }))
    }
}

impl Serialize for KnowsRequest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        write(
            &[Some(self.webhook_type.clone()), Some(self.status.clone())],
            serializer,
        )
    }
}

impl<'de> Deserialize<'de> for KnowsRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Fields::deserialize(deserializer)?;
        Ok(Self {
            webhook_type: fields.text()?,
            status: fields.text()?,
        })
    }
}

impl Serialize for ForgetRequest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        write(
            &[
                Some(self.subject_kind.clone()),
                Some(self.subject_id.clone()),
            ],
            serializer,
        )
    }
}

impl<'de> Deserialize<'de> for ForgetRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Fields::deserialize(deserializer)?;
        Ok(Self {
            subject_kind: fields.text()?,
            subject_id: fields.text()?,
        })
    }
}

impl Serialize for Forgotten {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        write(&[Some(self.sessions.to_string())], serializer)
    }
}

impl<'de> Deserialize<'de> for Forgotten {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Fields::deserialize(deserializer)?;
        Ok(Self {
            sessions: fields.number()?,
        })
    }
}

impl Serialize for EraseRequest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        write(
            &[Some(self.subject.clone()), self.vendor_data.clone()],
            serializer,
        )
    }
}

impl<'de> Deserialize<'de> for EraseRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Fields::deserialize(deserializer)?;
        Ok(Self {
            subject: fields.text()?,
            vendor_data: fields.optional(),
        })
    }
}

impl Serialize for Erased {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = vec![Some(self.statuses.to_string())];
        fields.extend(self.vendor_data.iter().cloned().map(Some));
        write(&fields, serializer)
    }
}

impl<'de> Deserialize<'de> for Erased {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Fields::deserialize(deserializer)?;
        Ok(Self {
            statuses: fields.number()?,
            vendor_data: fields.rest(),
        })
    }
}

impl Serialize for Query {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        write(
            &[
                self.id.clone(),
                self.consumer.clone(),
                Some(self.limit.to_string()),
                Some(self.after.to_string()),
            ],
            serializer,
        )
    }
}

impl<'de> Deserialize<'de> for Query {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Fields::deserialize(deserializer)?;
        Ok(Self {
            id: fields.optional(),
            consumer: fields.optional(),
            limit: fields.number()?,
            after: fields.number()?,
        })
    }
}

impl Serialize for Inboxes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = vec![Some(self.total.to_string())];
        fields.extend(self.inboxes.iter().cloned().map(Some));
        write(&fields, serializer)
    }
}

impl<'de> Deserialize<'de> for Inboxes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Fields::deserialize(deserializer)?;
        Ok(Self {
            total: fields.number()?,
            inboxes: fields.rest(),
        })
    }
}

/// What a replay put back in line, as an inbox answers it: each key's id and consumer.
pub(crate) struct Replays(pub Vec<DeadLetterKey>);

impl Serialize for Replays {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields: Vec<Option<String>> = self
            .0
            .iter()
            .flat_map(|key| [Some(key.id.clone()), Some(key.consumer.clone())])
            .collect();
        write(&fields, serializer)
    }
}

impl<'de> Deserialize<'de> for Replays {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Fields::deserialize(deserializer)?;
        let mut keys = Vec::new();
        while let Some(id) = fields.optional() {
            keys.push(DeadLetterKey {
                id,
                consumer: fields.text()?,
            });
        }
        Ok(Self(keys))
    }
}

/// What an erasure removed from an inbox, as the inbox answers it.
pub(crate) struct InboxErasure(pub Erasure);

impl Serialize for InboxErasure {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Self(erasure) = self;
        write(
            &[
                Some(erasure.events.to_string()),
                Some(erasure.payloads.to_string()),
                Some(erasure.pending_deliveries.to_string()),
                Some(erasure.dead_letters.to_string()),
            ],
            serializer,
        )
    }
}

impl<'de> Deserialize<'de> for InboxErasure {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Fields::deserialize(deserializer)?;
        Ok(Self(Erasure {
            events: fields.number()?,
            payloads: fields.number()?,
            pending_deliveries: fields.number()?,
            dead_letters: fields.number()?,
        }))
    }
}

impl Serialize for Changes {
    /// The count of new dead letters, each dead letter's fields (its attempts as one JSON
    /// text, read as the index stores it), then the keys to unlist.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = vec![Some(self.put.len().to_string())];
        for letter in &self.put {
            let attempts = serde_json::to_string(&letter.attempts).map_err(ser::Error::custom)?;
            fields.extend([
                Some(letter.id.clone()),
                Some(letter.consumer.clone()),
                Some(letter.subject.clone()),
                Some(letter.webhook_type.clone()),
                Some(letter.reason.clone()),
                Some(letter.received_at_ms.to_string()),
                Some(letter.dead_at_ms.to_string()),
                letter.replayable_until_ms.map(|ms| ms.to_string()),
                Some(attempts),
            ]);
        }
        for key in &self.remove {
            fields.extend([Some(key.id.clone()), Some(key.consumer.clone())]);
        }
        write(&fields, serializer)
    }
}

impl<'de> Deserialize<'de> for Changes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Fields::deserialize(deserializer)?;
        let count: usize = fields.number()?;
        let mut changes = Self::default();
        for _ in 0..count {
            changes.put.push(DeadLetter {
                id: fields.text()?,
                consumer: fields.text()?,
                subject: fields.text()?,
                webhook_type: fields.text()?,
                reason: fields.text()?,
                received_at_ms: fields.number()?,
                dead_at_ms: fields.number()?,
                replayable_until_ms: fields.optional_number()?,
                attempts: didit_edge_core::json::from_str(&fields.text::<D::Error>()?)
                    .map_err(de::Error::custom)?,
            });
        }
        while let Some(id) = fields.optional() {
            changes.remove.push(DeadLetterKey {
                id,
                consumer: fields.text()?,
            });
        }
        Ok(changes)
    }
}

impl Serialize for Reported {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Self(report) = self;
        write(
            &[
                Some(report.origin.clone()),
                Some(report.up.to_string()),
                report.retry_after_ms.map(|ms| ms.to_string()),
                Some(report.at_ms.0.to_string()),
                // Last, and only when set: an older isolate's four fields read as a delivery's.
                report.probe.then(|| "probe".into()),
            ],
            serializer,
        )
    }
}

impl<'de> Deserialize<'de> for Reported {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Fields::deserialize(deserializer)?;
        Ok(Self(Report {
            origin: fields.text()?,
            up: fields.number()?,
            retry_after_ms: fields.optional_number()?,
            at_ms: UnixMs(fields.number()?),
            probe: fields.optional().is_some(),
        }))
    }
}

impl Serialize for Enqueue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields: Vec<Option<String>> = self
            .alerts
            .iter()
            .flat_map(|(id, body)| [Some(id.clone()), Some(body.clone())])
            .collect();
        write(&fields, serializer)
    }
}

impl<'de> Deserialize<'de> for Enqueue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = Fields::deserialize(deserializer)?;
        let mut alerts = Vec::new();
        while let Some(id) = fields.optional() {
            alerts.push((id, fields.text()?));
        }
        Ok(Self { alerts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back_what_they_wrote() {
        let replay = ReplayRequest {
            id: None,
            consumer: Some("crm \"main\"".into()),
        };
        let text = serde_json::to_string(&replay).expect("json");
        assert_eq!(text, r#"[null,"crm \"main\""]"#);
        let read: ReplayRequest = serde_json::from_str(&text).expect("reads");
        assert_eq!((read.id, read.consumer), (replay.id, replay.consumer));

        let erased = Erased {
            statuses: 3,
            vendor_data: vec!["u1".into(), "u2".into()],
        };
        let read: Erased =
            serde_json::from_str(&serde_json::to_string(&erased).expect("json")).expect("reads");
        assert_eq!((read.statuses, read.vendor_data), (3, erased.vendor_data));

        let query = Query {
            id: Some("evt_1".into()),
            consumer: None,
            limit: 50,
            after: -1,
        };
        let read: Query =
            serde_json::from_str(&serde_json::to_string(&query).expect("json")).expect("reads");
        assert_eq!(
            (read.id, read.consumer, read.limit, read.after),
            (query.id, None, 50, -1)
        );
    }

    #[test]
    fn index_changes_read_back_what_they_wrote() {
        let letter = DeadLetter {
            id: "evt_1".into(),
            consumer: "crm".into(),
            subject: "session:s1".into(),
            webhook_type: "status.updated".into(),
            reason: "retries_exhausted".into(),
            received_at_ms: 1,
            dead_at_ms: 2,
            replayable_until_ms: None,
            attempts: Vec::new(),
        };
        let changes = Changes {
            put: vec![letter],
            remove: vec![DeadLetterKey {
                id: "evt_0".into(),
                consumer: "crm".into(),
            }],
        };
        let text = serde_json::to_string(&changes).expect("json");
        let read: Changes = serde_json::from_str(&text).expect("reads");
        assert_eq!((read.put, read.remove), (changes.put, changes.remove));
    }

    #[test]
    fn alerts_travel_as_id_and_body_pairs() {
        let queued = Enqueue {
            alerts: vec![("a1".into(), "{}".into()), ("a2".into(), "[]".into())],
        };
        let read: Enqueue =
            serde_json::from_str(&serde_json::to_string(&queued).expect("json")).expect("reads");
        assert_eq!(read.alerts, queued.alerts);
        assert!(serde_json::from_str::<Enqueue>(r#"["a1"]"#).is_err());
    }

    #[test]
    fn answers_and_reports_read_back_what_they_wrote() {
        let report = Report {
            origin: "crm".into(),
            up: false,
            retry_after_ms: Some(30_000),
            at_ms: UnixMs(1_700_000_000_000),
            probe: false,
        };
        let text = serde_json::to_string(&Reported(report.clone())).expect("json");
        let Reported(read) = serde_json::from_str(&text).expect("reads");
        assert_eq!(read, report);
        let probe = Report {
            probe: true,
            ..report
        };
        let text = serde_json::to_string(&Reported(probe.clone())).expect("json");
        let Reported(read) = serde_json::from_str(&text).expect("reads");
        assert_eq!(read, probe);
        let Reported(older) =
            serde_json::from_str(r#"["crm","true",null,"1"]"#).expect("an older isolate's four");
        assert!(!older.probe);

        let keys = vec![DeadLetterKey {
            id: "evt_1".into(),
            consumer: "crm".into(),
        }];
        let text = serde_json::to_string(&Replays(keys.clone())).expect("json");
        let Replays(read) = serde_json::from_str(&text).expect("reads");
        assert_eq!(read, keys);

        let erasure = Erasure {
            events: 3,
            payloads: 2,
            pending_deliveries: 1,
            dead_letters: 0,
        };
        let text = serde_json::to_string(&InboxErasure(erasure)).expect("json");
        let InboxErasure(read) = serde_json::from_str(&text).expect("reads");
        assert_eq!(read, erasure);
    }

    #[test]
    fn a_message_short_of_fields_or_with_a_bad_number_is_refused() {
        assert!(serde_json::from_str::<KnowsRequest>(r#"["status.updated"]"#).is_err());
        assert!(serde_json::from_str::<Forgotten>(r#"["one"]"#).is_err());
        assert!(serde_json::from_str::<Query>(r#"[null,null,"50"]"#).is_err());
        assert!(serde_json::from_str::<ForgetRequest>(r#"{"subject_kind":"user"}"#).is_err());
    }
}
