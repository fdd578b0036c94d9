//! The main screen's frame and its chat parts: title bar, room list, timeline, member list,
//! input line, status line and help bar. The lobby pane sits in the same frame
//! ([`super::lobby`]) and is shown instead of the chat pane when the lobby is selected.
//!
//! ```text
//!  e2e-chat · alice · ws://host/ws · online
//! ┌─ Rooms ──┐┌─────────── #den ────────────┐┌─ Members ──────┐
//! │Lobby     ││10:01   bob ✓ hi alice        ││2 members       │
//! │#den      ││10:02 alice ✓ hello           ││✓ alice (you) * │
//! │#town (3) ││10:02    -- → carol joined    ││  3f2a 91bc…    │
//! └──────────┘└──────────────────────────────┘└────────────────┘
//! [#den] > _
//!  status line
//!  F1 Help  F2 My key  …
//! ```

use chrono::{Local, TimeZone};
use cursive::event::{Event, Key};
use cursive::style::{Effect as TextEffect, Style};
use cursive::traits::{Nameable, Resizable};
use cursive::utils::lines::simple::simple_prefix;
use cursive::utils::markup::StyledString;
use cursive::view::{Finder, ScrollStrategy, View};
use cursive::views::{
    EditView, HideableView, LinearLayout, NamedView, OnEventView, Panel, ResizedView, ScrollView,
    TextView,
};
use cursive::Cursive;
use shared::crypto::message;
use shared::protocol::Role;
use shared::Username;

use super::super::command::Action;
use super::super::editing;
use super::super::event::ConnectionState;
use super::super::shell::act as dispatch;
use super::super::state::{
    mentions, short_fingerprint, AppState, Delivery, Entry, EntryKind, Focus, Hot, Level,
    RoomBuffer,
};
use super::super::{multiline, paste};
use super::{help, level_style, lobby, name_style, trust_mark, Unfocusable};

/// The main screen's row of panes.
const BODY: &str = "body";

/// The narrowest screen that still shows the member pane.
const MEMBERS_MIN_SCREEN: usize = 90;

/// The timeline's scroll view.
type TimelineScroll = ScrollView<NamedView<TextView>>;
/// The chat pane's frame.
type ChatPanel = Panel<NamedView<TimelineScroll>>;
/// The hideable chat pane.
type ChatPane = HideableView<ResizedView<NamedView<ChatPanel>>>;
/// The hideable member pane.
type MembersPane = HideableView<ResizedView<Panel<ScrollView<NamedView<TextView>>>>>;

/// Never asks for more width than offered.
///
/// `LinearLayout` first asks every child for its size at a width of 1; a word-wrapped
/// `TextView` inside a `ScrollView` then reports its last (full) width, the layout "gives
/// up" and the members pane on the right is squeezed out. Capping the request keeps the
/// centre flexible, so the fixed-width side panes always get their columns.
pub struct Squeezable<V> {
    inner: V,
}

impl<V: cursive::View> cursive::view::ViewWrapper for Squeezable<V> {
    cursive::wrap_impl!(self.inner: V);

    fn wrap_required_size(&mut self, req: cursive::Vec2) -> cursive::Vec2 {
        let size = self.inner.required_size(req);
        cursive::Vec2::new(size.x.min(req.x), size.y)
    }
}

/// The row of panes under the title bar. Whether the member pane fits is decided here,
/// when the row is laid out at its real width: a render only knows the previous
/// layout's size (`Cursive::screen_size`), so deciding there left the panes one resize
/// behind until the next key press.
pub struct Body {
    inner: LinearLayout,
    /// Whether a room is shown, so its members could be (set by [`render`]).
    members_wanted: bool,
}

impl cursive::view::ViewWrapper for Body {
    cursive::wrap_impl!(self.inner: LinearLayout);

    fn wrap_layout(&mut self, size: cursive::Vec2) {
        let show = self.members_wanted && size.x >= MEMBERS_MIN_SCREEN;
        self.inner
            .call_on_name(super::MEMBERS_PANE, |v: &mut MembersPane| {
                v.set_visible(show)
            });
        self.inner.layout(size);
    }
}

