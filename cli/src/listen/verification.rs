//! Standard Webhooks verification of what the edge forwards: the signature under any of the
//! signing secrets, in constant time, and the timestamp within the tolerance.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use didit_edge_core::mac::{tags_equal, HmacSha256, RustCrypto, Tag};
use didit_edge_core::secret::SigningSecrets;
use didit_edge_core::standard_webhooks;

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    MissingHeader(&'static str),
    BadTimestamp,
    Stale,
    Future,
    BadSignature,
}

impl Refusal {
    pub(super) fn code(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "missing_header",
            Self::BadTimestamp => "invalid_timestamp",
            Self::Stale => "stale_timestamp",
            Self::Future => "future_timestamp",
            Self::BadSignature => "invalid_signature",
        }
    }

    pub(super) fn message(&self) -> String {
        match self {
            Self::MissingHeader(name) => format!("no {name} header"),
            Self::BadTimestamp => "webhook-timestamp is not Unix seconds".into(),
            Self::Stale => "webhook-timestamp is too old".into(),
            Self::Future => "webhook-timestamp is in the future".into(),
            Self::BadSignature => "no webhook-signature matches the signing secret".into(),
        }
    }
}

/// Verifies a request per Standard Webhooks: HMAC-SHA256 of `"{id}.{timestamp}.{body}"` under
/// any of the secrets, against any of the space-separated `v1,<base64>` signatures, in
/// constant time; the timestamp within `tolerance_secs` of `now`.
pub(crate) fn verify(
    secrets: &SigningSecrets,
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), Refusal> {
    let id = id.ok_or(Refusal::MissingHeader("webhook-id"))?;
    let timestamp = timestamp.ok_or(Refusal::MissingHeader("webhook-timestamp"))?;
    let signature = signature.ok_or(Refusal::MissingHeader("webhook-signature"))?;
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Refusal::BadTimestamp)?;
    if sent < now.saturating_sub(tolerance_secs) {
        return Err(Refusal::Stale);
    }
    if sent > now.saturating_add(tolerance_secs) {
        return Err(Refusal::Future);
    }
    let message = standard_webhooks::signed_message(id, timestamp, body);
    let computed: Vec<Tag> = secrets
        .iter()
        .map(|secret| RustCrypto.tag(secret.key(), &message))
        .collect();
    let matched = signature
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .filter_map(|bytes| Tag::try_from(bytes.as_slice()).ok())
        .any(|claimed| computed.iter().any(|tag| tags_equal(tag, &claimed)));
    if matched {
        Ok(())
    } else {
        Err(Refusal::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1_614_265_330;

    fn secrets(list: &str) -> SigningSecrets {
        SigningSecrets::parse(list).expect("valid")
    }

    #[test]
    fn the_reference_vector_verifies_and_everything_else_is_refused() {
        let reference = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let check = |sig: &str, body: &[u8], now: i64| {
            verify(
                &secrets(SECRET),
                Some(ID),
                Some("1614265330"),
                Some(sig),
                body,
                now,
                300,
            )
        };
        assert_eq!(check(reference, BODY, TS), Ok(()));
        // Several signatures, the good one last (a rotation at the sender).
        assert_eq!(
            check(&format!("v1,AAAA v2,xyz {reference}"), BODY, TS),
            Ok(())
        );
        assert_eq!(
            check(reference, b"{\"test\": 1}", TS),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            check("v1,not-base64!", BODY, TS),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            check(&reference.replace("v1,", "v2,"), BODY, TS),
            Err(Refusal::BadSignature)
        );
        assert_eq!(check(reference, BODY, TS + 301), Err(Refusal::Stale));
        assert_eq!(check(reference, BODY, TS - 301), Err(Refusal::Future));
        assert_eq!(
            verify(
                &secrets(SECRET),
                None,
                Some("1"),
                Some(reference),
                BODY,
                TS,
                300
            ),
            Err(Refusal::MissingHeader("webhook-id"))
        );
        assert_eq!(
            verify(
                &secrets(SECRET),
                Some(ID),
                Some("soon"),
                Some(reference),
                BODY,
                TS,
                300
            ),
            Err(Refusal::BadTimestamp)
        );
    }

    #[test]
    fn any_secret_of_a_rotation_verifies_what_the_core_signs() {
        let old = "whsec_ZGlkaXQtZWRnZS1sb2NhbC1kZW1vLWtleS0wMDE=";
        let signed = standard_webhooks::sign(&secrets(old), ID, TS, BODY, &mut RustCrypto);
        let both = secrets(&format!("{SECRET},{old}"));
        assert_eq!(
            verify(
                &both,
                Some(&signed.id),
                Some(&signed.timestamp),
                Some(&signed.signature),
                BODY,
                TS,
                300
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                &secrets(SECRET),
                Some(&signed.id),
                Some(&signed.timestamp),
                Some(&signed.signature),
                BODY,
                TS,
                300
            ),
            Err(Refusal::BadSignature)
        );
    }
}
