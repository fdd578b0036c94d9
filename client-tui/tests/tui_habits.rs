//! Habits of a terminal client through the real views (cursive's puppet backend):
//! multi-line messages (Alt-Enter, Ctrl-J, a paste as [`client_tui::tui::paste`] hands it
//! on, a long one asks first), wide and combined characters, and `/me` actions.

use client_tui::tui::command::Command;
use client_tui::tui::paste::NEWLINE;
use cursive::event::{Event, Key};

mod support;

use support::{member, message, opened, Harness};

fn in_den() -> Harness {
    let mut h = Harness::logged_in();
    h.event(opened(
        "den",
        vec![member("alice", 0xab), member("bob", 0x3f)],
        vec![message(
            "den",
            7,
            "bob",
            "first line\nsecond line\n\tindented",
        )],
    ));
    h
}

fn sent_texts(h: &mut Harness) -> Vec<String> {
    h.drain()
        .into_iter()
        .filter_map(|c| match c {
            Command::Send { text, .. } => Some(text),
            _ => None,
        })
        .collect()
}

/// Types `text` as a paste arrives: characters, and a pasted line break for each `\n`.
fn paste(h: &mut Harness, text: &str) {
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            h.press(NEWLINE);
        }
        h.type_text(line);
    }
}

#[test]
fn a_received_multi_line_message_shows_each_line_under_the_first() {
    let h = in_den();
    let screen = h.screen();
    let first = screen
        .lines()
        .find(|l| l.contains("bob ✓ first line"))
        .unwrap_or_else(|| panic!("no first line:\n{screen}"));
    let second = screen
        .lines()
        .find(|l| l.contains("second line"))
        .expect("second line shown");
    let column = |line: &str, text: &str| line.find(text).map(|b| line[..b].chars().count());
    assert_eq!(
        column(first, "first line"),
        column(second, "second line"),
        "the second line starts under the first:\n{screen}"
    );
    // A tab is shown as spaces, not sent raw to the terminal.
    h.assert_shows("    indented");
    assert!(!screen.contains('\t'));
}

#[test]
fn alt_enter_and_ctrl_j_type_a_multi_line_message_sent_as_one() {
    let mut h = in_den();
    h.type_text("one");
    h.press(Event::Alt(Key::Enter));
    h.type_text("two");
    h.press(Event::CtrlChar('j'));
    h.type_text("three");
    assert_eq!(h.input_line(), "one↵two↵three", "shown on one line");
    assert!(sent_texts(&mut h).is_empty(), "a line break sends nothing");
    h.press(Key::Enter);
    assert_eq!(sent_texts(&mut h), vec!["one\ntwo\nthree".to_owned()]);
    assert_eq!(h.input_line(), "");
}

#[test]
fn a_long_paste_is_one_message_and_asks_first() {
    let mut h = in_den();
    let text = "l1\nl2\nl3\nl4\nl5\nl6\nl7";
    paste(&mut h, text);
    h.press(Key::Enter);
    h.assert_shows("Send this message of 7 lines?");
    assert!(sent_texts(&mut h).is_empty(), "nothing sent before asking");
    // The safe default keeps the text for editing.
    h.press(Key::Enter);
    assert_eq!(h.input_line(), "l1↵l2↵l3↵l4↵l5↵l6↵l7");
    assert!(sent_texts(&mut h).is_empty());
    // Asked again, the user sends it: one message with every line.
    h.press(Key::Enter);
    h.press(Key::Left);
    h.press(Key::Enter);
    assert_eq!(sent_texts(&mut h), vec![text.to_owned()]);
    assert_eq!(h.input_line(), "");
    h.assert_shows("alice … l1");
}

#[test]
fn a_multi_line_message_comes_back_from_the_history_whole() {
    let mut h = in_den();
    paste(&mut h, "a\nb");
    h.press(Key::Enter);
    assert_eq!(sent_texts(&mut h), vec!["a\nb".to_owned()]);
    h.press(Key::Up);
    assert_eq!(h.input_line(), "a↵b");
}

/// The screen's rows as cells: a wide character is followed by cursive's continuation
/// cell (`c` on the puppet screen), so every row has as many cells as the screen is wide.
fn rows(h: &Harness) -> Vec<Vec<String>> {
    use unicode_segmentation::UnicodeSegmentation;
    h.screen()
        .lines()
        .skip(2)
        .map(|l| l.graphemes(true).map(str::to_owned).collect())
        .collect()
}

