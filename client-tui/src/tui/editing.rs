//! Word-wise editing of the input line, as in a shell or weechat: Ctrl-W deletes the word
//! before the cursor, Ctrl-← and Ctrl-→ move by words. Pure functions over the text and
//! the cursor (a byte offset on a character boundary, as cursive's `EditView` keeps it).

/// Where the word before `cursor` starts (spaces before the cursor are skipped first).
pub fn word_start(text: &str, cursor: usize) -> usize {
    let before = &text[..cursor.min(text.len())];
    let trimmed = before.trim_end_matches(' ');
    trimmed.rfind(' ').map_or(0, |i| i + 1)
}

/// Where the word after `cursor` ends (spaces after the cursor are skipped first).
pub fn word_end(text: &str, cursor: usize) -> usize {
    let cursor = cursor.min(text.len());
    let after = &text[cursor..];
    let skipped = after.len() - after.trim_start_matches(' ').len();
    let rest = &after[skipped..];
    cursor + skipped + rest.find(' ').unwrap_or(rest.len())
}

/// Ctrl-W: the text without the word before `cursor`, and the new cursor.
pub fn delete_word_before(text: &str, cursor: usize) -> (String, usize) {
    let cursor = cursor.min(text.len());
    let start = word_start(text, cursor);
    (format!("{}{}", &text[..start], &text[cursor..]), start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_w_deletes_the_word_before_the_cursor_and_its_trailing_spaces() {
        assert_eq!(
            delete_word_before("hello big world", 15),
            ("hello big ".into(), 10)
        );
        assert_eq!(delete_word_before("hello big  ", 11), ("hello ".into(), 6));
        assert_eq!(delete_word_before("héllo wörld", 7), ("wörld".into(), 0));
        assert_eq!(delete_word_before("", 0), (String::new(), 0));
    }

    #[test]
    fn words_are_crossed_in_both_directions() {
        let text = "one  two three";
        assert_eq!(word_start(text, 14), 9);
        assert_eq!(word_start(text, 9), 5);
        assert_eq!(word_start(text, 5), 0);
        assert_eq!(word_end(text, 0), 3);
        assert_eq!(word_end(text, 3), 8);
        assert_eq!(word_end(text, 8), 14);
        assert_eq!(word_end(text, 14), 14);
    }
}
