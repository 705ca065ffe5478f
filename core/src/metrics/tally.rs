//! One isolate's attempts since its last flush, and the flush's text form.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;

use super::counts::{Counts, DecodeError};
use super::windows::bucket_of;
use crate::attempt::AttemptResult;
use crate::time::UnixMs;

/// Most (origin, bucket) pairs an isolate holds between flushes: a flush is one line per pair,
/// so this bounds the request that carries it (a few KiB); attempts past it are not counted.
pub const MAX_PENDING: usize = 64;

/// Counts per origin and bucket, waiting for the next flush. A list searched in order rather
/// than a map: it holds a few pairs (an isolate's origins, one or two buckets), and a map of a
/// new key type would be another copy of the map's code in the upload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pending: Vec<(String, i64, Counts)>,
}

/// One line of a flush, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flushed {
    /// The origin.
    pub origin: String,
    /// Where its bucket starts.
    pub bucket: UnixMs,
    /// What it did in the bucket.
    pub counts: Counts,
}

impl Tally {
    /// Nothing counted.
    pub const fn new() -> Self {
        Self {
            pending: Vec::new(),
        }
    }

    /// Counts one attempt on `origin` that ended at `now` in `result` after `latency_ms`. A
    /// name with a line break cannot be carried by a flush and is not counted.
    pub fn record(&mut self, origin: &str, result: &AttemptResult, latency_ms: u64, now: UnixMs) {
        if origin.bytes().any(|byte| byte == b'\n' || byte == b'\r') {
            return;
        }
        let bucket = bucket_of(now).0;
        let full = self.pending.len() >= MAX_PENDING;
        let held = self
            .pending
            .iter_mut()
            .find(|(name, at, _)| name == origin && *at == bucket);
        match held {
            Some((_, _, counts)) => counts.record(result, latency_ms),
            None if !full => {
                let mut counts = Counts::default();
                counts.record(result, latency_ms);
                self.pending.push((origin.into(), bucket, counts));
            }
            None => {}
        }
    }

    /// The flush of everything counted, which is forgotten here (a flush that fails loses it);
    /// `None` when nothing was. One line per origin and bucket, in the order first counted: the bucket's start, the counts
    /// ([`Counts::encode`]), a tab, the origin.
    pub fn take(&mut self) -> Option<String> {
        if self.pending.is_empty() {
            return None;
        }
        let mut out = String::new();
        for (origin, bucket, counts) in core::mem::take(&mut self.pending) {
            let _ = writeln!(out, "{bucket} {}\t{origin}", counts.encode());
        }
        Some(out)
    }
}

/// Reads one line of a flush ([`Tally::take`]; its `lines()`, empty ones skipped by the
/// caller). Line by line, so the reader stores each as it goes and builds no list.
pub fn parse_line(line: &str) -> Result<Flushed, DecodeError> {
    let (numbers, origin) = line.split_once('\t').ok_or(DecodeError::NoOrigin)?;
    if origin.is_empty() {
        return Err(DecodeError::NoOrigin);
    }
    let (bucket, counts) = numbers.split_once(' ').ok_or(DecodeError::NotANumber)?;
    Ok(Flushed {
        origin: origin.into(),
        bucket: UnixMs(bucket.parse().map_err(|_| DecodeError::NotANumber)?),
        counts: Counts::decode(counts)?,
    })
}