#[test]
fn emoji_sequences_and_cjk_take_two_columns_and_keep_the_layout() {
    let mut h = Harness::logged_in();
    let wide = "👩‍👩‍👧‍👦👍🏽🇫🇷漢字|";
    h.event(opened(
        "den",
        vec![member("alice", 0xab), member("bob", 0x3f)],
        vec![message("den", 7, "bob", wide)],
    ));
    h.type_text("👍🏽x");
    let rows = rows(&h);
    let widths: Vec<usize> = rows.iter().map(Vec::len).collect();
    assert!(
        widths.windows(2).all(|w| w[0] == w[1]),
        "every row as wide as the screen: {widths:?}\n{}",
        h.screen()
    );
    // Each sequence is one cell and its continuation: two columns.
    let expected = "👩‍👩‍👧‍👦 c 👍🏽 c 🇫🇷 c 漢 c 字 c |";
    let joined: Vec<String> = rows.iter().map(|r| r.join(" ")).collect();
    assert!(
        joined.iter().any(|r| r.contains(expected)),
        "{expected:?} not on screen:\n{}",
        h.screen()
    );
    assert!(joined.iter().any(|r| r.contains("👍🏽 c x")), "input line");
    // The member pane's border stays in one column on every row that has it.
    let borders: Vec<usize> = rows
        .iter()
        .filter_map(|r| r.iter().rposition(|c| c == "│"))
        .collect();
    assert!(borders.windows(2).all(|w| w[0] == w[1]), "{borders:?}");
}

#[test]
fn a_long_line_of_wide_characters_wraps_inside_the_timeline() {
    let mut h = Harness::logged_in();
    let long = "漢".repeat(60);
    h.event(opened(
        "den",
        vec![member("alice", 0xab), member("bob", 0x3f)],
        vec![message("den", 7, "bob", &long)],
    ));
    let rows = rows(&h);
    let widths: Vec<usize> = rows.iter().map(Vec::len).collect();
    assert!(widths.windows(2).all(|w| w[0] == w[1]), "{widths:?}");
    let lines_with_han = rows.iter().filter(|r| r.contains(&"漢".to_owned())).count();
    assert!(lines_with_han >= 2, "wrapped:\n{}", h.screen());
}

#[test]
fn me_sends_an_action_shown_with_a_star() {
    let mut h = in_den();
    h.type_text("/me waves");
    h.press(Key::Enter);
    assert_eq!(sent_texts(&mut h), vec!["/me waves".to_owned()]);
    h.assert_shows("* alice waves");
    h.event(client_tui::tui::event::UiEvent::Client(
        client_tui::ClientEvent::Message(message("den", 8, "bob", "/me nods")),
    ));
    h.assert_shows("✓ * bob nods");
    h.type_text("/me");
    h.press(Key::Enter);
    h.assert_shows("usage: /me ACTION");
    assert!(sent_texts(&mut h).is_empty());
}

#[test]
fn a_long_hotlist_is_cut_with_an_ellipsis_and_never_wraps_the_title_bar() {
    use client_tui::tui::event::UiEvent;
    use client_tui::ClientEvent;
    let mut h = Harness::logged_in();
    let rooms: Vec<String> = (1..=15)
        .map(|i| format!("a-rather-long-room-{i}"))
        .collect();
    for r in &rooms {
        h.event(opened(r, vec![member("alice", 0xab)], Vec::new()));
    }
    h.event(opened("den", vec![member("alice", 0xab)], Vec::new()));
    for r in &rooms {
        h.event(UiEvent::Client(ClientEvent::Message(message(
            r, 1, "bob", "news",
        ))));
    }
    let screen = h.screen();
    let lines: Vec<&str> = screen.lines().collect();
    let title = lines
        .iter()
        .position(|l| l.contains("e2e-chat"))
        .unwrap_or_else(|| panic!("no title bar:\n{screen}"));
    assert!(
        lines[title].contains("Act: #a-rather-long-room-1(1)") && lines[title].contains('…'),
        "the hotlist starts and is cut:\n{screen}"
    );
    assert!(
        lines[title + 1].contains('┌'),
        "the panes start on the next row:\n{screen}"
    );
}

#[test]
fn a_tab_inside_a_paste_is_spaces_and_a_tab_typed_completes() {
    use client_tui::tui::paste::TAB;
    let mut h = in_den();
    h.type_text("/jo");
    h.press(TAB);
    h.type_text("x");
    assert_eq!(h.input_line(), "/jo    x", "text, not a completion");
    h.clear_input();
    h.type_text("/jo");
    h.press(Key::Tab);
    assert_eq!(h.input_line(), "/join ", "a Tab typed still completes");
}
