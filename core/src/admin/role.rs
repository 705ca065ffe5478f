//! Who may call which admin endpoint: two roles (read-only and operator), the credentials that
//! carry them (a Bearer token, or a Cloudflare Access assertion), and the rule that keeps
//! state-changing calls authenticated by Access safe from cross-site requests.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AdminToken;
use crate::access::AccessConfig;
use crate::endpoint::Endpoint;
use crate::rejection::Rejection;

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read the admin API (origins, dead letters, reconciliation, the live feed).
    ReadOnly,
    /// Also replay dead letters and erase subjects.
    Operator,
}

crate::named::by_name!(Role {
    ReadOnly = "read_only",
    Operator = "operator",
});

/// How a caller proved who it is: this decides the cross-site rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `Authorization: Bearer`, which a browser never attaches by itself.
    Token,
    /// Cloudflare Access, whose cookie a browser sends with any request to the host,
    /// cross-site ones included.
    Access,
}

crate::named::by_name!(Via {
    Token = "token",
    Access = "access",
});

/// The header the console sends with every state-changing call. A cross-site page cannot set
/// it without a CORS preflight, which the edge never grants.
pub const CONSOLE_HEADER: &str = "x-didit-edge-console";

/// Who may use the admin API: the operator token, the read-only token, Access, or any of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminAuth {
    /// `ADMIN_TOKEN`: operator.
    pub operator: Option<AdminToken>,
    /// `ADMIN_READ_TOKEN`: read-only.
    pub read_only: Option<AdminToken>,
    /// Cloudflare Access.
    pub access: Option<AccessConfig>,
}

/// The role an endpoint needs. Every other admin endpoint only reads.
pub fn needs(endpoint: &Endpoint<'_>) -> Role {
    match endpoint {
        Endpoint::ReplayDeadLetter { .. } | Endpoint::ReplayDeadLetters | Endpoint::Erase => {
            Role::Operator
        }
        _ => Role::ReadOnly,
    }
}

/// The credential a request presents: the Bearer token when `Authorization` is sent, else the
/// Access assertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// The text after `Bearer `.
    Bearer(&'a str),
    /// `Cf-Access-Jwt-Assertion`.
    Access(&'a str),
}

/// Which credential to judge, or 401 when there is none (or `Authorization` is not Bearer).
pub fn credential<'a>(
    authorization: Option<&'a str>,
    access_assertion: Option<&'a str>,
) -> Result<Credential<'a>, Rejection> {
    if let Some(value) = authorization {
        return value
            .trim()
            .strip_prefix("Bearer ")
            .map(|token| Credential::Bearer(token.trim()))
            .ok_or(Rejection::Unauthorized {
                reason: "expected `Authorization: Bearer <ADMIN_TOKEN or ADMIN_READ_TOKEN>`",
            });
    }
    access_assertion
        .map(Credential::Access)
        .ok_or(Rejection::Unauthorized {
            reason: "expected `Authorization: Bearer <ADMIN_TOKEN or ADMIN_READ_TOKEN>` or a Cloudflare Access sign-in",
        })
}

fn matches(presented: &[u8; 32], token: Option<&AdminToken>) -> bool {
    // Both tokens are always hashed and compared, so the time taken says nothing about which
    // one is set or matched.
    let expected = token.map_or([0u8; 32], |token| Sha256::digest(token.0.expose()).into());
    bool::from(expected.ct_eq(presented)) && token.is_some()
}

/// The role a Bearer token carries. Both sides are hashed first, so the comparison takes the
/// same time whatever the presented token's length or content.
pub fn bearer_role(presented: &str, auth: &AdminAuth) -> Result<Role, Rejection> {
    let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let operator = matches(&presented, auth.operator.as_ref());
    let read_only = matches(&presented, auth.read_only.as_ref());
    if operator {
        Ok(Role::Operator)
    } else if read_only {
        Ok(Role::ReadOnly)
    } else {
        Err(Rejection::Unauthorized {
            reason: "wrong admin token",
        })
    }
}

/// What a state-changing request says about where it comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Provenance<'a> {
    /// `Sec-Fetch-Site`, which browsers send and pages cannot forge.
    pub sec_fetch_site: Option<&'a str>,
    /// Whether [`CONSOLE_HEADER`] was sent.
    pub console_header: bool,
}

