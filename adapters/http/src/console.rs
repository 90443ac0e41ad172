//! The web console (docs/console.md): a page and its script and style, embedded in the
//! binary and served at `/console/` by every node. It holds no state of its own and no
//! credentials: it logs in through the Keystone-compatible token endpoint and calls the
//! DMS API with the token in `X-Auth-Token`, like any client. A header a page cannot be
//! made to send by another site, so no request forgery reaches the API; the token lives
//! in the page's memory only (never in local or session storage).

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};

/// Where the console lives.
pub const PREFIX: &str = "/console";

/// The assets: path under [`PREFIX`], content type, bytes.
const ASSETS: [(&str, &str, &str); 4] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../console/index.html"),
    ),
    (
        "/console.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/console.js"),
    ),
    (
        "/console.css",
        "text/css; charset=utf-8",
        include_str!("../console/console.css"),
    ),
    (
        "/icon.svg",
        "image/svg+xml",
        include_str!("../console/icon.svg"),
    ),
];

/// Only the console's own files, scripts and styles; no inline script, no frames, no
/// other origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'none'; \
     frame-ancestors 'none'; base-uri 'none'";

/// Whether `path` is the console's.
pub fn is_console_path(path: &str) -> bool {
    path == PREFIX || path.starts_with("/console/")
}

/// Answers a request for the console: its files to GET (and HEAD), `/console` sent on to
/// `/console/`, anything else 404 or 405.
pub fn serve(parts: &Parts) -> Response<Bytes> {
    let path = parts.uri.path();
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only");
    }
    if path == PREFIX {
        let mut response = plain(StatusCode::PERMANENT_REDIRECT, "");
        response
            .headers_mut()
            .insert(LOCATION, HeaderValue::from_static("/console/"));
        return response;
    }
    let rest = &path[PREFIX.len()..];
    let Some((_, content_type, text)) = ASSETS.iter().find(|(name, _, _)| *name == rest) else {
        return plain(StatusCode::NOT_FOUND, "no such console file");
    };
    let body = if parts.method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from_static(text.as_bytes())
    };
    let mut response = Response::new(body);
    secure(&mut response, content_type);
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(text.as_bytes()));
    *response.status_mut() = status;
    secure(&mut response, "text/plain; charset=utf-8");
    response
}

/// The headers every console answer carries.
fn secure(response: &mut Response<Bytes>, content_type: &'static str) {
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(method: Method, path: &str) -> Response<Bytes> {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        serve(&request.into_parts().0)
    }

    #[test]
    fn the_console_files_are_served_with_their_policy() {
        let page = get(Method::GET, "/console/");
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let policy = page.headers()["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"));
        let html = std::str::from_utf8(page.body()).unwrap();
        assert!(
            html.contains("console.js") && !html.contains("<script>"),
            "no inline script"
        );
        assert_eq!(
            get(Method::GET, "/console/console.js").status(),
            StatusCode::OK
        );
        assert_eq!(
            get(Method::GET, "/console/console.css").status(),
            StatusCode::OK
        );
        assert!(get(Method::HEAD, "/console/").body().is_empty());
        assert_eq!(
            get(Method::GET, "/console/../secrets.json").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(Method::POST, "/console/").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        let moved = get(Method::GET, "/console");
        assert_eq!(moved.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(moved.headers()["location"], "/console/");
        assert!(is_console_path("/console/x") && !is_console_path("/consoles"));
    }
}
