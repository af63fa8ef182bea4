//! What a fault's parameters got wrong against a topology: the field, what is wrong, how to fix
//! it. Plain data, so that every layer can carry it (the error type chains it as a cause).

/// What a fault's parameters got wrong: the field, what is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub field: &'static str,
    pub message: String,
    pub help: String,
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {}", self.message, self.help)
    }
}

impl std::error::Error for ParamError {}

pub fn perr(
    field: &'static str,
    message: impl Into<String>,
    help: impl Into<String>,
) -> ParamError {
    ParamError {
        field,
        message: message.into(),
        help: help.into(),
    }
}
