//! `didit-edge watch`: connects to the status stream (`GET /v1/stream`, a WebSocket) and prints
//! each status message as it arrives.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use didit_edge_core::time::to_rfc3339;
use serde_json::Value;
use tungstenite::client::IntoClientRequest as _;
use tungstenite::http::HeaderValue;
use tungstenite::{HandshakeError, Message, WebSocket};

use crate::config::{self, redact_url};
use crate::error::{Failure, Result};
use crate::http::{self, cell};
use crate::token::{self, Scope};

/// The subprotocol the stream speaks; the token travels next to it.
const SUBPROTOCOL: &str = "didit-edge.v1";
/// The close code of an expired token.
const TOKEN_EXPIRED: u16 = 4001;

#[derive(Args, Debug)]
pub(crate) struct WatchArgs {
    /// The worker (http://127.0.0.1:8787, https://…) or the stream's URL (ws(s)://…/v1/stream)
    #[arg(value_name = "URL")]
    pub(crate) url: String,
    /// The stream token [default: $DIDIT_EDGE_STREAM_TOKEN; else an admin token is minted with
    /// STREAM_TOKEN_SECRET (--secret, $STREAM_TOKEN_SECRET or ./.dev.vars) and renewed when it
    /// expires]
    #[arg(long)]
    pub(crate) token: Option<String>,
    /// The secret to mint admin tokens with when no --token is given
    #[arg(long, value_name = "SECRET")]
    pub(crate) secret: Option<String>,
    /// Only these event types (status.updated, user.*, *); admin tokens only; repeatable
    #[arg(long = "type", value_name = "TYPE")]
    pub(crate) types: Vec<String>,
    /// Only these risk levels (low, medium, high, unknown); admin tokens only; repeatable
    #[arg(long, value_name = "LEVEL")]
    pub(crate) risk: Vec<String>,
    /// Only these workflows; admin tokens only; repeatable
    #[arg(long, value_name = "ID")]
    pub(crate) workflow: Vec<String>,
    /// Stop after this many status messages
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<u64>,
    /// Stop after this long
    #[arg(long = "for", value_name = "DURATION", value_parser = config::parse_duration)]
    pub(crate) duration: Option<Duration>,
    /// Print each message's JSON as received
    #[arg(long)]
    pub(crate) json: bool,
}

/// Percent-encodes a query value (`*` stays, for `type=user.*`).
fn encode(text: &str) -> String {
    http::percent_encode(text, b"*")
}

/// The stream's URL: `http` becomes `ws`, a bare host gets `/v1/stream`, filters the query.
pub(crate) fn stream_url(url: &str, args_query: &[(&str, &[String])]) -> Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Failure::usage(format!("`{}` is not a URL", redact_url(url))))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(Failure::usage(format!(
                "`{other}://` is not a stream URL (use http(s):// or ws(s)://)"
            )))
        }
    };
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path_start = location.find('/').unwrap_or(location.len());
    if path_start == 0 {
        return Err(Failure::usage(format!("`{}` has no host", redact_url(url))));
    }
    let (host, path) = location.split_at(path_start);
    let path = if path.is_empty() || path == "/" {
        "/v1/stream"
    } else {
        path
    };
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    for (name, values) in args_query {
        pairs.extend(values.iter().map(|v| format!("{name}={}", encode(v))));
    }
    let query = if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    };
    Ok(format!("{scheme}://{host}{path}{query}"))
}

/// One line per status message.
pub(crate) fn status_line(message: &Value) -> Option<String> {
    if message.get("type").and_then(Value::as_str) != Some("status") {
        return None;
    }
    let text = |key: &str| cell(message.get(key));
    let time = message
        .get("time")
        .and_then(Value::as_i64)
        .map_or_else(|| "-".into(), to_rfc3339);
    let mut line = format!(
        "{time}  {}:{}  {}  risk={}  {}",
        text("subject_kind"),
        text("subject_id"),
        text("status_code"),
        text("risk_level"),
        text("event_id")
    );
    if message.get("test") == Some(&Value::Bool(true)) {
        line.push_str("  test");
    }
    Some(line)
}

/// How long opening a connection and the upgrade may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the rest of a refusal's answer is waited for.
const REFUSAL_READ_TIMEOUT: Duration = Duration::from_secs(3);

