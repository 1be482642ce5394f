//! Error answers as CertCentral writes them: an HTTP status and
//! `{"errors":[{"code","message"}]}`.

/// Upstream's message for `time_frame_too_long`, verbatim.
pub(crate) const TOO_LONG_MESSAGE: &str = "An error occurred while processing your request.";

/// An error answer: HTTP status, snake_case code, human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, code, message)
    }

    pub(crate) fn too_long() -> ApiError {
        ApiError::bad_request("time_frame_too_long", TOO_LONG_MESSAGE)
    }

    /// The upstream error body shape.
    pub(crate) fn body(&self) -> Vec<u8> {
        error_body(self.code, &self.message)
    }
}

/// `{"errors":[{"code":...,"message":...}]}`.
pub(crate) fn error_body(code: &str, message: &str) -> Vec<u8> {
    serde_json::json!({"errors": [{"code": code, "message": message}]})
        .to_string()
        .into_bytes()
}
