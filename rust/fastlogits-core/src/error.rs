//! The one error type of the core.
//!
//! Every variant but [`Error::Internal`] is detected *before* any buffer is written (or on a copy), so a
//! call that returns an error has left its inputs unchanged. The Python bindings map each variant to its
//! own exception class (see `fastlogits-py`'s `errors.rs`).

use std::fmt;

/// What went wrong, with a message that names the argument and the allowed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A constructor parameter outside the range transformers accepts (e.g. `top_p` = 1.7).
    InvalidParameter(String),
    /// Arrays whose shapes do not fit together (batch mismatch, `V = 0`, empty batch, ...).
    Shape(String),
    /// Values the algorithms cannot give a meaning to: NaN or +inf scores, token ids outside `[0, V)`,
    /// a row that is all `-inf` where a distribution is needed.
    InvalidValue(String),
    /// A processor turned valid scores into NaN / `+inf` (float32 overflow: scores near its limits, or an
    /// extreme parameter); the message names the processor.
    Overflow(String),
    /// A broken internal invariant: a bug in fastlogits, not the caller's mistake.
    Internal(String),
}

impl Error {
    pub fn param(msg: impl Into<String>) -> Self {
        Error::InvalidParameter(msg.into())
    }
    pub fn shape(msg: impl Into<String>) -> Self {
        Error::Shape(msg.into())
    }
    pub fn value(msg: impl Into<String>) -> Self {
        Error::InvalidValue(msg.into())
    }
    pub fn overflow(msg: impl Into<String>) -> Self {
        Error::Overflow(msg.into())
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }
    pub fn message(&self) -> &str {
        match self {
            Error::InvalidParameter(m)
            | Error::Shape(m)
            | Error::InvalidValue(m)
            | Error::Overflow(m)
            | Error::Internal(m) => m,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