/// A connection to the stream: TCP, or TLS over it. Opened here rather than by tungstenite so
/// that the whole answer to a refused upgrade can be read (its error code may come after the
/// headers, in another packet).
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(tcp) => tcp.read(buf),
            Self::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(tcp) => tcp.write(buf),
            Self::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(tcp) => tcp.flush(),
            Self::Tls(tls) => tls.flush(),
        }
    }
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(tls) => &tls.sock,
        }
    }

    fn set_read_timeout(&self, timeout: Option<Duration>) {
        let _ = self.tcp().set_read_timeout(timeout);
    }

    fn open(url: &str, host: &str, port: u16, tls: bool) -> Result<Self> {
        let shown = redact_url(url);
        let addresses: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| Failure::network(format!("cannot resolve {shown}: {e}")))?
            .collect();
        let mut last_error = None;
        let tcp = addresses
            .iter()
            .find_map(
                |address| match TcpStream::connect_timeout(address, CONNECT_TIMEOUT) {
                    Ok(tcp) => Some(tcp),
                    Err(error) => {
                        last_error = Some(error);
                        None
                    }
                },
            )
            .ok_or_else(|| {
                Failure::network(match last_error {
                    Some(error) => format!("cannot reach {shown}: {error}"),
                    None => format!("cannot resolve {shown}"),
                })
            })?;
        let _ = tcp.set_nodelay(true);
        let _ = tcp.set_write_timeout(Some(CONNECT_TIMEOUT));
        let _ = tcp.set_read_timeout(Some(CONNECT_TIMEOUT));
        if !tls {
            return Ok(Self::Plain(tcp));
        }
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::network(format!("TLS is unavailable: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|_| Failure::usage(format!("`{host}` is not a host name TLS can check")))?;
        let connection = rustls::ClientConnection::new(Arc::new(config), name)
            .map_err(|e| Failure::network(format!("TLS with {shown} failed: {e}")))?;
        Ok(Self::Tls(Box::new(rustls::StreamOwned::new(
            connection, tcp,
        ))))
    }
}

type Socket<'c> = WebSocket<&'c mut Conn>;

/// The answer to a refused upgrade, read to its end, as `status code: message`.
fn refusal(
    response: &tungstenite::handshake::client::Response,
    body: Option<&Vec<u8>>,
    conn: &mut Conn,
) -> Failure {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    let length: Option<usize> = header("content-length").and_then(|v| v.trim().parse().ok());
    let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let mut body = body.cloned().unwrap_or_default();
    conn.set_read_timeout(Some(REFUSAL_READ_TIMEOUT));
    let mut buffer = [0u8; 4096];
    while body.len() < 64 * 1024 {
        let complete = match length {
            Some(length) => body.len() >= length,
            None => chunked && body.ends_with(b"0\r\n\r\n"),
        };
        if complete {
            break;
        }
        match conn.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => body.extend_from_slice(&buffer[..read]),
        }
    }
    // A chunked body's JSON sits between its size lines.
    if serde_json::from_slice::<Value>(&body).is_err() {
        if let (Some(start), Some(end)) = (
            body.iter().position(|&b| b == b'{'),
            body.iter().rposition(|&b| b == b'}'),
        ) {
            if start < end {
                body = body[start..=end].to_vec();
            }
        }
    }
    let answer = http::Answer {
        status,
        content_type: None,
        body,
    };
    Failure::remote(format!(
        "the stream refused the connection: {status} {}",
        answer.error_summary()
    ))
}

fn handshake_failure(url: &str, error: tungstenite::Error) -> Failure {
    let shown = redact_url(url);
    match error {
        tungstenite::Error::Url(e) => Failure::usage(format!("`{shown}`: {e}")),
        tungstenite::Error::Io(e) => {
            Failure::network(format!("the connection to {shown} failed: {e}"))
        }
        tungstenite::Error::Tls(e) => Failure::network(format!("TLS with {shown} failed: {e}")),
        other => Failure::remote(format!("the stream at {shown} failed: {other}")),
    }
}

/// Opens the stream with `token` and watches it until done or the connection ends.
fn session(
    url: &str,
    token: &str,
    args: &WatchArgs,
    seen: &mut u64,
    deadline: Option<Instant>,
) -> Result<Ended> {
    let mut request = url
        .into_client_request()
        .map_err(|e| Failure::usage(format!("`{}` is not a stream URL: {e}", redact_url(url))))?;
    let protocols = HeaderValue::from_str(&format!("{SUBPROTOCOL}, {}", token.trim()))
        .map_err(|_| Failure::usage("the stream token holds characters a header cannot carry"))?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols);
    let uri = request.uri();
    let tls = uri.scheme_str() == Some("wss");
    let host = uri
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        .ok_or_else(|| Failure::usage(format!("`{}` has no host", redact_url(url))))?;
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let mut conn = Conn::open(url, &host, port, tls)?;
    let result = tungstenite::client::client_with_config(request, &mut conn, None);
    let mut socket = match result {
        Ok((socket, _)) => socket,
        Err(HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            let body = response.body().clone();
            return Err(refusal(&response, body.as_ref(), &mut conn));
        }
        Err(HandshakeError::Failure(error)) => return Err(handshake_failure(url, error)),
        Err(HandshakeError::Interrupted(_)) => {
            return Err(Failure::network(format!(
                "{}: the upgrade timed out",
                redact_url(url)
            )))
        }
    };
    eprintln!("watching {}", redact_url(url));
    watch(&mut socket, args, seen, deadline)
}

/// How a connection ended.
enum Ended {
    /// Enough messages, or time is up.
    Done,
    /// The token expired (close code 4001).
    TokenExpired,
}

