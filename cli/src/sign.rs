//! `didit-edge sign`: a correctly signed Didit delivery, printed as JSON, as a curl command or
//! as the bare body. The payload and signing flags are shared with `send`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use crate::config::{self, Lookup};
use crate::didit::{
    self, Failing, PayloadSpec, PayloadVersion, SignOptions, SignatureKind, V2Form,
};
use crate::error::{Failure, Result};

/// The default webhook URL of a local `wrangler dev`.
pub(crate) const LOCAL_WEBHOOK_URL: &str = "http://127.0.0.1:8787/webhooks/didit";

/// What is delivered: a generated payload (the default) or a file's bytes.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Payload")]
pub(crate) struct PayloadArgs {
    /// Didit's `webhook_type`: status.updated, data.updated, user.status.updated,
    /// user.data.updated, business.status.updated, business.data.updated, activity.created,
    /// transaction.created, transaction.status.updated (any other string is sent as a session
    /// event of that type)
    #[arg(
        long = "type",
        value_name = "WEBHOOK_TYPE",
        default_value = "status.updated"
    )]
    pub(crate) webhook_type: String,
    /// The status: approved, declined, in-review, in-progress, not-started, awaiting-user,
    /// resubmitted, abandoned, expired, kyc-expired; for user/business events active, flagged,
    /// blocked; for transactions pending, approved, declined (written as Didit writes it;
    /// anything else is sent as typed) [default: approved, declined with --fail, flagged for
    /// *.status.updated entities, pending for transaction.created]
    #[arg(long)]
    pub(crate) status: Option<String>,
    /// `previous_status` of user/business status events [default: active, or flagged when the
    /// status is active]
    #[arg(long = "previous-status", value_name = "STATUS")]
    pub(crate) previous_status: Option<String>,
    /// The payload version the decision is written in
    #[arg(long = "payload-version", value_enum, default_value = "v3")]
    pub(crate) payload_version: PayloadVersion,
    /// Features that fail in a declined or in-review session (comma-separated); implies
    /// --status declined unless a status is given
    #[arg(
        long = "fail",
        value_enum,
        value_delimiter = ',',
        value_name = "FEATURE"
    )]
    pub(crate) failing: Vec<Failing>,
    /// A KYB business session (session_kind "business") instead of a KYC one
    #[arg(long)]
    pub(crate) kyb: bool,
    /// A test delivery as Didit's console sends it: `X-Didit-Test-Webhook: true` and
    /// `metadata.test_webhook: true` (with --body, only the header)
    #[arg(long)]
    pub(crate) test: bool,
    /// `session_id` [default: a random UUID]
    #[arg(long = "session-id", value_name = "ID")]
    pub(crate) session_id: Option<String>,
    /// `vendor_data`, your user id [default: user-42]
    #[arg(long = "vendor-data", value_name = "USER")]
    pub(crate) vendor_data: Option<String>,
    /// `vendor_business_id` of business events and KYB sessions [default: acme-de]
    #[arg(long = "business-id", value_name = "ID")]
    pub(crate) business_id: Option<String>,
    /// `transaction_id` of transaction events [default: a random UUID]
    #[arg(long = "transaction-id", value_name = "ID")]
    pub(crate) transaction_id: Option<String>,
    /// Didit's `event_id` [default: a random UUID]
    #[arg(long = "event-id", value_name = "ID")]
    pub(crate) event_id: Option<String>,
    /// The body's `timestamp`, Unix seconds [default: now]
    #[arg(long, value_name = "UNIX_SECS", allow_negative_numbers = true)]
    pub(crate) timestamp: Option<i64>,
    /// Set a top-level field last: KEY=JSON (a value that is not JSON is taken as a string);
    /// repeatable
    #[arg(long = "set", value_name = "KEY=JSON", value_parser = parse_set)]
    pub(crate) set: Vec<(String, Value)>,
    /// Send this file's bytes exactly as they are instead of a generated payload
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "webhook_type", "status", "previous_status", "payload_version", "failing", "kyb",
        "session_id", "vendor_data", "business_id", "transaction_id", "event_id", "timestamp", "set",
    ])]
    pub(crate) body: Option<PathBuf>,
}

