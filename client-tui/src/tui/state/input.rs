//! The input line's memory: lines sent before, recalled with Up and Down as in weechat
//! or a shell, and Tab completion of commands, rooms and user names.
//!
//! The text being edited lives in the cursive `EditView`; the state only sees it when a
//! key asks for history or completion, and answers with the new content.

use std::collections::VecDeque;

use super::super::command::COMMAND_NAMES;

/// How many sent lines are remembered.
const HISTORY_LEN: usize = 100;

/// Lines sent before, newest last, and where Up/Down are in them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputHistory {
    lines: VecDeque<String>,
    /// The line shown, counted from the newest (`None`: the draft is shown).
    position: Option<usize>,
    /// What was typed before the first Up, given back after the last Down.
    draft: String,
}

impl InputHistory {
    /// Remembers a sent line (not a repeat of the previous one) and leaves the history.
    pub fn push(&mut self, line: &str) {
        self.reset();
        if line.trim().is_empty() || self.lines.back().is_some_and(|l| l == line) {
            return;
        }
        if self.lines.len() == HISTORY_LEN {
            self.lines.pop_front();
        }
        self.lines.push_back(line.to_owned());
    }

    /// Leaves the history without remembering anything (the next Up starts afresh).
    pub fn reset(&mut self) {
        self.position = None;
        self.draft.clear();
    }

    /// Up: the line before the one shown (`current` is what the input holds now).
    /// `None` when there is nothing older.
    pub fn older(&mut self, current: &str) -> Option<String> {
        let next = self.position.map_or(0, |p| p + 1);
        if next >= self.lines.len() {
            return None;
        }
        if self.position.is_none() {
            self.draft = current.to_owned();
        }
        self.position = Some(next);
        self.lines.get(self.lines.len() - 1 - next).cloned()
    }

    /// Down: the line after the one shown, then the draft. `None` outside the history.
    pub fn newer(&mut self) -> Option<String> {
        match self.position? {
            0 => {
                self.position = None;
                Some(std::mem::take(&mut self.draft))
            }
            p => {
                self.position = Some(p - 1);
                self.lines.get(self.lines.len() - p).cloned()
            }
        }
    }
}

/// What Tab made of the input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Nothing starts like the last word.
    None,
    /// The new line (one candidate, or the longest prefix shared by several), and the
    /// candidates when more than one fits.
    Line {
        /// The line with its last word completed.
        line: String,
        /// Every candidate when several fit (shown on the status line).
        choices: Vec<String>,
    },
}

/// Completes the last word of `line`: a command at the start of the line (`/jo` →
/// `/join `), a room after `#`, otherwise a user name (`bo` → `bob: ` at the start of the
/// line, `bob ` elsewhere). Matching ignores case.
pub fn complete(line: &str, rooms: &[String], users: &[String]) -> Completion {
    let start = line.rfind(' ').map_or(0, |i| i + 1);
    let (head, word) = line.split_at(start);
    if word.is_empty() {
        return Completion::None;
    }
    let (candidates, suffix): (Vec<String>, &str) = if head.is_empty() && word.starts_with('/') {
        (COMMAND_NAMES.iter().map(|c| (*c).to_owned()).collect(), " ")
    } else if word.starts_with('#') {
        (rooms.iter().map(|r| format!("#{r}")).collect(), " ")
    } else if head.is_empty() {
        (users.to_vec(), ": ")
    } else {
        (users.to_vec(), " ")
    };
    let lower = word.to_lowercase();
    let mut fits: Vec<String> = candidates
        .into_iter()
        .filter(|c| c.to_lowercase().starts_with(&lower))
        .collect();
    fits.sort_by_key(|c| c.to_lowercase());
    fits.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    match fits.as_slice() {
        [] => Completion::None,
        [one] => Completion::Line {
            line: format!("{head}{one}{suffix}"),
            choices: Vec::new(),
        },
        many => {
            let prefix = shared_prefix(many);
            let word = if prefix.chars().count() > word.chars().count() {
                prefix
            } else {
                word.to_owned()
            };
            Completion::Line {
                line: format!("{head}{word}"),
                choices: many.to_vec(),
            }
        }
    }
}

/// The longest case-insensitive common prefix of `words`, spelled as the first one.
fn shared_prefix(words: &[String]) -> String {
    let Some(first) = words.first() else {
        return String::new();
    };
    let mut len = first.chars().count();
    for w in &words[1..] {
        len = first
            .chars()
            .zip(w.chars())
            .take(len)
            .take_while(|(a, b)| a.to_lowercase().eq(b.to_lowercase()))
            .count();
    }
    first.chars().take(len).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_walks_back_and_down_returns_to_the_draft() {
        let mut h = InputHistory::default();
        assert_eq!(h.older("draft"), None, "nothing sent yet");
        h.push("one");
        h.push("two");
        h.push("two");
        assert_eq!(h.older("draft").as_deref(), Some("two"));
        assert_eq!(h.older("two").as_deref(), Some("one"));
        assert_eq!(h.older("one"), None, "\"two\" was remembered once");
        assert_eq!(h.newer().as_deref(), Some("two"));
        assert_eq!(h.newer().as_deref(), Some("draft"));
        assert_eq!(h.newer(), None);
    }

    #[test]
    fn the_history_is_bounded() {
        let mut h = InputHistory::default();
        for i in 0..HISTORY_LEN + 5 {
            h.push(&format!("line {i}"));
        }
        let mut oldest = None;
        while let Some(line) = h.older("") {
            oldest = Some(line);
        }
        assert_eq!(oldest.as_deref(), Some("line 5"));
    }

    #[test]
    fn tab_completes_commands_rooms_and_names() {
        let rooms = vec!["general".to_owned(), "gardening".to_owned()];
        let users = vec![
            "bob".to_owned(),
            "Bernadette".to_owned(),
            "carol".to_owned(),
        ];
        let line = |l: &str| Completion::Line {
            line: l.to_owned(),
            choices: Vec::new(),
        };
        assert_eq!(complete("/jo", &rooms, &users), line("/join "));
        assert_eq!(
            complete("/join #gen", &rooms, &users),
            line("/join #general ")
        );
        assert_eq!(complete("ca", &rooms, &users), line("carol: "));
        assert_eq!(complete("hi CA", &rooms, &users), line("hi carol "));
        assert_eq!(complete("zed", &rooms, &users), Completion::None);
        assert_eq!(complete("hi ", &rooms, &users), Completion::None);
        assert_eq!(
            complete("#g", &rooms, &users),
            Completion::Line {
                line: "#g".into(),
                choices: vec!["#gardening".into(), "#general".into()],
            }
        );
        assert_eq!(
            complete("/re", &rooms, &users),
            Completion::Line {
                line: "/re".into(),
                choices: vec![
                    "/read-markers".into(),
                    "/reconnect".into(),
                    "/refresh".into(),
                    "/retry".into()
                ],
            }
        );
        assert_eq!(
            complete("b", &rooms, &users),
            Completion::Line {
                line: "b".into(),
                choices: vec!["Bernadette".into(), "bob".into()],
            }
        );
    }
}
