//! Multi-line messages: how a line break is held in the one-line input field, and how a
//! message's text is cut into the lines the timeline shows.
//!
//! The input line is cursive's one-line `EditView`, which would print a raw line feed
//! straight to the terminal. A line break typed with Alt-Enter (or pasted) is therefore
//! held there as [`NEWLINE_MARK`] (`↵`); [`to_message`] and [`to_input`] convert at the
//! boundary between the view and the state, so the state and the network only ever see
//! real `\n`. (A `↵` typed on purpose is therefore sent as a line break.)

/// What stands for a line break in the input line.
pub const NEWLINE_MARK: char = '↵';

/// Messages with more lines than this ask before they are sent (a paste gone wrong).
pub const LINES_WITHOUT_ASKING: usize = 5;

/// The message the input line's text stands for: every [`NEWLINE_MARK`] a line break.
pub fn to_message(input: &str) -> String {
    input.replace(NEWLINE_MARK, "\n")
}

/// The input line's text for a message: every line break a [`NEWLINE_MARK`].
pub fn to_input(message: &str) -> String {
    message
        .replace("\r\n", "\n")
        .replace(['\n', '\r'], &NEWLINE_MARK.to_string())
}

/// How many lines a message has (at least one).
pub fn line_count(text: &str) -> usize {
    text.split('\n').count()
}

/// The lines a message is shown as. Control characters other than the line breaks are
/// made harmless: a tab becomes spaces, anything else (an escape sequence could rewrite
/// the screen) becomes `�`, so every character has the width the layout measures.
pub fn display_lines(text: &str) -> Vec<String> {
    text.split('\n')
        .map(|line| {
            let mut out = String::with_capacity(line.len());
            for c in line.trim_end_matches('\r').chars() {
                match c {
                    '\t' => out.push_str("    "),
                    c if c.is_control() => out.push('\u{FFFD}'),
                    c => out.push(c),
                }
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_round_trip_through_the_input_line() {
        let message = "first\nsecond\n\nfourth";
        let input = to_input(message);
        assert_eq!(input, "first↵second↵↵fourth");
        assert!(!input.contains('\n'));
        assert_eq!(to_message(&input), message);
        assert_eq!(to_input("a\r\nb\rc"), "a↵b↵c");
    }

    #[test]
    fn lines_are_counted_and_control_characters_defused() {
        assert_eq!(line_count("one"), 1);
        assert_eq!(line_count("one\ntwo\n"), 3);
        assert_eq!(
            display_lines("a\tb\r\n\x1b[2Jc"),
            vec!["a    b".to_owned(), "\u{FFFD}[2Jc".to_owned()]
        );
    }
}