/// The key help bar, fitted to its width when it is laid out (see [`Body`] for why not
/// at render time).
pub struct HelpBar {
    inner: TextView,
}

impl cursive::view::ViewWrapper for HelpBar {
    cursive::wrap_impl!(self.inner: TextView);

    fn wrap_layout(&mut self, size: cursive::Vec2) {
        self.inner.set_content(help::help_bar(size.x));
        self.inner.layout(size);
    }
}

/// What the room list's entries stand for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListTarget {
    /// The lobby.
    Lobby,
    /// A joined room, by canonical name.
    Room(String),
}

/// Builds the main screen and makes it the only layer. Its input line is the only
/// widget that takes the focus (see the module doc of [`super`]).
pub fn show_main(siv: &mut Cursive) {
    let room_list = TextView::new("").with_name(super::ROOM_LIST);

    let timeline = ScrollView::new(TextView::new("").with_name(super::TIMELINE))
        .scroll_strategy(ScrollStrategy::StickToBottom)
        .with_name(super::TIMELINE_SCROLL);
    let chat = HideableView::new(
        Panel::new(timeline)
            .title("Chat")
            .with_name(super::CHAT_PANEL)
            .full_screen(),
    )
    .hidden()
    .with_name(super::CHAT_PANE);
    let members = HideableView::new(
        Panel::new(ScrollView::new(TextView::new("").with_name(super::MEMBERS)))
            .title("Members")
            .fixed_width(26),
    )
    .hidden()
    .with_name(super::MEMBERS_PANE);

    let centre = Squeezable {
        inner: LinearLayout::vertical()
            .child(lobby::build())
            .child(chat)
            .full_screen(),
    };
    let body = Unfocusable::new(
        Body {
            inner: LinearLayout::horizontal()
                .child(Panel::new(room_list).title("Rooms").fixed_width(20))
                .child(centre)
                .child(members),
            members_wanted: false,
        }
        .with_name(BODY),
    )
    .full_height();

    let input = EditView::new()
        .on_edit(|s, text, _| {
            // A line carrying a room password is not shown while it is typed.
            let secret = text
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("/password ");
            s.call_on_name(super::INPUT, |v: &mut EditView| v.set_secret(secret));
            dispatch(s, Action::Edited(text.to_owned()));
        })
        .on_submit(|s, text| {
            let line = multiline::to_message(text);
            set_input(s, "");
            dispatch(s, Action::Submit(line));
        })
        .with_name(super::INPUT);
    // Tab is caught here, on its way to the input line: cursive's layers would otherwise
    // use it to wrap the focus around (back to the input line, the only stop).
    let input = OnEventView::new(input)
        .on_pre_event(Key::Tab, |s| {
            let line = input_text(s);
            dispatch(s, Action::Complete { line });
        })
        // Alt-Enter (and a line break inside a paste, see [`paste`]) or Ctrl-J: a line
        // break in the message.
        .on_pre_event(paste::NEWLINE, |s| insert(s, &[multiline::NEWLINE_MARK]))
        .on_pre_event(Event::CtrlChar('j'), |s| {
            insert(s, &[multiline::NEWLINE_MARK])
        })
        // A Tab inside a paste is text: spaces, so the timeline's columns hold.
        .on_pre_event(paste::TAB, |s| insert(s, PASTED_TAB))
        .on_pre_event(Event::CtrlChar('w'), |s| {
            edit_input(s, editing::delete_word_before)
        })
        .on_pre_event(Event::Ctrl(Key::Left), |s| {
            edit_input(s, |text, cursor| {
                (text.to_owned(), editing::word_start(text, cursor))
            })
        })
        .on_pre_event(Event::Ctrl(Key::Right), |s| {
            edit_input(s, |text, cursor| {
                (text.to_owned(), editing::word_end(text, cursor))
            })
        })
        .full_width();
    let input_line = LinearLayout::horizontal()
        .child(TextView::new("> ").with_name(super::PROMPT))
        .child(input);

    let layout = LinearLayout::vertical()
        .child(TextView::new("").with_name(super::TITLE))
        .child(body)
        .child(input_line)
        .child(TextView::new("").with_name(super::STATUS))
        .child(HelpBar {
            inner: TextView::new(""),
        });
    siv.add_fullscreen_layer(layout.with_name(super::MAIN));
    let _ = siv.focus_name(super::INPUT);
}

