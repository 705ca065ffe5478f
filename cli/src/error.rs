//! One error type with one exit code each, printed as one line on stderr, never with a secret.

use std::fmt;

/// The process's exit codes, also listed in `--help` ([`EXIT_CODES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The remote side answered with an error: a refused delivery, a non-2xx answer from the
    /// admin API, a refused WebSocket upgrade, a failed check.
    Remote = 1,
    /// Bad usage or local configuration: unknown flags, a missing secret, an unreadable file.
    Usage = 2,
    /// The network: nothing listens, DNS, TLS, a timeout, a port that cannot be bound.
    Network = 3,
}

/// What `--help` says about exit codes.
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the remote side answered an error (a refused delivery, a non-2xx admin answer,
     a refused stream connection)
  2  usage or local configuration (bad flags, no secret, unreadable file)
  3  network (connection refused, DNS, TLS, timeout, port in use)";

/// A failure to report: a one-line message and its exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) exit: Exit,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            exit: Exit::Usage,
            message: message.into(),
        }
    }

    pub(crate) fn remote(message: impl Into<String>) -> Self {
        Self {
            exit: Exit::Remote,
            message: message.into(),
        }
    }

    pub(crate) fn network(message: impl Into<String>) -> Self {
        Self {
            exit: Exit::Network,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the cause put in it.
        let one_line: String = self
            .message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        f.write_str(one_line.trim())
    }
}

pub(crate) type Result<T> = std::result::Result<T, Failure>;
