//! `[daemon] api_token_file`: the token every route but `/healthz` and `/readyz` requires
//! when it is set. Prometheus sends it as `Authorization: Bearer <token>` (its
//! `authorization: credentials_file:` scrape setting); a browser, asked for a login by
//! the status page, as the password of `Authorization: Basic` (any user name).
//!
//! Only the token's SHA-256 is kept, and a presented token is hashed and compared in
//! constant time: neither its length nor how much of it matches shows in the timing.

use crate::secret::Secret;
use base64::Engine;
use subtle::ConstantTimeEq;

/// The token an endpoint requires.
#[derive(Clone)]
pub struct ApiToken {
    /// `None` for a token that was never read ([`Secret::unresolved`]): nothing matches it.
    digest: Option<[u8; 32]>,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

/// The realm the 401's challenges name.
pub const REALM: &str = "jellyfin-export-scheduler";

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

impl ApiToken {
    pub fn new(token: &Secret) -> ApiToken {
        ApiToken {
            digest: (token.is_resolved() && !token.expose().is_empty())
                .then(|| sha256(token.expose().as_bytes())),
        }
    }

    /// Whether an `Authorization` header value carries the token.
    pub fn admits(&self, authorization: Option<&[u8]>) -> bool {
        let (Some(digest), Some(presented)) =
            (&self.digest, authorization.and_then(presented_token))
        else {
            return false;
        };
        !presented.is_empty() && bool::from(sha256(&presented).ct_eq(digest))
    }
}

/// The credential of `Bearer <token>`, or the password of `Basic base64(user:password)`.
/// Scheme names are case-insensitive (RFC 9110 §11.1).
fn presented_token(header: &[u8]) -> Option<Vec<u8>> {
    let header = std::str::from_utf8(header).ok()?.trim();
    let (scheme, credentials) = header.split_once(' ')?;
    let credentials = credentials.trim_start();
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(credentials.as_bytes().to_vec())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        Some(decoded[colon + 1..].to_vec())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn bearer_and_basic_carry_the_token_nothing_else_does() {
        let t = ApiToken::new(&Secret::new(TOKEN));
        let basic = |userpass: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(userpass)
            )
        };
        for ok in [
            format!("Bearer {TOKEN}"),
            format!("bearer   {TOKEN} "),
            basic(&format!("prometheus:{TOKEN}")),
            basic(&format!(":{TOKEN}")),
        ] {
            assert!(t.admits(Some(ok.as_bytes())), "{ok:?} refused");
        }
        for bad in [
            String::new(),
            TOKEN.to_owned(),
            format!("Bearer {TOKEN}x"),
            format!("Bearer {}", &TOKEN[1..]),
            "Bearer ".to_owned(),
            format!("Token {TOKEN}"),
            basic(&format!("{TOKEN}:wrong")),
            basic(TOKEN),
            "Basic !!!".to_owned(),
        ] {
            assert!(!t.admits(Some(bad.as_bytes())), "{bad:?} admitted");
        }
        assert!(!t.admits(None));
        // A token never read (or empty) lets nobody in, an empty credential included.
        for never in [
            ApiToken::new(&Secret::unresolved()),
            ApiToken::new(&Secret::new("")),
        ] {
            for header in ["Bearer ", "Bearer", &basic("user:"), &basic(":")] {
                assert!(!never.admits(Some(header.as_bytes())), "{header:?}");
            }
        }
        assert!(!t.admits(Some(b"Bearer \xff\xfe")));
        assert_eq!(format!("{t:?}"), "ApiToken(***)");
    }
}
