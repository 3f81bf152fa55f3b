//! The bearer-token check of the HTTP API (`http.auth_token`).
//!
//! The configured token is kept only as its SHA-256 digest, computed once; each request's token
//! is hashed and the two 32-byte digests are compared in constant time (OpenSSL's
//! `CRYPTO_memcmp`). How long the check takes thus depends on the length of the token the
//! client sent (which the client knows), never on the configured token's length or content: a
//! plain byte comparison that returns early on a length mismatch tells a client how long the
//! token is, and one that stops at the first differing byte tells it how much of a guess is
//! right.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

use super::error;

/// SHA-256 of a token.
type Digest = [u8; 32];

/// What a request must present: nothing (no token configured) or the configured token.
#[derive(Clone)]
pub(crate) struct TokenCheck {
    /// The configured token's digest; `None`: the API is open.
    digest: Option<Digest>,
}

impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCheck")
            .field("required", &self.digest.is_some())
            .finish()
    }
}

impl TokenCheck {
    /// A check for `token` (`None`: every request is admitted).
    pub(crate) fn new(token: Option<&str>) -> TokenCheck {
        TokenCheck {
            digest: token.map(|t| openssl::sha::sha256(t.as_bytes())),
        }
    }

    /// Whether a request whose `Authorization` header is `header` may pass.
    pub(crate) fn admits(&self, header: Option<&[u8]>) -> bool {
        let Some(want) = &self.digest else {
            return true;
        };
        let Some(token) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        let got = openssl::sha::sha256(token);
        // Equal lengths by construction: CRYPTO_memcmp over 32 bytes, whatever differs.
        openssl::memcmp::eq(&got, want)
    }
}

/// Bearer-token middleware (health probes stay open).
pub(crate) async fn require_token(
    State(check): State<Arc<TokenCheck>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if path != "/healthz" && path != "/readyz" {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        if !check.admits(presented) {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                None,
                "missing or wrong bearer token",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_token_passes() {
        let check = TokenCheck::new(Some("s3cret-token"));
        assert!(check.admits(Some(b"Bearer s3cret-token")));
        for wrong in [
            None,
            Some(&b""[..]),
            Some(b"s3cret-token"),
            Some(b"Bearer "),
            Some(b"Bearer s3cret"),
            Some(b"Bearer s3cret-token "),
            Some(b"Bearer s3cret-tokeN"),
            Some(b"bearer s3cret-token"),
            Some(b"Basic s3cret-token"),
        ] {
            assert!(!check.admits(wrong), "{wrong:?}");
        }
        // Longer than a digest, and not UTF-8: compared like any other.
        let long = "x".repeat(1000);
        let check = TokenCheck::new(Some(&long));
        assert!(check.admits(Some(format!("Bearer {long}").as_bytes())));
        assert!(!check.admits(Some(format!("Bearer {long}x").as_bytes())));
        assert!(!check.admits(Some(b"Bearer \xff\xfe")));
    }

    #[test]
    fn no_configured_token_admits_everything() {
        let open = TokenCheck::new(None);
        assert!(open.admits(None));
        assert!(open.admits(Some(b"Bearer anything")));
    }

    #[test]
    fn only_the_digest_is_kept() {
        let check = TokenCheck::new(Some("s3cret-token"));
        assert_eq!(
            check.digest,
            Some(openssl::sha::sha256(b"s3cret-token")),
            "the token itself is not kept"
        );
        assert!(!format!("{check:?}").contains("s3cret"));
    }
}