/// What the input line holds, as a message (line breaks as `\n`).
pub fn input_text(siv: &mut Cursive) -> String {
    siv.call_on_name(super::INPUT, |v: &mut EditView| {
        multiline::to_message(&v.get_content())
    })
    .unwrap_or_default()
}

/// What a Tab inside a paste becomes in the input line.
const PASTED_TAB: &[char] = &[' '; 4];

/// Inserts `text` at the input line's cursor (a line break mark, a pasted Tab's spaces),
/// then runs the input line's edit callback once.
fn insert(siv: &mut Cursive, text: &[char]) {
    let edited = siv.call_on_name(super::INPUT, |v: &mut EditView| {
        text.iter().map(|c| v.insert(*c)).last()
    });
    if let Some(Some(callback)) = edited {
        callback(siv);
    }
}

/// Applies a word-wise edit to the input line: `edit` maps (text, cursor) to the new
/// text and cursor.
fn edit_input(siv: &mut Cursive, edit: impl FnOnce(&str, usize) -> (String, usize)) {
    siv.call_on_name(super::INPUT, |v: &mut EditView| {
        let (text, cursor) = edit(&v.get_content(), v.get_cursor());
        v.set_content(text);
        v.set_cursor(cursor);
    });
}

/// Replaces what the input line holds with a message (line breaks shown as
/// [`multiline::NEWLINE_MARK`]), with the cursor at its end.
pub fn set_input(siv: &mut Cursive, text: &str) {
    let text = multiline::to_input(text);
    siv.call_on_name(super::INPUT, |v: &mut EditView| {
        v.set_secret(false);
        let end = text.len();
        v.set_content(text);
        v.set_cursor(end);
    });
}

/// Scrolls the timeline one page up. Returns `true` if it was already at the top, which
/// asks for older history.
pub fn page_up(siv: &mut Cursive) -> bool {
    siv.call_on_name(super::TIMELINE_SCROLL, |s: &mut TimelineScroll| {
        if s.is_at_top() {
            return true;
        }
        let viewport = s.content_viewport();
        let page = viewport.height().saturating_sub(1).max(1);
        // Stop sticking to the bottom, or the next layout scrolls straight back down
        // (PgUp "did nothing"); PgDn at the bottom sticks again.
        let _ = s.set_scroll_strategy(ScrollStrategy::KeepRow);
        let _ = s.set_offset((0, viewport.top().saturating_sub(page)));
        false
    })
    .unwrap_or(false)
}

/// Scrolls the timeline one page down, sticking to the bottom again when it gets there.
pub fn page_down(siv: &mut Cursive) {
    siv.call_on_name(super::TIMELINE_SCROLL, |s: &mut TimelineScroll| {
        let viewport = s.content_viewport();
        let page = viewport.height().saturating_sub(1).max(1);
        let _ = s.set_offset((0, viewport.top() + page));
        if s.is_at_bottom() {
            let _ = s.set_scroll_strategy(ScrollStrategy::StickToBottom);
        }
    });
}

/// Re-renders everything but the lobby pane.
pub fn render(siv: &mut Cursive, state: &AppState) {
    // Zero before the first layout: show everything then.
    let width = siv.screen_size().x;
    siv.call_on_name(super::TITLE, |v: &mut TextView| {
        v.set_content(fit(title(state), width))
    });
    siv.call_on_name(super::STATUS, |v: &mut TextView| {
        v.set_content(status(state))
    });
    siv.call_on_name(super::ROOM_LIST, |v: &mut TextView| {
        v.set_content(room_list(state))
    });
    let room = state.current_room();
    siv.call_on_name(super::PROMPT, |v: &mut TextView| {
        v.set_content(match room {
            Some(r) => format!("[{}] > ", r.label()),
            None => "[lobby] > ".to_owned(),
        })
    });
    siv.call_on_name(super::CHAT_PANE, |v: &mut ChatPane| {
        v.set_visible(room.is_some())
    });
    // Narrow terminals give the conversation the room (decided at layout, see
    // [`Body`]); F3 still lists the members.
    siv.call_on_name(BODY, |v: &mut Body| v.members_wanted = room.is_some());
    let Some(room) = room else {
        return;
    };
    siv.call_on_name(super::CHAT_PANEL, |v: &mut ChatPanel| {
        v.set_title(room_title(room))
    });
    siv.call_on_name(super::TIMELINE, |v: &mut TextView| {
        v.set_content(timeline(room, state.me.as_ref().map(|m| &m.username)))
    });
    siv.call_on_name(super::MEMBERS, |v: &mut TextView| {
        v.set_content(members(room, state))
    });
}

