//! Where a handshake carries its token.
//!
//! In order: `Authorization: Bearer <token>` (or a bare token in that header); the
//! subprotocol `wharf.bearer.<token>` in `Sec-WebSocket-Protocol` (browsers cannot set
//! headers on a WebSocket, but they can offer subprotocols); and, only when enabled, a
//! `token` query parameter.

use http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use http::{Request, StatusCode};
use wharf::Rejection;

/// The subprotocol prefix that carries a token: the client offers `wharf.bearer.<token>`.
pub const BEARER_PROTOCOL_PREFIX: &str = "wharf.bearer.";

/// The token a request carries, or why none was taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found<'a> {
    /// A token, not yet verified.
    Token(&'a str),
    /// No token anywhere.
    Missing,
    /// Only a `token` query parameter, and query tokens are off.
    QueryDisabled,
}

/// Finds the token in `request`. A header that is not visible ASCII is refused.
pub(crate) fn find_token<B>(
    request: &Request<B>,
    query_enabled: bool,
) -> Result<Found<'_>, Rejection> {
    if let Some(value) = request.headers().get(AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| malformed("authorization"))?
            .trim();
        let token = strip_bearer(value);
        if !token.is_empty() {
            return Ok(Found::Token(token));
        }
    }
    for value in request.headers().get_all(SEC_WEBSOCKET_PROTOCOL) {
        let value = value
            .to_str()
            .map_err(|_| malformed("sec-websocket-protocol"))?;
        let token = value
            .split(',')
            .map(str::trim)
            .find_map(|p| p.strip_prefix(BEARER_PROTOCOL_PREFIX))
            .filter(|t| !t.is_empty());
        if let Some(token) = token {
            return Ok(Found::Token(token));
        }
    }
    let query = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .filter(|t| !t.is_empty());
    Ok(match query {
        Some(token) if query_enabled => Found::Token(token),
        Some(_) => Found::QueryDisabled,
        None => Found::Missing,
    })
}

/// `Bearer <t>` (any case) → `<t>`; anything else is taken as a bare token.
fn strip_bearer(value: &str) -> &str {
    match value.get(..6) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer") => {
            let rest = value.get(6..).unwrap_or_default();
            if rest.is_empty() || rest.starts_with([' ', '\t']) {
                rest.trim()
            } else {
                value
            }
        }
        _ => value,
    }
}

fn malformed(header: &str) -> Rejection {
    Rejection::new(
        StatusCode::UNAUTHORIZED,
        "token_malformed",
        format!("the {header} header is not visible ASCII"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], uri: &str) -> Request<()> {
        let mut builder = Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("request")
    }

    #[test]
    fn bearer_bare_and_protocol() {
        let r = request(&[("authorization", "Bearer abc")], "/");
        assert_eq!(find_token(&r, false).ok(), Some(Found::Token("abc")));
        let r = request(&[("authorization", "bearer   abc ")], "/");
        assert_eq!(find_token(&r, false).ok(), Some(Found::Token("abc")));
        let r = request(&[("authorization", "abc.def.ghi")], "/");
        assert_eq!(
            find_token(&r, false).ok(),
            Some(Found::Token("abc.def.ghi"))
        );
        let r = request(&[("authorization", "Bearer")], "/");
        assert_eq!(find_token(&r, false).ok(), Some(Found::Missing));
        let r = request(&[("sec-websocket-protocol", "chat, wharf.bearer.xyz")], "/");
        assert_eq!(find_token(&r, false).ok(), Some(Found::Token("xyz")));
    }

    #[test]
    fn query_only_when_enabled() {
        let r = request(&[], "/wss/demo?a=1&token=q");
        assert_eq!(find_token(&r, true).ok(), Some(Found::Token("q")));
        assert_eq!(find_token(&r, false).ok(), Some(Found::QueryDisabled));
        let r = request(&[], "/wss/demo");
        assert_eq!(find_token(&r, true).ok(), Some(Found::Missing));
    }
}
