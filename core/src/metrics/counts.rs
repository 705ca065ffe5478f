//! What one origin did in one bucket of time, and its text form in a flush and in a row.

use alloc::string::String;
use core::fmt;
use core::fmt::Write as _;

use super::histogram::{Histogram, LATENCY_BUCKETS};
use crate::attempt::AttemptResult;

/// One origin's attempts in one bucket of time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests sent to the origin.
    pub attempts: u64,
    /// Answered 2xx.
    pub delivered: u64,
    /// Answered otherwise: any non-2xx status, a redirect, an abort.
    pub refused: u64,
    /// No answer within the origin's timeout.
    pub timeouts: u64,
    /// The connection failed.
    pub network: u64,
    /// How long each attempt took, answered or not.
    pub latency: Histogram,
}

/// Why a stored or flushed count could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A number is missing or is not a number.
    NotANumber,
    /// More numbers than a count has.
    TooLong,
    /// A flushed line has no origin after its numbers.
    NoOrigin,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotANumber => "a metrics count is not a number",
            Self::TooLong => "a metrics count has too many numbers",
            Self::NoOrigin => "a metrics line names no origin",
        })
    }
}

/// Numbers before the histogram in the text form.
const HEAD: usize = 5;

impl Counts {
    /// Counts one attempt that ended in `result` after `latency_ms`.
    pub fn record(&mut self, result: &AttemptResult, latency_ms: u64) {
        self.attempts = self.attempts.saturating_add(1);
        let kind = match result {
            AttemptResult::Status(200..=299) => &mut self.delivered,
            AttemptResult::Status(_)
            | AttemptResult::Redirect { .. }
            | AttemptResult::Aborted(_) => &mut self.refused,
            AttemptResult::Timeout => &mut self.timeouts,
            AttemptResult::Network => &mut self.network,
        };
        *kind = kind.saturating_add(1);
        self.latency.record(latency_ms);
    }

    /// Adds another bucket's counts.
    pub fn merge(&mut self, other: &Self) {
        self.attempts = self.attempts.saturating_add(other.attempts);
        self.delivered = self.delivered.saturating_add(other.delivered);
        self.refused = self.refused.saturating_add(other.refused);
        self.timeouts = self.timeouts.saturating_add(other.timeouts);
        self.network = self.network.saturating_add(other.network);
        self.latency.merge(&other.latency);
    }

    /// The text form: the five counts then the histogram, space-separated (a row's `counts`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "{} {} {} {} {}",
            self.attempts, self.delivered, self.refused, self.timeouts, self.network
        );
        self.latency.write(&mut out);
        out
    }

    /// Reads [`Counts::encode`]'s form. Fewer histogram buckets than [`LATENCY_BUCKETS`] read
    /// as zeros, so a shorter histogram written before a change still reads.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let mut numbers = text
            .split_ascii_whitespace()
            .map(|word| word.parse::<u64>().map_err(|_| DecodeError::NotANumber));
        let mut head = [0u64; HEAD];
        for slot in head.iter_mut() {
            *slot = numbers.next().ok_or(DecodeError::NotANumber)??;
        }
        let mut latency = Histogram::default();
        for slot in latency.0.iter_mut() {
            match numbers.next() {
                Some(number) => *slot = number?,
                None => break,
            }
        }
        if numbers.next().is_some() {
            return Err(DecodeError::TooLong);
        }
        let [attempts, delivered, refused, timeouts, network] = head;
        Ok(Self {
            attempts,
            delivered,
            refused,
            timeouts,
            network,
            latency,
        })
    }

    /// How many numbers the text form has.
    pub const fn fields() -> usize {
        HEAD + LATENCY_BUCKETS
    }
}