fn title(state: &AppState) -> StyledString {
    let mut out = StyledString::styled(" e2e-chat ", Style::from(TextEffect::Bold));
    if let Some(me) = &state.me {
        out.append_plain(format!("· {} ", me.username));
    }
    out.append_plain(format!("· {} · ", state.server_url));
    let (text, level) = match &state.connection {
        ConnectionState::Online => ("online".to_owned(), Level::Info),
        ConnectionState::Connecting => ("connecting…".to_owned(), Level::Warning),
        ConnectionState::Offline { retry_in, .. } => (
            format!("offline, retrying in {} s", retry_in.as_secs().max(1)),
            Level::Warning,
        ),
        ConnectionState::Stopped { .. } => ("offline".to_owned(), Level::Error),
    };
    match level {
        Level::Info => out.append_styled(
            text,
            Style::from(cursive::style::Color::Dark(
                cursive::style::BaseColor::Green,
            )),
        ),
        other => out.append_styled(text, level_style(other)),
    }
    append_hotlist(&mut out, &state.hotlist());
    out
}

/// `line` cut to `width` columns with a closing "…" if it is wider, so a long hotlist
/// never wraps the title bar onto a second row (`0`: the width is not known yet, keep it
/// whole). Cuts between grapheme clusters, measured as cursive lays them out.
fn fit(line: StyledString, width: usize) -> StyledString {
    if width == 0 || line.width() <= width {
        return line;
    }
    let room = width - 1;
    let mut out = StyledString::new();
    let mut used = 0;
    for span in line.spans() {
        let kept = simple_prefix(span.content, room - used);
        out.append_styled(&span.content[..kept.length], *span.attr);
        used += kept.width;
        if kept.length < span.content.len() {
            break;
        }
    }
    out.append_plain("…");
    out
}

/// The hotlist after the title: ` · Act: #b(1,@1) #a(2)`, standing out if it holds a
/// mention.
fn append_hotlist(out: &mut StyledString, hot: &[Hot]) {
    if hot.is_empty() {
        return;
    }
    let rooms: Vec<String> = hot
        .iter()
        .map(|h| match h.mentions {
            0 => format!("{}({})", h.label, h.unread),
            m => format!("{}({},@{m})", h.label, h.unread),
        })
        .collect();
    let style = if hot.iter().any(|h| h.mentions > 0) {
        mention_style()
    } else {
        Style::from(TextEffect::Bold)
    };
    out.append_plain(" · ");
    out.append_styled(format!("Act: {}", rooms.join(" ")), style);
}

fn status(state: &AppState) -> StyledString {
    match &state.status {
        Some(line) => StyledString::styled(format!(" {}", line.text), level_style(line.level)),
        None => StyledString::new(),
    }
}

/// The heading above the direct conversations in the room list.
pub const DIRECT_HEADING: &str = "Direct";

/// The room list: the lobby, then each joined group room, then each direct conversation
/// (labelled by the other user), with its unread count.
pub fn room_list_items(state: &AppState) -> Vec<(String, ListTarget)> {
    let mut items = vec![("Lobby".to_owned(), ListTarget::Lobby)];
    for room in state.listed_rooms() {
        let mut label = room.label();
        if room.ended.is_some() {
            label.push_str(" ✗");
        }
        match (room.unread, room.mentions) {
            (0, _) => {}
            (n, 0) => label.push_str(&format!(" ({n})")),
            (n, m) => label.push_str(&format!(" ({n} @{m})")),
        }
        items.push((label, ListTarget::Room(room.name.canonical())));
    }
    items
}

