//! The admin API's sign-in: the operator token, the read-only token and Cloudflare Access. On
//! when any is set; broken when any that is set is invalid, so a typo never leaves the API open
//! to less than was meant (nor quietly closed to an operator who set it right).

use alloc::string::String;

use super::names;
use super::problem::Problem;
use super::reader::Reader;
use super::Feature;
use crate::access::{self, AccessConfig};
use crate::admin::{AdminAuth, AdminToken};

fn read_token<F: Fn(&str) -> Option<String>>(
    reader: &mut Reader<F>,
    setting: &'static str,
) -> Option<AdminToken> {
    let text = reader.get(setting)?;
    AdminToken::parse(&text)
        .map_err(|len| {
            reader.fail(
                setting,
                Problem::TooShort {
                    len,
                    min: crate::admin::MIN_TOKEN_LEN,
                },
            );
        })
        .ok()
}

fn read_access<F: Fn(&str) -> Option<String>>(reader: &mut Reader<F>) -> Option<AccessConfig> {
    use names::*;
    let set = [
        ACCESS_AUD,
        ACCESS_JWKS_URL,
        ACCESS_OPERATORS,
        ACCESS_READERS,
    ]
    .iter()
    .any(|name| reader.get(name).is_some());
    let team = if set {
        reader.required(ACCESS_TEAM_DOMAIN)
    } else {
        reader.get(ACCESS_TEAM_DOMAIN)
    }?;
    let issuer = access::issuer(&team);
    if issuer.is_none() {
        reader.fail(ACCESS_TEAM_DOMAIN, Problem::NotAHostName);
    }
    let audience = reader
        .required(ACCESS_AUD)
        .map(|aud| String::from(aud.trim()));
    let jwks_url = match reader.get(ACCESS_JWKS_URL) {
        Some(url) if crate::origin::is_http_url(url.trim()) => Some(String::from(url.trim())),
        Some(_) => {
            reader.fail(ACCESS_JWKS_URL, Problem::NotAnHttpUrl);
            None
        }
        None => issuer
            .as_ref()
            .map(|issuer| alloc::format!("{issuer}/cdn-cgi/access/certs")),
    };
    let mut list = |setting: &'static str| {
        let text = reader.get(setting)?;
        let listed = access::identities(&text);
        if listed.is_none() {
            reader.fail(setting, Problem::NotAList);
        }
        listed
    };
    let operators = list(ACCESS_OPERATORS).unwrap_or_default();
    let readers = list(ACCESS_READERS);
    Some(AccessConfig {
        issuer: issuer?,
        jwks_url: jwks_url?,
        audience: audience?,
        operators,
        readers,
    })
}

pub(super) fn read_admin<F: Fn(&str) -> Option<String>>(
    reader: &mut Reader<F>,
) -> Feature<AdminAuth> {
    let mark = reader.mark();
    let operator = read_token(reader, names::ADMIN_TOKEN);
    let read_only = read_token(reader, names::ADMIN_READ_TOKEN);
    if operator.is_some() && operator == read_only {
        // One token cannot be both: which role would it carry?
        reader.fail(names::ADMIN_READ_TOKEN, Problem::SameAsAdminToken);
    }
    let access = read_access(reader);
    if !reader.clean_since(mark) {
        return Feature::Broken;
    }
    if operator.is_none() && read_only.is_none() && access.is_none() {
        return Feature::Off;
    }
    Feature::On(AdminAuth {
        operator,
        read_only,
        access,
    })
}
