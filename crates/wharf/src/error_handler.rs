//! Error handlers: how a server turns failures into what the client sees.
//!
//! Before the upgrade a failure becomes an HTTP response; after it, a close code. The
//! defaults answer with JSON (`{"code", "error", "msg"}`) and close with 1011; they never send
//! a backtrace or an internal error message to the client (those go to the log).

use crate::conn::Conn;
use crate::middleware::BoxError;
use crate::rejection::{HandshakeResponse, Rejection};
use crate::{CloseCode, HandlerError};

/// Maps a server's errors to responses and close codes. Register one per server with
/// [`ServerBuilder::error_handler`](crate::ServerBuilder::error_handler); every method has a
/// default.
///
/// ```
/// use wharf::{ErrorHandler, Rejection, HandshakeResponse};
///
/// /// Answers unknown routes with an empty body, as the seed's `handleNotFound` did.
/// struct SeedErrors;
///
/// impl ErrorHandler for SeedErrors {
///     fn rejection(&self, rejection: Rejection) -> HandshakeResponse {
///         let mut response = rejection.into_response();
///         if response.status() == 404 {
///             response.body_mut().clear();
///         }
///         response
///     }
/// }
/// ```
pub trait ErrorHandler: Send + Sync + 'static {
    /// Every refused handshake passes here (unknown route, bad handshake, limits); the
    /// default sends the rejection's own JSON response.
    fn rejection(&self, rejection: Rejection) -> HandshakeResponse {
        rejection.into_response()
    }

    /// A middleware returned an error instead of a response. Default: 500 JSON.
    fn middleware_error(&self, error: &BoxError) -> HandshakeResponse {
        let _ = error;
        self.rejection(Rejection::internal())
    }

    /// A handler returned an error (or panicked, with the panic message as the error).
    /// Returns the close code and reason. Default: 1011 `internal error`.
    fn handler_error(&self, conn: &Conn, error: &HandlerError) -> (CloseCode, String) {
        let _ = (conn, error);
        (CloseCode::INTERNAL_ERROR, "internal error".to_owned())
    }
}

/// The default error handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultErrorHandler;

impl ErrorHandler for DefaultErrorHandler {}