fn watch(
    socket: &mut Socket<'_>,
    args: &WatchArgs,
    seen: &mut u64,
    deadline: Option<Instant>,
) -> Result<Ended> {
    loop {
        if args.count.is_some_and(|count| *seen >= count) {
            let _ = socket.close(None);
            let _ = socket.flush();
            return Ok(Ended::Done);
        }
        let remaining = match deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => {
                    let _ = socket.close(None);
                    let _ = socket.flush();
                    return Ok(Ended::Done);
                }
            },
            None => None,
        };
        socket.get_ref().set_read_timeout(remaining);
        let message = match socket.read() {
            Ok(message) => message,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Err(Failure::remote("the stream closed the connection"));
            }
            Err(e) => return Err(Failure::network(format!("the stream failed: {e}"))),
        };
        match message {
            Message::Text(text) => {
                let text = text.as_str();
                if args.json {
                    println!("{text}");
                } else {
                    match serde_json::from_str::<Value>(text)
                        .ok()
                        .as_ref()
                        .and_then(status_line)
                    {
                        Some(line) => println!("{line}"),
                        None => println!("{text}"),
                    }
                }
                *seen += 1;
            }
            Message::Close(frame) => {
                let (code, reason) = frame.map_or((1005, String::new()), |f| {
                    (u16::from(f.code), f.reason.as_str().to_owned())
                });
                return match code {
                    TOKEN_EXPIRED => Ok(Ended::TokenExpired),
                    1000 | 1001 | 1005 => Err(Failure::remote("the stream closed the connection")),
                    _ => Err(Failure::remote(format!(
                        "the stream closed the connection: {code} {reason}"
                    ))),
                };
            }
            _ => {} // pings are answered by tungstenite; pongs and binary are not used
        }
    }
}

pub(crate) fn run(args: &WatchArgs) -> Result<()> {
    let url = stream_url(
        &args.url,
        &[
            ("type", args.types.as_slice()),
            ("risk", args.risk.as_slice()),
            ("workflow", args.workflow.as_slice()),
        ],
    )?;
    let given = args
        .token
        .clone()
        .or_else(|| config::env_var("DIDIT_EDGE_STREAM_TOKEN"));
    let secret = if given.is_none() {
        Some(token::stream_secret(args.secret.as_deref())?.ok_or_else(|| {
            Failure::usage(format!(
                "no stream token: pass --token, set $DIDIT_EDGE_STREAM_TOKEN, or give STREAM_TOKEN_SECRET (--secret, $STREAM_TOKEN_SECRET or ./{}) to mint one",
                config::DEV_VARS
            ))
        })?)
    } else {
        None
    };
    let deadline = args.duration.map(|d| Instant::now() + d);
    let mut seen = 0;
    loop {
        let token = match (&given, &secret) {
            (Some(token), _) => token.clone(),
            (None, Some(secret)) => {
                let claims = token::claims(
                    "didit-edge-cli",
                    Scope::Admin,
                    &[],
                    "didit-edge",
                    Duration::from_secs(600),
                    config::now_secs(),
                )?;
                token::mint(secret, &claims)
            }
            (None, None) => return Err(Failure::usage("no stream token")),
        };
        match session(&url, &token, args, &mut seen, deadline)? {
            Ended::Done => return Ok(()),
            Ended::TokenExpired if secret.is_some() => {
                eprintln!("token expired; reconnecting with a new one");
            }
            Ended::TokenExpired => {
                return Err(Failure::remote(
                    "the stream closed the connection: the token expired (4001)",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls_become_stream_urls() {
        let none: &[(&str, &[String])] = &[];
        assert_eq!(
            stream_url("http://127.0.0.1:8787", none).expect("ok"),
            "ws://127.0.0.1:8787/v1/stream"
        );
        assert_eq!(
            stream_url("https://edge.example/", none).expect("ok"),
            "wss://edge.example/v1/stream"
        );
        assert_eq!(
            stream_url(
                "ws://h:1/v1/stream?workflow=a",
                &[
                    ("risk", &["high".to_owned()]),
                    ("type", &["user.*".to_owned(), "a b".to_owned()])
                ]
            )
            .expect("ok"),
            "ws://h:1/v1/stream?workflow=a&risk=high&type=user.*&type=a%20b"
        );
        assert!(stream_url("ftp://h", none).is_err());
        assert!(stream_url("127.0.0.1:8787", none).is_err());
        assert!(stream_url("http:///v1/stream", none).is_err());
    }

    #[test]
    fn status_messages_print_as_one_line() {
        let message = json!({"type": "status", "event_id": "evt_1", "subject_kind": "session",
                             "subject_id": "s-1", "status_code": "approved", "risk_level": "low",
                             "time": 0, "test": false});
        assert_eq!(
            status_line(&message).expect("a status"),
            "1970-01-01T00:00:00Z  session:s-1  approved  risk=low  evt_1"
        );
        assert_eq!(status_line(&json!({"type": "other"})), None);
    }
}
