//! The bearer-token check of the HTTP API (`http.auth_token`).
//!
//! The configured token is kept only as its SHA-256 digest, computed once; each request's token
//! is hashed and the two 32-byte digests are compared in constant time (OpenSSL's
//! `CRYPTO_memcmp`). How long the check takes thus depends on the length of the token the
//! client sent (which the client knows), never on the configured token's length or content: a
//! plain byte comparison that returns early on a length mismatch tells a client how long the
//! token is, and one that stops at the first differing byte tells it how much of a guess is
//! right.
//!
//! A browser cannot send a bearer token with a page it navigates to, so the console (`/ui`)
//! signs in once (`POST /ui/login`, see `ui.rs`) and holds a session cookie: the hex SHA-256
//! of a fixed prefix and the token, `HttpOnly`, `SameSite=Strict`. The cookie is checked like a
//! token (its own digest, compared in constant time) and never reveals the token itself. A
//! request without a valid token or cookie gets a 401, or, for a page of the console, a
//! redirect to its sign-in page.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use super::error;

/// SHA-256 of a token.
type Digest = [u8; 32];

/// The console's session cookie.
pub(crate) const SESSION_COOKIE: &str = "keplor_session";
/// What the session value is derived from, besides the token.
const SESSION_PREFIX: &[u8] = b"keplor-agent console session\0";

/// What a request must present: nothing (no token configured) or the configured token.
#[derive(Clone)]
pub(crate) struct TokenCheck {
    /// The configured token's digest; `None`: the API is open.
    digest: Option<Digest>,
    /// The session cookie's value (the hex digest of the prefix and the token), kept only as
    /// its own digest.
    session_digest: Option<Digest>,
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
            session_digest: token.map(|t| openssl::sha::sha256(session_value(t).as_bytes())),
        }
    }

    /// Whether the API needs a token at all.
    pub(crate) fn required(&self) -> bool {
        self.digest.is_some()
    }

    /// The session cookie's value for `token`, if it is the configured one.
    pub(crate) fn session_for(&self, token: &str) -> Option<String> {
        let presented = [b"Bearer ", token.as_bytes()].concat();
        (self.required() && self.admits(Some(&presented))).then(|| session_value(token))
    }

    /// Whether a request whose `Cookie` headers are `cookies` holds a valid session.
    pub(crate) fn admits_session<'a>(&self, cookies: impl Iterator<Item = &'a [u8]>) -> bool {
        let Some(want) = &self.session_digest else {
            return true;
        };
        cookies
            .flat_map(|h| h.split(|&b| b == b';'))
            .filter_map(|c| {
                let c = c.trim_ascii();
                c.strip_prefix(SESSION_COOKIE.as_bytes())?
                    .strip_prefix(b"=")
            })
            .any(|v| openssl::memcmp::eq(&openssl::sha::sha256(v), want))
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

/// The session cookie's value for `token`: hex SHA-256 of the prefix and the token.
fn session_value(token: &str) -> String {
    let digest = openssl::sha::sha256(&[SESSION_PREFIX, token.as_bytes()].concat());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Paths open without a token: the health probes, and what the console's sign-in page needs.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/readyz" | "/ui/login" | "/ui/app.css" | "/ui/favicon.svg"
    )
}

/// Token middleware: a bearer token, or the console's session cookie (health probes and the
/// sign-in page stay open).
pub(crate) async fn require_token(
    State(check): State<Arc<TokenCheck>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if !is_public(path) {
        let headers = req.headers();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        let admitted = check.admits(bearer)
            || (bearer.is_none()
                && check.admits_session(
                    headers
                        .get_all(header::COOKIE)
                        .iter()
                        .map(HeaderValue::as_bytes),
                ));
        if !admitted && (path == "/ui" || path.starts_with("/ui/")) {
            return (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, HeaderValue::from_static("/ui/login"))],
            )
                .into_response();
        }
        if !admitted {
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
    fn the_session_cookie_is_derived_from_the_token_and_checked_like_it() {
        let check = TokenCheck::new(Some("s3cret-token"));
        assert_eq!(check.session_for("s3cret"), None);
        let session = check
            .session_for("s3cret-token")
            .expect("the token signs in");
        assert!(!session.contains("s3cret"));
        assert_eq!(session.len(), 64);
        let cookie = format!("theme=dark; {SESSION_COOKIE}={session}; other=1");
        assert!(check.admits_session([cookie.as_bytes()].into_iter()));
        let second = format!("{SESSION_COOKIE}={session}");
        let two_headers = [b"theme=dark".as_slice(), second.as_bytes()];
        assert!(check.admits_session(two_headers.into_iter()));
        for wrong in [
            String::new(),
            format!("{SESSION_COOKIE}={}", &session[1..]),
            format!("{SESSION_COOKIE}=s3cret-token"),
            format!("x{SESSION_COOKIE}={session}"),
            format!("{SESSION_COOKIE}{session}"),
        ] {
            assert!(
                !check.admits_session([wrong.as_bytes()].into_iter()),
                "{wrong}"
            );
        }
        // Another token's session does not pass.
        let other = TokenCheck::new(Some("other")).session_for("other").unwrap();
        let cookie = format!("{SESSION_COOKIE}={other}");
        assert!(!check.admits_session([cookie.as_bytes()].into_iter()));
        // Without a token there is no session to sign in to, and everything passes.
        let open = TokenCheck::new(None);
        assert_eq!(open.session_for("anything"), None);
        assert!(open.admits_session(std::iter::empty()));
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
