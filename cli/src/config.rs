//! Where secrets and settings come from (a flag, the environment, then `.dev.vars` in the
//! current directory), durations as people write them, the clock, random ids, and URLs made fit
//! to print.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Failure, Result};

/// The file `wrangler dev` reads local secrets from; looked for in the current directory.
pub(crate) const DEV_VARS: &str = ".dev.vars";

/// A `KEY=value` file as wrangler reads it: `#` comments, blank lines, optional quotes.
pub(crate) fn dev_var_in(text: &str, name: &str) -> Option<String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .filter(|(key, _)| {
            key.trim()
                .strip_prefix("export ")
                .unwrap_or(key.trim())
                .trim()
                == name
        })
        .map(|(_, value)| unquote(value.trim()).to_owned())
        .next_back()
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|rest| rest.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

/// `name` from `.dev.vars` in the current directory, if the file exists and sets it.
pub(crate) fn dev_var(name: &str) -> Option<String> {
    let text = std::fs::read_to_string(Path::new(DEV_VARS)).ok()?;
    dev_var_in(&text, name).filter(|value| !value.trim().is_empty())
}

/// An environment variable, if set and not blank.
pub(crate) fn env_var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// The first usable value among a flag, environment variables and `.dev.vars` entries. A list
/// (`a,b`) counts by its first entry, as `DIDIT_WEBHOOK_SECRETS` and `ORIGIN_SIGNING_SECRET`
/// list the newest secret first.
pub(crate) struct Lookup<'a> {
    pub(crate) flag: Option<&'a str>,
    pub(crate) env: &'a [&'a str],
    pub(crate) dev_vars: &'a [&'a str],
}

impl Lookup<'_> {
    pub(crate) fn find(&self) -> Option<String> {
        if let Some(flag) = self.flag.filter(|f| !f.trim().is_empty()) {
            return Some(flag.to_owned());
        }
        self.env
            .iter()
            .find_map(|name| env_var(name))
            .or_else(|| self.dev_vars.iter().find_map(|name| dev_var(name)))
    }

    /// Where a value may come from, for an error message.
    pub(crate) fn sources(&self, flag: &str) -> String {
        let mut sources = vec![flag.to_owned()];
        sources.extend(self.env.iter().map(|name| format!("${name}")));
        sources.extend(
            self.dev_vars
                .iter()
                .map(|name| format!("{name} in ./{DEV_VARS}")),
        );
        sources.join(", ")
    }
}

/// The first entry of a comma-separated list.
pub(crate) fn first_entry(list: &str) -> Option<String> {
    list.split(',')
        .map(str::trim)
        .find(|entry| !entry.is_empty())
        .map(str::to_owned)
}

/// Parses `3s`, `500ms`, `1.5s`, `2m`, `1h` or a plain number of seconds.
pub(crate) fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 500ms, 3s, 2m)"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit `{other}` (use ms, s, m or h)")),
    };
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=31_536_000.0).contains(&secs) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Now, in Unix seconds.
pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Random bytes from the operating system.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| Failure::usage(format!("no randomness from the operating system: {e}")))?;
    Ok(bytes)
}

/// A random (version 4) UUID, as Didit's ids are written.
pub(crate) fn uuid4() -> Result<String> {
    let mut bytes: [u8; 16] = random_bytes()?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// A URL fit to print: without user information or query, which may carry credentials.
pub(crate) fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let path = tail.split(['?', '#']).next().unwrap_or("");
    if scheme.is_empty() {
        format!("{host}{path}")
    } else {
        format!("{scheme}://{host}{path}")
    }
}

/// Checks a URL enough to give a usage error rather than a network one.
pub(crate) fn check_url(url: &str, schemes: &[&str]) -> Result<()> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some(scheme) if schemes.contains(&scheme.to_ascii_lowercase().as_str()) => {
            let rest = url.split_once("://").map_or("", |(_, rest)| rest);
            if rest.is_empty() || rest.starts_with('/') {
                return Err(Failure::usage(format!("`{}` has no host", redact_url(url))));
            }
            Ok(())
        }
        _ => Err(Failure::usage(format!(
            "`{}` is not a URL starting with {}",
            redact_url(url),
            schemes
                .iter()
                .map(|s| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(" or ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_vars_are_read_as_wrangler_writes_them() {
        let text =
            "# comment\nDIDIT_WEBHOOK_SECRETS=\"new,old\"\nORIGIN_SIGNING_SECRET='whsec_x'\n\
                    ORIGINS='[{\"a\":1}]'\nPLAIN = value \nexport EXPORTED=1\n";
        assert_eq!(
            dev_var_in(text, "DIDIT_WEBHOOK_SECRETS").as_deref(),
            Some("new,old")
        );
        assert_eq!(
            dev_var_in(text, "ORIGIN_SIGNING_SECRET").as_deref(),
            Some("whsec_x")
        );
        assert_eq!(dev_var_in(text, "ORIGINS").as_deref(), Some("[{\"a\":1}]"));
        assert_eq!(dev_var_in(text, "PLAIN").as_deref(), Some("value"));
        assert_eq!(dev_var_in(text, "EXPORTED").as_deref(), Some("1"));
        assert_eq!(dev_var_in(text, "MISSING"), None);
        assert_eq!(first_entry(" new , old").as_deref(), Some("new"));
    }

    #[test]
    fn durations_read_as_written() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 fortnights").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn urls_print_without_credentials() {
        assert_eq!(
            redact_url("https://user:pw@edge.example:8443/admin?token=x#f"),
            "https://edge.example:8443/admin"
        );
        assert_eq!(redact_url("http://127.0.0.1:8787"), "http://127.0.0.1:8787");
        assert!(check_url("http://127.0.0.1:1/x", &["http", "https"]).is_ok());
        assert!(check_url("127.0.0.1:1", &["http", "https"]).is_err());
        assert!(check_url("http://", &["http", "https"]).is_err());
        assert!(check_url("ws://h/x", &["http", "https"]).is_err());
    }

    #[test]
    fn uuids_are_version_4() {
        let id = uuid4().expect("randomness");
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(id, uuid4().expect("randomness"));
    }
}
