//! The admin console at `/admin/`: one HTML page, one stylesheet and one script, compiled into
//! the binary (no CDN, no outside fetch, no build step), that signs in with an admin credential
//! and works only through the admin JSON API ([`super::admin`]).
//!
//! Safe by construction, whatever the data (user agents, metadata, ids and reasons are
//! attacker-controlled):
//! - the script writes every value with `textContent` and builds elements with
//!   `createElement`, never markup from data; the Content-Security-Policy allows scripts and
//!   styles from this origin only (no inline script, no `eval`), no images, frames or plugins,
//!   and requires Trusted Types, so the browser itself refuses any HTML string put into the
//!   page;
//! - the credential lives in one variable of the script's module scope: never in a URL, a
//!   cookie or storage, gone when the tab closes or the operator signs out; requests carry it
//!   as `Authorization: Bearer` with `credentials: "omit"`, so no cookie of this host is sent;
//! - no page may frame the console (`frame-ancestors 'none'`, `X-Frame-Options: DENY`), and
//!   nothing here is cached or sent a referrer.
//!
//! [`security_headers`] puts the same headers on every answer under `/admin/`, the API's too.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};

/// The page.
const INDEX: &str = include_str!("index.html");
/// Its script (an ES module).
const SCRIPT: &str = include_str!("console.js");
/// Its stylesheet.
const STYLE: &str = include_str!("console.css");

/// The policy of every answer under `/admin/`. `connect-src 'self'` is the API; the chart is
/// drawn on a canvas, which needs no source.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'none'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; \
     trusted-types 'none'";

/// Adds the console's security headers to an answer.
pub fn security_headers(mut response: Response) -> Response {
    set_security_headers(response.headers_mut());
    response
}

/// [`security_headers`] as a response middleware (`axum::middleware::map_response`).
pub async fn add_security_headers(response: Response) -> Response {
    security_headers(response)
}

fn set_security_headers(headers: &mut HeaderMap) {
    let fixed = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("same-origin"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    for (name, value) in fixed {
        headers.insert(name, value);
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    security_headers(response)
}

/// `GET /admin/`: the page.
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /admin/console.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /admin/console.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /admin`: the page lives at `/admin/`, so that its relative paths resolve.
pub async fn to_index() -> Response {
    security_headers(Redirect::permanent("/admin/").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        assert!(INDEX.contains(r#"<script type="module" src="/admin/console.js"></script>"#));
        assert_eq!(
            INDEX.matches("<script").count(),
            1,
            "one script, from a file"
        );
        assert!(!INDEX.contains("<style"), "styles come from the stylesheet");
        assert!(!INDEX.contains(" style="), "no inline style attributes");
        let lower = INDEX.to_ascii_lowercase();
        let handlers = lower.split_whitespace().filter(|word| {
            word.strip_prefix("on").is_some_and(|rest| {
                rest.split_once('=').is_some_and(|(name, _)| {
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase())
                })
            })
        });
        assert_eq!(handlers.count(), 0, "no inline event handlers");
    }

    #[test]
    fn the_script_never_writes_markup() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(sink), "console.js uses {sink}");
        }
        for store in [
            "localStorage",
            "sessionStorage",
            "document.cookie",
            "indexedDB",
        ] {
            assert!(!SCRIPT.contains(store), "console.js touches {store}");
        }
    }
}
