//! The console: `/ui`, one page of HTML, a script and a style sheet compiled into the binary
//! (`agent/ui/`), served behind the API's token. It reads only this agent's own API (`/v1/*`,
//! `/metrics`), which a content security policy enforces: no file on disk, no other origin,
//! nothing fetched from the network at run time.
//!
//! With `http.auth_token` set, a browser signs in once at `/ui/login` with the token and holds
//! a session cookie (`auth.rs`); `POST /ui/logout` drops it. The API's own callers keep using
//! the bearer token.

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::auth::{TokenCheck, SESSION_COOKIE};
use super::AppState;

const INDEX_HTML: &str = include_str!("../../ui/index.html");
const LOGIN_HTML: &str = include_str!("../../ui/login.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const APP_CSS: &str = include_str!("../../ui/app.css");
const FAVICON_SVG: &str = include_str!("../../ui/favicon.svg");

/// The sign-in page's message for a wrong token, hidden until one was given.
const WRONG_TOKEN_HIDDEN: &str = r#"<p class="error" id="wrong" hidden>"#;
const WRONG_TOKEN_SHOWN: &str = r#"<p class="error" id="wrong" role="alert">"#;

/// Only this origin's scripts, styles and API; no frames, no plugins, no other origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// The console's routes.
pub(super) fn routes(tokens: Arc<TokenCheck>) -> Router<AppState> {
    let sign_in = tokens.clone();
    Router::new()
        .route("/ui", get(|| async { page(INDEX_HTML) }))
        .route("/ui/", get(|| async { page(INDEX_HTML) }))
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route("/ui/app.css", get(|| async { asset("text/css", APP_CSS) }))
        .route(
            "/ui/favicon.svg",
            get(|| async { asset("image/svg+xml", FAVICON_SVG) }),
        )
        .route(
            "/ui/login",
            get(move || login_page(tokens.clone())).post(move |body: String| {
                let tokens = sign_in.clone();
                async move { login(&tokens, &body) }
            }),
        )
        .route("/ui/logout", post(|| async { logout() }))
}

/// A page of the console, with the headers every page carries.
fn page(html: impl IntoResponse) -> Response {
    let mut r = asset("text/html; charset=utf-8", html);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// A compiled-in file; revalidated on each load, so an upgraded agent serves its own console.
fn asset(content_type: &'static str, body: impl IntoResponse) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

/// Where to go after signing in, or when there is nothing to sign in to.
fn to(location: &'static str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, HeaderValue::from_static(location))],
    )
        .into_response()
}

async fn login_page(tokens: Arc<TokenCheck>) -> Response {
    if !tokens.required() {
        return to("/ui");
    }
    page(LOGIN_HTML)
}

/// `POST /ui/login` with the form field `token`: a session cookie and the console, or the
/// sign-in page again with a 401.
fn login(tokens: &TokenCheck, body: &str) -> Response {
    if !tokens.required() {
        return to("/ui");
    }
    let token = super::serde_urlencoded_pairs(body)
        .ok()
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "token"))
        .map(|(_, v)| v);
    match token.and_then(|t| tokens.session_for(&t)) {
        Some(session) => {
            let cookie = format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict");
            let mut r = to("/ui");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        None => {
            let mut r = page(LOGIN_HTML.replace(WRONG_TOKEN_HIDDEN, WRONG_TOKEN_SHOWN));
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
    }
}

fn logout() -> Response {
    let mut r = to("/ui/login");
    let expired = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&expired) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{serve_on_one_worker, state};

    /// A client that shows redirects instead of following them.
    fn client() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into()
    }

    fn header(r: &ureq::http::Response<ureq::Body>, name: &str) -> String {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn with_a_token_the_console_signs_in_with_a_session_cookie() {
        let dir = tempfile::tempdir().unwrap();
        let (url, stop, server) =
            serve_on_one_worker(state(dir.path(), "auth_token = \"s3cret-token\""));
        let c = client();
        // Pages redirect to the sign-in page; the API answers 401 as before.
        for page in ["/ui", "/ui/", "/ui/app.js"] {
            let r = c.get(format!("{url}{page}")).call().unwrap();
            assert_eq!(r.status(), 303, "{page}");
            assert_eq!(header(&r, "location"), "/ui/login");
        }
        assert_eq!(
            c.get(format!("{url}/v1/schema")).call().unwrap().status(),
            401
        );
        let mut r = c.get(format!("{url}/ui/login")).call().unwrap();
        assert_eq!(r.status(), 200);
        assert!(header(&r, "content-security-policy").contains("default-src 'none'"));
        let body = r.body_mut().read_to_string().unwrap();
        assert!(
            body.contains(r#"id="wrong" hidden"#),
            "no error before a try"
        );
        // A wrong token: the page again, with the error shown, and no cookie.
        let login = |token: &str| {
            c.post(format!("{url}/ui/login"))
                .content_type("application/x-www-form-urlencoded")
                .send(format!("token={token}"))
                .unwrap()
        };
        let mut wrong = login("s3cret");
        assert_eq!(wrong.status(), 401);
        assert_eq!(header(&wrong, "set-cookie"), "");
        assert!(wrong
            .body_mut()
            .read_to_string()
            .unwrap()
            .contains(r#"role="alert""#));
        // The right one (percent-encoded as a form sends it): a session cookie, then the
        // console and the API with it, and no token in the cookie.
        let right = login("s3cret%2Dtoken");
        assert_eq!(right.status(), 303);
        assert_eq!(header(&right, "location"), "/ui");
        let cookie = header(&right, "set-cookie");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        assert!(!cookie.contains("s3cret"), "{cookie}");
        let session = cookie.split(';').next().unwrap().to_string();
        let with = |path: &str| {
            c.get(format!("{url}{path}"))
                .header("cookie", &session)
                .call()
                .unwrap()
        };
        let mut page = with("/ui");
        assert_eq!(page.status(), 200);
        assert_eq!(header(&page, "x-frame-options"), "DENY");
        assert!(page
            .body_mut()
            .read_to_string()
            .unwrap()
            .contains("/ui/app.js"));
        let mut schema = with("/v1/schema");
        assert_eq!(schema.status(), 200);
        let schema: serde_json::Value =
            serde_json::from_str(&schema.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(schema["dims"][0]["name"], "user");
        assert_eq!(schema["counters"][0], "tokens");
        assert_eq!(schema["labels"][0], "note");
        assert_eq!(schema["auth"], true);
        assert_eq!(schema["fleet"], false);
        assert_eq!(with("/v1/aggregate").status(), 200);
        assert_eq!(with("/ui/app.css").status(), 200);
        // A wrong bearer token is not rescued by a good cookie: the header is what was meant.
        let r = c
            .get(format!("{url}/v1/aggregate"))
            .header("cookie", &session)
            .header("authorization", "Bearer nope")
            .call()
            .unwrap();
        assert_eq!(r.status(), 401);
        // Signing out expires the cookie.
        let out = c
            .post(format!("{url}/ui/logout"))
            .header("cookie", &session)
            .send_empty()
            .unwrap();
        assert_eq!(out.status(), 303);
        assert!(header(&out, "set-cookie").contains("Max-Age=0"));
        let _ = stop.send(());
        server.join().unwrap();
    }

    #[test]
    fn without_a_token_the_console_is_open_and_its_assets_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        let (url, stop, server) = serve_on_one_worker(state(dir.path(), ""));
        let c = client();
        let login = c.get(format!("{url}/ui/login")).call().unwrap();
        assert_eq!(login.status(), 303, "nothing to sign in to");
        assert_eq!(header(&login, "location"), "/ui");
        for (path, kind) in [
            ("/ui", "text/html; charset=utf-8"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/app.css", "text/css"),
            ("/ui/favicon.svg", "image/svg+xml"),
        ] {
            let r = c.get(format!("{url}{path}")).call().unwrap();
            assert_eq!(r.status(), 200, "{path}");
            assert_eq!(header(&r, "content-type"), kind, "{path}");
            assert_eq!(header(&r, "x-content-type-options"), "nosniff", "{path}");
        }
        let mut schema = c.get(format!("{url}/v1/schema")).call().unwrap();
        let schema: serde_json::Value =
            serde_json::from_str(&schema.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(schema["auth"], false);
        assert_eq!(
            c.get(format!("{url}/ui/nothing")).call().unwrap().status(),
            404
        );
        let _ = stop.send(());
        server.join().unwrap();
    }
}