/// Whether a caller of `role`, authenticated `via`, may call an endpoint that `needs`
/// that role. Reads are always same-origin-safe (a cross-site page cannot read the answer); an
/// operator call authenticated by Access must also carry [`CONSOLE_HEADER`] and, from a
/// browser, come from the same origin, since the Access cookie rides along on any request.
pub fn permit(
    role: Role,
    via: Via,
    needs: Role,
    provenance: Provenance<'_>,
) -> Result<(), Rejection> {
    if role < needs {
        return Err(Rejection::OperatorRequired);
    }
    if needs == Role::Operator && via == Via::Access {
        let same_origin = provenance
            .sec_fetch_site
            .is_none_or(|site| site.trim().eq_ignore_ascii_case("same-origin"));
        if !provenance.console_header || !same_origin {
            return Err(Rejection::CrossSite);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const OPERATOR: &str = "operator-token-0123456789abcdef";
    const READER: &str = "reader-token-0123456789abcdefgh";

    fn auth(operator: bool, reader: bool) -> AdminAuth {
        AdminAuth {
            operator: operator.then(|| AdminToken::parse(OPERATOR).expect("long")),
            read_only: reader.then(|| AdminToken::parse(READER).expect("long")),
            access: None,
        }
    }

    #[test]
    fn each_token_carries_its_role_and_nothing_else_does() {
        let both = auth(true, true);
        assert_eq!(bearer_role(OPERATOR, &both), Ok(Role::Operator));
        assert_eq!(bearer_role(READER, &both), Ok(Role::ReadOnly));
        for wrong in [
            "",
            "x",
            "operator-token-0123456789abcdeF",
            &alloc::format!("{READER} "),
        ] {
            assert!(matches!(
                bearer_role(wrong, &both),
                Err(Rejection::Unauthorized { .. })
            ));
        }
        // An unset token is never matched, not even by the hash of nothing.
        assert!(bearer_role(READER, &auth(true, false)).is_err());
        assert!(bearer_role(OPERATOR, &auth(false, true)).is_err());
        assert!(bearer_role("", &auth(false, false)).is_err());
    }

    #[test]
    fn the_bearer_header_wins_and_anything_else_in_authorization_is_refused() {
        assert_eq!(
            credential(Some("Bearer abc "), Some("jwt")),
            Ok(Credential::Bearer("abc"))
        );
        assert_eq!(credential(None, Some("jwt")), Ok(Credential::Access("jwt")));
        assert!(credential(Some("Basic abc"), Some("jwt")).is_err());
        assert!(credential(None, None).is_err());
    }

    #[test]
    fn only_replay_and_erasure_need_an_operator() {
        assert_eq!(needs(&Endpoint::Erase), Role::Operator);
        assert_eq!(needs(&Endpoint::ReplayDeadLetters), Role::Operator);
        assert_eq!(
            needs(&Endpoint::ReplayDeadLetter { id: "evt_1" }),
            Role::Operator
        );
        for read in [
            Endpoint::AdminOrigins,
            Endpoint::DeadLetters,
            Endpoint::Reconciliation,
            Endpoint::AdminMetrics,
            Endpoint::AdminSession,
            Endpoint::ConsoleStreamToken,
            Endpoint::DiditDestinations,
            Endpoint::DiditDeliveries,
        ] {
            assert_eq!(needs(&read), Role::ReadOnly, "{read:?}");
        }
    }

    #[test]
    fn a_reader_is_refused_what_changes_state_and_access_needs_same_origin_with_the_header() {
        let console = Provenance {
            sec_fetch_site: Some("same-origin"),
            console_header: true,
        };
        let refused = permit(Role::ReadOnly, Via::Token, Role::Operator, console)
            .expect_err("a reader cannot replay");
        assert_eq!(
            (refused.status(), refused.code()),
            (403, "operator_required")
        );
        assert_eq!(
            permit(
                Role::ReadOnly,
                Via::Access,
                Role::ReadOnly,
                Provenance::default()
            ),
            Ok(())
        );
        assert_eq!(
            permit(
                Role::Operator,
                Via::Token,
                Role::Operator,
                Provenance::default()
            ),
            Ok(())
        );
        assert_eq!(
            permit(Role::Operator, Via::Access, Role::Operator, console),
            Ok(())
        );
        // A curl with the assertion and the header (no Sec-Fetch-Site) is not a browser.
        assert_eq!(
            permit(
                Role::Operator,
                Via::Access,
                Role::Operator,
                Provenance {
                    sec_fetch_site: None,
                    console_header: true
                }
            ),
            Ok(())
        );
        for cross in [
            Provenance {
                sec_fetch_site: Some("cross-site"),
                console_header: true,
            },
            Provenance {
                sec_fetch_site: Some("same-site"),
                console_header: true,
            },
            Provenance {
                sec_fetch_site: Some("same-origin"),
                console_header: false,
            },
        ] {
            let refused =
                permit(Role::Operator, Via::Access, Role::Operator, cross).expect_err("cross-site");
            assert_eq!(
                (refused.status(), refused.code()),
                (403, "cross_site_request")
            );
        }
    }
}

/// `GET /admin/session`'s answer: who the console is signed in as, so it shows an operator's
/// buttons only to an operator (the API refuses them to anyone else regardless).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AdminSession {
    /// What the caller may do.
    pub role: Role,
    /// How it signed in.
    pub via: Via,
    /// The Access identity (an email), `null` for a token: a token names nobody.
    pub identity: Option<alloc::string::String>,
}