/// The payload flags that `--resend` cannot take (it sends the stored body).
pub(crate) const PAYLOAD_FLAGS: [&str; 14] = [
    "webhook_type",
    "status",
    "previous_status",
    "payload_version",
    "failing",
    "kyb",
    "session_id",
    "vendor_data",
    "business_id",
    "transaction_id",
    "event_id",
    "timestamp",
    "set",
    "body",
];

fn parse_set(text: &str) -> std::result::Result<(String, Value), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not KEY=JSON"))?;
    if key.trim().is_empty() {
        return Err(format!("`{text}` has no key"));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((key.trim().to_owned(), value))
}

/// How a delivery is signed.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Signing")]
pub(crate) struct SigningArgs {
    /// Didit's webhook secret [default: $DIDIT_WEBHOOK_SECRET, else the first of
    /// $DIDIT_WEBHOOK_SECRETS, else the first of DIDIT_WEBHOOK_SECRETS in ./.dev.vars]
    #[arg(long, value_name = "SECRET")]
    pub(crate) secret: Option<String>,
    /// The signature headers to send, comma-separated: raw (X-Signature), v2 (X-Signature-V2),
    /// simple (X-Signature-Simple), or none [default: all three, as Didit sends them, less any
    /// the body cannot carry]
    #[arg(long, value_enum, value_delimiter = ',', value_name = "KIND")]
    pub(crate) signatures: Option<Vec<SignatureKind>>,
    /// How X-Signature-V2's canonical JSON writes non-ASCII text [default: escaped]
    #[arg(long = "v2-form", value_enum)]
    pub(crate) v2_form: Option<V2Form>,
    /// Sign "{X-Timestamp}:{canonical JSON}" for X-Signature-V2 (Didit's agent-skill variant)
    #[arg(long = "v2-timestamp-prefix")]
    pub(crate) v2_timestamp_prefix: bool,
    /// X-Timestamp, Unix seconds [default: the body's timestamp]
    #[arg(
        long = "x-timestamp",
        value_name = "UNIX_SECS",
        allow_negative_numbers = true
    )]
    pub(crate) x_timestamp: Option<i64>,
}

impl SigningArgs {
    /// Didit's webhook secret from the flag, the environment or `.dev.vars`.
    pub(crate) fn secret(&self) -> Result<String> {
        let lookup = Lookup {
            flag: self.secret.as_deref(),
            env: &["DIDIT_WEBHOOK_SECRET", "DIDIT_WEBHOOK_SECRETS"],
            dev_vars: &["DIDIT_WEBHOOK_SECRETS"],
        };
        lookup
            .find()
            .and_then(|list| config::first_entry(&list))
            .ok_or_else(|| {
                Failure::usage(format!(
                    "no Didit webhook secret: pass one with {}",
                    lookup.sources("--secret")
                ))
            })
    }

    /// The signing options these flags ask for, over `base` (a stored delivery's, on resend).
    pub(crate) fn options(&self, base: Option<&SignOptions>, test: bool) -> SignOptions {
        SignOptions {
            kinds: self
                .signatures
                .clone()
                .or_else(|| base.and_then(|b| b.kinds.clone())),
            v2_form: self
                .v2_form
                .or_else(|| base.map(|b| b.v2_form))
                .unwrap_or(V2Form::Escaped),
            v2_timestamp_prefix: self.v2_timestamp_prefix
                || base.is_some_and(|b| b.v2_timestamp_prefix),
            x_timestamp: self.x_timestamp,
            test_header: test || base.is_some_and(|b| b.test_header),
        }
    }
}

/// Where bodies come from.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// Built afresh for every delivery (fresh ids unless given).
    Generated(Box<PayloadSpec>),
    /// The same bytes every time.
    Fixed(Vec<u8>),
}

