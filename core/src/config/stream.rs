//! The status stream: the key its tokens are signed with, what a token may claim, and how long
//! the stream remembers each subject's status. Off without `STREAM_TOKEN_SECRET`; broken when
//! any of its settings is, even while the secret is unset.

use alloc::string::String;

use super::names;
use super::problem::Problem;
use super::reader::Reader;
use super::Feature;
use crate::stream_token::{StreamTokenSecret, DEFAULT_MAX_LIFETIME_SECS};

/// Default time the stream remembers a subject's current status: a day, so a page opened
/// after the verification still shows its answer.
pub const DEFAULT_STREAM_STATUS_RETENTION_SECS: u64 = 86_400;
/// Default `aud` of stream tokens, so a token minted for another service cannot open the stream.
pub const DEFAULT_STREAM_TOKEN_AUDIENCE: &str = "didit-edge";

/// The status stream's settings.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// The tokens' HS256 key.
    pub secret: StreamTokenSecret,
    /// Longest accepted token lifetime.
    pub max_lifetime_secs: u64,
    /// The `aud` every token must carry.
    pub audience: String,
    /// How long the stream remembers each subject's current status.
    pub status_retention_secs: u64,
}

pub(super) fn read_stream<F: Fn(&str) -> Option<String>>(
    reader: &mut Reader<F>,
) -> Feature<StreamConfig> {
    use names::*;
    let mark = reader.mark();
    let secret = reader.get(STREAM_TOKEN_SECRET).map(|text| {
        StreamTokenSecret::parse(&text)
            .map_err(|len| {
                reader.fail(
                    STREAM_TOKEN_SECRET,
                    Problem::TooShort {
                        len,
                        min: crate::stream_token::MIN_SECRET_LEN,
                    },
                );
            })
            .ok()
    });
    let max_lifetime_secs = reader.number(
        STREAM_TOKEN_MAX_LIFETIME_SECS,
        DEFAULT_MAX_LIFETIME_SECS,
        (10, 3_600),
    );
    let status_retention_secs = reader.number(
        STREAM_STATUS_RETENTION_SECS,
        DEFAULT_STREAM_STATUS_RETENTION_SECS,
        (1, 365 * 86_400),
    );
    let audience = reader
        .get(STREAM_TOKEN_AUDIENCE)
        .map(|text| String::from(text.trim()))
        .unwrap_or_else(|| DEFAULT_STREAM_TOKEN_AUDIENCE.into());
    if !is_name(&audience) {
        reader.fail(STREAM_TOKEN_AUDIENCE, Problem::NotAName);
    }
    match secret {
        None if reader.clean_since(mark) => Feature::Off,
        Some(Some(secret)) if reader.clean_since(mark) => Feature::On(StreamConfig {
            secret,
            max_lifetime_secs,
            audience,
            status_retention_secs,
        }),
        _ => Feature::Broken,
    }
}

/// A name-like setting: 1 to 128 letters, digits, `.`, `_`, `-` or `:`.
pub(super) fn is_name(text: &str) -> bool {
    (1..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}