/// The room list as text: the shown entry reversed, rooms with unread messages bold.
/// It is only read: Ctrl-N/P and Alt-arrows move through it from the input line.
fn room_list(state: &AppState) -> StyledString {
    let shown = match &state.focus {
        Focus::Lobby => ListTarget::Lobby,
        Focus::Room(key) => ListTarget::Room(key.clone()),
    };
    let mut out = StyledString::new();
    let mut heading_shown = false;
    for (label, target) in room_list_items(state) {
        let direct = matches!(&target, ListTarget::Room(key)
            if state.rooms.iter().any(|r| r.name.canonical() == *key && r.peer.is_some()));
        if direct && !heading_shown {
            out.append_styled(format!("─ {DIRECT_HEADING} ─\n"), level_style(Level::Info));
            heading_shown = true;
        }
        let unread = matches!(&target, ListTarget::Room(key)
            if state.rooms.iter().any(|r| r.name.canonical() == *key && r.unread > 0));
        let mentioned = matches!(&target, ListTarget::Room(key)
            if state.rooms.iter().any(|r| r.name.canonical() == *key && r.mentions > 0));
        let style = if target == shown {
            Style::from(TextEffect::Reverse)
        } else if mentioned {
            mention_style()
        } else if unread {
            Style::from(TextEffect::Bold)
        } else {
            Style::none()
        };
        out.append_styled(label, style);
        out.append_plain("\n");
    }
    out
}

/// The room's header: its name, its settings and its topic.
pub fn room_title(room: &RoomBuffer) -> String {
    let mut flags = Vec::new();
    if room.peer.is_some() {
        flags.push("direct");
    }
    if room.hidden {
        flags.push("hidden");
    }
    if room.has_password {
        flags.push("password");
    }
    if room.ended.is_some() {
        flags.push("you are not a member");
    }
    let mut title = room.label();
    if !flags.is_empty() {
        title.push_str(&format!(" ({})", flags.join(", ")));
    }
    if let Some(topic) = &room.topic {
        title.push_str(&format!(" — {topic}"));
    }
    title
}

/// "bob is typing…", "bob and carol are typing…", or nothing.
pub fn typing_line(room: &RoomBuffer) -> Option<String> {
    let names: Vec<Username> = room.typing.iter().map(|(u, _)| u.clone()).collect();
    match names.len() {
        0 => None,
        1 => Some(format!("{} is typing…", names[0])),
        _ => Some(format!("{} are typing…", super::super::event::list(&names))),
    }
}

/// How a mention of the user stands out (the text, and its room in the list).
fn mention_style() -> Style {
    Style::from(cursive::style::Color::Dark(
        cursive::style::BaseColor::Yellow,
    ))
    .combine(TextEffect::Bold)
}

/// Local time of a timestamp: `HH:MM` today, `MM-DD HH:MM` on other days.
pub fn local_time(ms: u64) -> String {
    let Ok(ms) = i64::try_from(ms) else {
        return "--:--".into();
    };
    let Some(time) = Local.timestamp_millis_opt(ms).single() else {
        return "--:--".into();
    };
    if time.date_naive() == Local::now().date_naive() {
        time.format("%H:%M").to_string()
    } else {
        time.format("%m-%d %H:%M").to_string()
    }
}

/// The timeline as styled text: `time sender mark text`, senders right-aligned; messages
/// from others that mention `me` stand out.
pub fn timeline(room: &RoomBuffer, me: Option<&Username>) -> StyledString {
    let width = room
        .timeline
        .entries()
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Message { sender, .. } | EntryKind::Rejected { sender, .. } => {
                Some(sender.as_str().len())
            }
            EntryKind::Notice { .. } => None,
        })
        .max()
        .unwrap_or(3)
        .clamp(3, 16);
    let mut out = StyledString::new();
    if room.has_more {
        out.append_styled(
            "  (older messages: PgUp at the top, or F9)\n",
            level_style(Level::Info),
        );
    }
    if room.loading_older {
        out.append_styled("  loading older messages…\n", level_style(Level::Info));
    }
    let mut day = None;
    for entry in room.timeline.entries() {
        let date = local_date(entry.time_ms);
        if date.is_some() && date != day {
            if let Some(date) = date {
                out.append_styled(
                    format!("──── {} ────\n", date.format("%A %-d %B %Y")),
                    level_style(Level::Info),
                );
            }
            day = date;
        }
        append_entry(&mut out, entry, width, me);
    }
    if let Some(typing) = typing_line(room) {
        out.append_styled(
            format!("{:>width$} {typing}\n", ""),
            level_style(Level::Info),
        );
    }
    out
}