impl Source {
    pub(crate) fn from_args(args: &PayloadArgs) -> Result<Self> {
        if let Some(path) = &args.body {
            let bytes = std::fs::read(path).map_err(|e| {
                Failure::usage(format!("cannot read --body {}: {e}", path.display()))
            })?;
            return Ok(Self::Fixed(bytes));
        }
        if !didit::WEBHOOK_TYPES.contains(&args.webhook_type.as_str()) {
            eprintln!(
                "didit-edge: note: `{}` is not one of Didit's webhook types ({}); sending it as a session event",
                args.webhook_type,
                didit::WEBHOOK_TYPES.join(", ")
            );
        }
        let spec = PayloadSpec {
            webhook_type: args.webhook_type.clone(),
            status: args.status.clone(),
            previous_status: args.previous_status.clone(),
            version: args.payload_version,
            failing: args.failing.clone(),
            kyb: args.kyb,
            test: args.test,
            session_id: args.session_id.clone(),
            vendor_data: args.vendor_data.clone(),
            business_id: args.business_id.clone(),
            transaction_id: args.transaction_id.clone(),
            event_id: args.event_id.clone(),
            timestamp: args.timestamp,
            set: args.set.clone(),
        };
        // Built once now, so a payload that cannot be built is a usage error up front.
        spec.build(config::now_secs())?;
        Ok(Self::Generated(Box::new(spec)))
    }

    /// The next body to send.
    pub(crate) fn body(&self) -> Result<Vec<u8>> {
        match self {
            Self::Generated(spec) => Ok(didit::encode(&spec.build(config::now_secs())?)),
            Self::Fixed(bytes) => Ok(bytes.clone()),
        }
    }
}

/// The output forms of `sign`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// `{"method","url","headers","body"}`, the body as a string
    Json,
    /// A curl command line
    Curl,
    /// The body alone, byte for byte
    Body,
}

#[derive(Args, Debug)]
pub(crate) struct SignArgs {
    /// Output form
    #[arg(long, value_enum, default_value = "json")]
    pub(crate) format: Format,
    /// The URL written into the output
    #[arg(long, default_value = LOCAL_WEBHOOK_URL)]
    pub(crate) url: String,
    // Flattened last: their help headings would otherwise swallow the options above.
    #[command(flatten)]
    pub(crate) payload: PayloadArgs,
    #[command(flatten)]
    pub(crate) signing: SigningArgs,
}

/// Quotes `text` for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

pub(crate) fn run(args: &SignArgs) -> Result<()> {
    let secret = args.signing.secret()?;
    let source = Source::from_args(&args.payload)?;
    let body = source.body()?;
    let options = args.signing.options(None, args.payload.test);
    let headers = didit::sign(&body, &secret, &options)?;
    let text = String::from_utf8_lossy(&body);
    match args.format {
        Format::Json => {
            if std::str::from_utf8(&body).is_err() {
                return Err(Failure::usage(
                    "the body is not UTF-8 and cannot be shown as JSON; use --format curl or body",
                ));
            }
            let headers: serde_json::Map<String, Value> = headers
                .iter()
                .map(|(name, value)| (name.clone(), Value::String(value.clone())))
                .collect();
            let output =
                json!({"method": "POST", "url": args.url, "headers": headers, "body": text});
            let pretty = serde_json::to_string_pretty(&output)
                .map_err(|e| Failure::usage(format!("cannot write JSON: {e}")))?;
            println!("{pretty}");
        }
        Format::Curl => {
            let mut command = format!("curl -sS -X POST {}", shell_quote(&args.url));
            for (name, value) in &headers {
                command.push_str(" \\\n  -H ");
                command.push_str(&shell_quote(&format!("{name}: {value}")));
            }
            command.push_str(" \\\n  --data-binary ");
            command.push_str(&shell_quote(&text));
            println!("{command}");
        }
        Format::Body => {
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&body)
                .and_then(|()| stdout.flush())
                .map_err(|e| Failure::usage(format!("cannot write the body: {e}")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_takes_json_or_a_string() {
        assert_eq!(parse_set("a=1"), Ok(("a".into(), json!(1))));
        assert_eq!(
            parse_set("a={\"b\":null}"),
            Ok(("a".into(), json!({"b": null})))
        );
        assert_eq!(parse_set("a=plain"), Ok(("a".into(), json!("plain"))));
        assert!(parse_set("novalue").is_err());
        assert!(parse_set("=1").is_err());
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
