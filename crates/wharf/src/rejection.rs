//! Handshake rejections: every way a handshake can fail, as a response with its status and JSON body.
//!
//! Routing, validation, limits and middleware never build responses by hand; they return a
//! [`Rejection`], which knows its HTTP status, its stable machine-readable `error` string and its
//! message. The body is always JSON: `{"code": <status or app code>, "error": "<kind>", "msg": "<text>"}`.

use http::{HeaderName, HeaderValue, Response, StatusCode, header};

/// The response type of the handshake stage (and of handshake middleware).
pub type HandshakeResponse = Response<String>;

/// A refused handshake: an HTTP status, a JSON body and optional extra headers.
///
/// ```
/// use wharf::Rejection;
/// use http::StatusCode;
/// let r = Rejection::new(StatusCode::FORBIDDEN, "route_forbidden", "this route is not allowed")
///     .with_code(40301);
/// let response = r.into_response();
/// assert_eq!(response.status(), 403);
/// assert!(response.body().contains("\"code\":40301"));
/// ```
#[derive(Debug, Clone)]
pub struct Rejection {
    status: StatusCode,
    code: i64,
    error: &'static str,
    msg: String,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Rejection {
    /// A rejection with `status`, a stable `error` kind and a human message. The JSON `code`
    /// defaults to the numeric status.
    pub fn new(status: StatusCode, error: &'static str, msg: impl Into<String>) -> Rejection {
        Rejection {
            status,
            code: i64::from(status.as_u16()),
            error,
            msg: msg.into(),
            headers: Vec::new(),
        }
    }

    /// Sets the JSON `code` (an application code such as the seed's).
    pub fn with_code(mut self, code: i64) -> Rejection {
        self.code = code;
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Rejection {
        self.headers.push((name, value));
        self
    }

    /// 404 for a path no route matches; carries `Description: Route Error` as the seed's did.
    pub fn route_not_found(path: &str) -> Rejection {
        Rejection::new(
            StatusCode::NOT_FOUND,
            "route_not_found",
            format!("no route for {path}"),
        )
        .with_header(
            HeaderName::from_static("description"),
            HeaderValue::from_static("Route Error"),
        )
    }

    /// 405 for a handshake that is not a GET.
    pub fn method_not_allowed() -> Rejection {
        Rejection::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "a WebSocket handshake must use GET",
        )
        .with_header(header::ALLOW, HeaderValue::from_static("GET"))
    }

    /// 426 for a plain HTTP request to a WebSocket route.
    pub fn upgrade_required() -> Rejection {
        Rejection::new(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "this route only speaks WebSocket",
        )
        .with_header(header::UPGRADE, HeaderValue::from_static("websocket"))
        .with_header(header::CONNECTION, HeaderValue::from_static("Upgrade"))
    }

    /// 426 for a `Sec-WebSocket-Version` other than 13.
    pub fn unsupported_version() -> Rejection {
        Rejection::new(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported_version",
            "sec-websocket-version must be 13",
        )
        .with_header(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        )
    }

    /// 400 for a missing or malformed `Sec-WebSocket-Key`.
    pub fn invalid_key() -> Rejection {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "invalid_key",
            "sec-websocket-key is invalid",
        )
    }

    /// 400 for a request that is not valid HTTP/1.1.
    pub fn bad_request(msg: impl Into<String>) -> Rejection {
        Rejection::new(StatusCode::BAD_REQUEST, "bad_request", msg)
    }

    /// 431 for a request head over the size or header-count limit.
    pub fn headers_too_large() -> Rejection {
        Rejection::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            "request header fields too large",
        )
    }

    /// 503 when the server already holds its maximum number of connections.
    pub fn too_many_connections() -> Rejection {
        Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "the server is at its connection limit; retry later",
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
    }

    /// 429 when the client's address already holds `max_connections_per_ip` connections.
    pub fn too_many_connections_from_ip() -> Rejection {
        Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            "too many connections from your address; retry later",
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
    }

    /// 403 on a `proxy_protocol` listener for a peer that is not in `trusted_proxies`: only
    /// the proxies may connect to it.
    pub fn untrusted_proxy() -> Rejection {
        Rejection::new(
            StatusCode::FORBIDDEN,
            "untrusted_proxy",
            "this listener takes connections from its trusted proxies only",
        )
    }

    /// 400 on a `proxy_protocol` listener for a connection that does not start with a valid
    /// PROXY protocol header (v1 or v2).
    pub fn bad_proxy_header(error: &dyn std::fmt::Display) -> Rejection {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "bad_proxy_header",
            error.to_string(),
        )
    }

    /// 403 for a browser handshake whose `Origin` the route does not allow (cross-site
    /// WebSocket hijacking: a page on another site opening a socket with the user's cookies).
    pub fn origin_forbidden(origin: &str) -> Rejection {
        Rejection::new(
            StatusCode::FORBIDDEN,
            "origin_forbidden",
            // The client's own header, shortened: a rejection never echoes much of its input.
            format!(
                "origin {} is not allowed on this route",
                origin.chars().take(100).collect::<String>()
            ),
        )
    }

    /// 500 for a middleware that failed (its error is logged, never sent).
    pub fn internal() -> Rejection {
        Rejection::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable machine-readable kind, such as `route_not_found`.
    pub fn error(&self) -> &'static str {
        self.error
    }

    /// The human message.
    pub fn msg(&self) -> &str {
        &self.msg
    }

    /// Builds the HTTP response: JSON body, `Content-Type: application/json`, extra headers.
    pub fn into_response(self) -> HandshakeResponse {
        let body = serde_json::json!({ "code": self.code, "error": self.error, "msg": self.msg });
        let mut response = Response::new(body.to_string());
        *response.status_mut() = self.status;
        // The kind travels with the response as data, so the metrics read it from there
        // (through any error handler that keeps the extensions) instead of from the body.
        response.extensions_mut().insert(RefusalReason(self.error));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        response
    }
}

/// The `error` kind of the [`Rejection`] a response was built from, kept in its extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RefusalReason(pub(crate) &'static str);

/// Why a handshake was refused, for the metrics: the kind of the rejection the response was
/// built from, else `status_<code>` (a response a middleware or error handler made itself).
pub(crate) fn refusal_reason(response: &HandshakeResponse) -> std::borrow::Cow<'static, str> {
    match response.extensions().get::<RefusalReason>() {
        Some(RefusalReason(kind)) => std::borrow::Cow::Borrowed(kind),
        None => std::borrow::Cow::Owned(format!("status_{}", response.status().as_u16())),
    }
}

impl From<Rejection> for HandshakeResponse {
    fn from(rejection: Rejection) -> Self {
        rejection.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_has_json_body_and_description_header() {
        let response = Rejection::route_not_found("/nope").into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()["description"], "Route Error");
        let body: serde_json::Value = serde_json::from_str(response.body()).expect("json");
        assert_eq!(body["code"], 404);
        assert_eq!(body["error"], "route_not_found");
    }
}