/// The local calendar day of a timestamp (`None` if it is out of range).
fn local_date(ms: u64) -> Option<chrono::NaiveDate> {
    let ms = i64::try_from(ms).ok()?;
    Some(Local.timestamp_millis_opt(ms).single()?.date_naive())
}

/// Appends a message's text, one timeline line per line of it; the lines after the
/// first start under the first (at column `indent`), so a multi-line message reads as one
/// block beside its sender.
fn append_text(out: &mut StyledString, text: &str, style: Style, indent: usize) {
    for (i, line) in multiline::display_lines(text).into_iter().enumerate() {
        if i > 0 {
            out.append_plain(format!("\n{:indent$}", ""));
        }
        out.append_styled(line, style);
    }
}

/// How many terminal columns `text` takes, measured as cursive lays it out.
fn columns(text: &str) -> usize {
    StyledString::plain(text).width()
}

fn append_entry(out: &mut StyledString, entry: &Entry, width: usize, me: Option<&Username>) {
    let time = format!("{} ", local_time(entry.time_ms));
    let mut indent = columns(&time);
    out.append_styled(time, level_style(Level::Info));
    match &entry.kind {
        EntryKind::Message {
            sender,
            text,
            delivery,
            own,
            disputed_server_time,
            unknown_recipients,
            ..
        } => {
            // An action ("/me waves") keeps the name column empty and reads
            // "* bob waves" after the mark.
            let action = message::action(text);
            let name = format!(
                "{:>width$}",
                if action.is_some() {
                    ""
                } else {
                    sender.as_str()
                }
            );
            indent += columns(&name);
            out.append_styled(name, name_style(sender.as_str(), *own));
            let (mark, style) = match delivery {
                Delivery::Verified => (
                    " ✓ ",
                    Style::from(cursive::style::Color::Dark(
                        cursive::style::BaseColor::Green,
                    )),
                ),
                Delivery::Sending => (" … ", level_style(Level::Info)),
                Delivery::Waiting => (" ↻ ", level_style(Level::Warning)),
                Delivery::Failed(_) => (" ✗ ", level_style(Level::Error)),
            };
            indent += columns(mark);
            out.append_styled(mark, style);
            if disputed_server_time.is_some() {
                indent += columns("⏱ ");
                out.append_styled("⏱ ", level_style(Level::Warning));
            }
            let style = if !*own && me.is_some_and(|me| mentions(text, me)) {
                mention_style()
            } else {
                Style::none()
            };
            match action {
                Some(action) => {
                    out.append_plain("* ");
                    out.append_styled(sender.as_str(), name_style(sender.as_str(), *own));
                    out.append_plain(" ");
                    append_text(out, action, style.combine(TextEffect::Italic), indent);
                }
                None => append_text(out, text, style, indent),
            }
            match delivery {
                Delivery::Failed(reason) => out.append_styled(
                    format!("  (not sent: {reason} /retry sends it again)"),
                    level_style(Level::Error),
                ),
                Delivery::Waiting => out.append_styled(
                    "  (waiting for the connection; sent once online)",
                    level_style(Level::Warning),
                ),
                Delivery::Verified | Delivery::Sending => {}
            }
            if let Some(server) = disputed_server_time {
                out.append_styled(
                    format!(
                        "  (⏱ signed at {}, stored by the server at {}: a clock is wrong, or \
                         it was held back)",
                        local_time(entry.time_ms),
                        local_time(*server)
                    ),
                    level_style(Level::Warning),
                );
            }
            if !unknown_recipients.is_empty() {
                let names = super::super::event::list(unknown_recipients);
                let who = if unknown_recipients.len() == 1 {
                    "who is"
                } else {
                    "who are"
                };
                out.append_styled(
                    format!("  (⚠ also sent to {names}, {who} not shown as a member)"),
                    level_style(Level::Warning),
                );
            }
        }
        EntryKind::Rejected {
            seq,
            sender,
            reason,
        } => {
            out.append_styled(
                format!(
                    "{:>width$} ⚠ message #{seq} from {sender} refused: {reason}",
                    "!!"
                ),
                level_style(Level::Warning),
            );
        }
        EntryKind::Notice { text, level } => {
            let dashes = format!("{:>width$} ", "--");
            indent += columns(&dashes);
            out.append_styled(dashes, level_style(Level::Info));
            let style = if *level == Level::Info {
                Style::from(cursive::style::Color::Dark(cursive::style::BaseColor::Cyan))
            } else {
                level_style(*level)
            };
            append_text(out, text, style, indent);
        }
    }
    out.append_plain("\n");
}

