//! One delivery from Didit, from bytes to a named event, then to a classified one.
//!
//! The order of checks is deliberate: authenticity first, so an unauthenticated sender learns
//! nothing about what the edge would accept; then the fields the edge needs; then freshness,
//! judged on the body's `timestamp` (which every signature covers) and on `X-Timestamp` when
//! present, both bounded in both directions.
//!
//! Naming an event ([`Intake::identify`]) needs no configuration but the secrets and the
//! freshness window, so an authentic delivery can be stored even while the rest of the
//! configuration is broken. Classifying it ([`Identified::classify`]: risk, consumers, the
//! CloudEvent) needs the risk rules and origins; when they are broken it waits in the inbox,
//! which classifies it later from the stored body ([`Identified::recall`]).
//!
//! The request side lives here: [`Incoming`] and [`Intake`], which authenticate a delivery and
//! judge its freshness. What it becomes is in two modules beside it: `identified`, which names
//! an event from a body however it came (a webhook now, a stored one later, one built from
//! Didit's API), and `classify`, the one step that needs the delivery settings.
//!
//! ```text
//! let intake = Intake::new(incoming, allow_simple)?;       // which messages to authenticate
//! let verified = intake.verify_with(&secrets, &mut mac)?;  // or answer intake.challenges() async
//! let identified = intake.identify(verified, now, tolerance_secs)?;
//! let classified = identified.classify(&policy)?;          // or later, from the stored body
//! ```

mod classify;
mod identified;

use alloc::string::ToString;

pub use classify::{Classified, ClassifyPolicy};
pub use identified::Identified;

use crate::envelope::{Envelope, EnvelopeError};
use crate::mac::HmacSha256;
use crate::rejection::Rejection;
use crate::secret::WebhookSecrets;
use crate::verify::{self, ChallengeTiers, Provenance, SignatureHeaders, Verified, VerifyError};

/// A webhook request as received: the body and the headers that sign it.
#[derive(Clone, Copy, Debug)]
pub struct Incoming<'a> {
    /// The body bytes exactly as received.
    pub body: &'a [u8],
    /// The signature headers.
    pub headers: SignatureHeaders<'a>,
    /// `X-Didit-Test-Webhook: true` was sent.
    pub test_header: bool,
}

/// A delivery being checked.
#[derive(Debug)]
pub struct Intake<'a> {
    incoming: Incoming<'a>,
    envelope: Result<Envelope<'a>, EnvelopeError>,
    challenges: ChallengeTiers<'a>,
}

impl<'a> Intake<'a> {
    /// Reads the delivery and lists what must be authenticated.
    pub fn new(incoming: Incoming<'a>, allow_simple: bool) -> Result<Self, Rejection> {
        let envelope = Envelope::parse(incoming.body);
        let challenges = verify::challenges(
            incoming.body,
            &incoming.headers,
            envelope.as_ref().ok(),
            allow_simple,
        )
        .map_err(rejection_of)?;
        Ok(Self {
            incoming,
            envelope,
            challenges,
        })
    }

    /// The messages to MAC, tier by tier in order of preference; stop at the first match.
    pub fn challenges(&self) -> ChallengeTiers<'a> {
        self.challenges.clone()
    }

    /// Authenticates synchronously with `mac`.
    pub fn verify_with(
        &self,
        secrets: &WebhookSecrets,
        mac: &mut impl HmacSha256,
    ) -> Result<Verified, Rejection> {
        verify::answer(self.challenges.clone(), secrets, mac).map_err(rejection_of)
    }

    /// Checks the fields and freshness of an authenticated delivery and names its event.
    /// `now` is Unix seconds.
    pub fn identify(
        self,
        verified: Verified,
        now: i64,
        tolerance_secs: u64,
    ) -> Result<Identified<'a>, Rejection> {
        let envelope = match self.envelope {
            Ok(envelope) => envelope,
            Err(EnvelopeError::Malformed(_) | EnvelopeError::NotUtf8) => {
                return Err(Rejection::MalformedJson)
            }
            Err(EnvelopeError::Invalid(error)) => {
                return Err(Rejection::InvalidPayload {
                    reason: error.to_string(),
                })
            }
        };
        let timestamp = envelope
            .timestamp
            .ok_or(Rejection::MissingField { field: "timestamp" })?;
        check_freshness(timestamp, now, tolerance_secs)?;
        if let Some(header) = self.incoming.headers.timestamp {
            let header_ts = header
                .trim()
                .parse::<i64>()
                .map_err(|_| Rejection::InvalidTimestampHeader)?;
            check_freshness(header_ts, now, tolerance_secs)?;
        }
        let test = self.incoming.test_header;
        Identified::name(
            self.incoming.body,
            envelope,
            Provenance::Signed(verified),
            test,
            now,
        )
    }
}

fn check_freshness(timestamp: i64, now: i64, tolerance_secs: u64) -> Result<(), Rejection> {
    let skew = i128::from(now) - i128::from(timestamp);
    let tolerance = i128::from(tolerance_secs);
    if skew > tolerance {
        Err(Rejection::StaleTimestamp {
            age_secs: u64::try_from(skew).unwrap_or(u64::MAX),
        })
    } else if -skew > tolerance {
        Err(Rejection::FutureTimestamp {
            ahead_secs: u64::try_from(-skew).unwrap_or(u64::MAX),
        })
    } else {
        Ok(())
    }
}

fn rejection_of(error: VerifyError) -> Rejection {
    match error {
        VerifyError::MissingSignature => Rejection::MissingSignature,
        VerifyError::SimpleSignatureNotAllowed => Rejection::SimpleSignatureNotAllowed,
        VerifyError::SignatureMismatch => Rejection::InvalidSignature,
    }
}

#[cfg(test)]
mod tests;
