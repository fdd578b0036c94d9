//! The status line: one short message above the help bar, and how loud it is.

/// How loud a notice or status line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Ordinary information.
    Info,
    /// Something the user should look at (a refused message, a changed key).
    Warning,
    /// Something failed.
    Error,
}

/// The line above the help bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    /// What to say.
    pub text: String,
    /// How loud.
    pub level: Level,
}