/// The member list: a trust mark, the name, an online dot (● online, ○ offline) and a
/// short fingerprint.
pub fn members(room: &RoomBuffer, state: &AppState) -> StyledString {
    let mut out = StyledString::styled(
        format!(
            "{}\n",
            super::super::state::plural(room.members.len(), "member")
        ),
        Style::from(TextEffect::Bold),
    );
    for m in &room.members {
        let own = state
            .me
            .as_ref()
            .is_some_and(|me| me.username.same_as(&m.username));
        let (mark, _, level) = trust_mark(m);
        let style = match level {
            Level::Info => Style::from(cursive::style::Color::Dark(
                cursive::style::BaseColor::Green,
            )),
            other => level_style(other),
        };
        out.append_styled(format!("{mark:<2}"), style);
        out.append_plain(" ");
        out.append_styled(m.username.as_str(), name_style(m.username.as_str(), own));
        out.append_plain(match (room.peer.is_some(), room.role_of(&m.username)) {
            (true, _) | (false, Role::Member) => "",
            (false, Role::Owner) => " ★",
            (false, Role::Admin) => " @",
        });
        if own {
            out.append_plain(" (you)");
        }
        if own || room.is_online(&m.username) {
            let green = cursive::style::Color::Dark(cursive::style::BaseColor::Green);
            out.append_styled(" ●", Style::from(green));
        } else {
            out.append_styled(" ○", level_style(Level::Info));
        }
        out.append_plain("\n  ");
        out.append_styled(short_fingerprint(&m.fingerprint), level_style(Level::Info));
        out.append_plain("\n");
    }
    out.append_styled(
        "\n✓✓ verified\n✓ trusted on first use\n● online · ○ offline\n★ owner · @ admin\nF3 verify keys",
        level_style(Level::Info),
    );
    out
}

/// Wraps a dialog so Esc closes it.
pub fn closable<V: cursive::View>(view: V) -> OnEventView<V> {
    OnEventView::new(view).on_event(Key::Esc, |s| {
        s.pop_layer();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_wider_than_the_screen_is_cut_with_an_ellipsis_keeping_its_styles() {
        let mut line = StyledString::styled(" e2e ", Style::from(TextEffect::Bold));
        line.append_plain("· Act: #a(1) #b(2) #c(3)");
        assert_eq!(fit(line.clone(), 0), line, "no width known yet");
        assert_eq!(fit(line.clone(), 200), line, "fits");
        let cut = fit(line.clone(), 12);
        assert_eq!(cut.source(), " e2e · Act:…");
        assert_eq!(cut.width(), 12);
        assert_eq!(
            cut.spans().next().map(|s| *s.attr),
            Some(Style::from(TextEffect::Bold))
        );
        let cut = fit(line, 3);
        assert_eq!(cut.source(), " e…", "cut inside the first span");
    }

    #[test]
    fn wide_characters_are_never_split_past_the_width() {
        // "界" takes two columns: 5 columns hold "ab界" and the ellipsis, not "ab界界".
        let cut = fit(StyledString::plain("ab界界界"), 5);
        assert_eq!(cut.source(), "ab界…");
        let cut = fit(StyledString::plain("ab界界界"), 4);
        assert_eq!(cut.source(), "ab…", "half a wide character is left out");
        assert!(cut.width() <= 4);
    }
}
