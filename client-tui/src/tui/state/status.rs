//! The status line: one short message above the help bar, how loud it is, and when it
//! stops being news.

use std::time::{Duration, Instant};

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

impl Level {
    /// How long a status line of this level stays up: information describes the moment,
    /// warnings and errors stay long enough to be read after looking away.
    pub fn lifetime(self) -> Duration {
        match self {
            Self::Info => Duration::from_secs(8),
            Self::Warning => Duration::from_secs(30),
            Self::Error => Duration::from_secs(60),
        }
    }
}

/// The line above the help bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    /// What to say.
    pub text: String,
    /// How loud.
    pub level: Level,
    /// When it was set, so it can expire ([`Level::lifetime`]).
    pub since: Instant,
}

impl StatusLine {
    /// A status line set now.
    pub fn new(text: impl Into<String>, level: Level) -> Self {
        Self {
            text: text.into(),
            level,
            since: Instant::now(),
        }
    }

    /// Whether it has been up for longer than its level's lifetime at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.since) >= self.level.lifetime()
    }
}
