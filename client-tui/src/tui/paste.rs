//! Pastes arrive as one message: a backend wrapper that tells a pasted line break from
//! the Enter that sends.
//!
//! # Why not bracketed paste
//! crossterm can report a whole paste as one `Event::Paste`, but cursive 0.21's crossterm
//! backend never enables bracketed paste and treats `Event::Paste` as unreachable (it
//! panics), and it reads crossterm's event queue itself, so a wrapper cannot take the
//! paste events out without re-implementing its key translation. A paste therefore reaches
//! cursive as the keys it is made of, one of them Enter for every line break.
//!
//! # The burst rule
//! A person cannot press another key within [`PASTE_GAP`] of Enter; a paste's next byte
//! is already waiting. So an Enter followed by more input within the gap is a line break
//! inside a paste and becomes [`NEWLINE`] (the Alt-Enter the input line turns into a
//! line break); an Enter with nothing after it sends, as before. The only cost is that
//! gap of latency on a real Enter. A paste that ends with a line break sends itself when
//! it arrives (as a terminal would run a pasted command): one message, never one per line,
//! and a long one asks first (see [`super::multiline::LINES_WITHOUT_ASKING`]).
//!
//! A Tab follows the same rule: with more input waiting it is pasted text (say, indented
//! code) and becomes [`TAB`], which the input line turns into spaces, instead of asking
//! for a completion.

use std::time::Duration;

use cursive::backend::Backend;
use cursive::backends::crossterm::crossterm::event::poll;
use cursive::event::{Event, Key};
use cursive::style::{ColorPair, Effect};
use cursive::Vec2;

/// How soon after an Enter more input must be waiting for the Enter to be pasted.
pub const PASTE_GAP: Duration = Duration::from_millis(8);

/// The event a pasted line break becomes: the same as Alt-Enter, a line break in the
/// input line.
pub const NEWLINE: Event = Event::Alt(Key::Enter);

/// The event a pasted Tab becomes: a tab character, which no key of the terminal sends
/// (the Tab key arrives as `Key::Tab`).
pub const TAB: Event = Event::Char('\t');

/// What an event from the terminal becomes, given whether more input is already waiting
/// (`more_waiting` is only asked for an Enter or a Tab).
pub fn classify(event: Event, more_waiting: impl FnOnce() -> bool) -> Event {
    let pasted = match event {
        Event::Key(Key::Enter) => NEWLINE,
        Event::Key(Key::Tab) => TAB,
        other => return other,
    };
    if more_waiting() {
        pasted
    } else {
        event
    }
}

/// A backend that passes everything through, except that a pasted Enter becomes
/// [`NEWLINE`] and a pasted Tab [`TAB`].
pub struct PasteAware {
    inner: Box<dyn Backend>,
}

impl PasteAware {
    /// Wraps `inner`, which must read crossterm's event queue (the crossterm backend).
    pub fn boxed(inner: Box<dyn Backend>) -> Box<dyn Backend> {
        Box::new(Self { inner })
    }
}

impl Backend for PasteAware {
    fn poll_event(&mut self) -> Option<Event> {
        let event = self.inner.poll_event()?;
        // A terminal that cannot be polled has nothing waiting: the Enter sends.
        Some(classify(event, || poll(PASTE_GAP).unwrap_or(false)))
    }

    fn set_title(&mut self, title: String) {
        self.inner.set_title(title);
    }

    fn refresh(&mut self) {
        self.inner.refresh();
    }

    fn has_colors(&self) -> bool {
        self.inner.has_colors()
    }

    fn screen_size(&self) -> Vec2 {
        self.inner.screen_size()
    }

    fn move_to(&self, pos: Vec2) {
        self.inner.move_to(pos);
    }

    fn print(&self, text: &str) {
        self.inner.print(text);
    }

    fn clear(&self, color: cursive::style::Color) {
        self.inner.clear(color);
    }

    fn set_color(&self, colors: ColorPair) -> ColorPair {
        self.inner.set_color(colors)
    }

    fn set_effect(&self, effect: Effect) {
        self.inner.set_effect(effect);
    }

    fn unset_effect(&self, effect: Effect) {
        self.inner.unset_effect(effect);
    }

    fn is_persistent(&self) -> bool {
        self.inner.is_persistent()
    }

    fn name(&self) -> &str {
        self.inner.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enter_with_input_waiting_is_a_pasted_line_break() {
        assert_eq!(classify(Event::Key(Key::Enter), || true), NEWLINE);
        assert_eq!(
            classify(Event::Key(Key::Enter), || false),
            Event::Key(Key::Enter)
        );
        assert_eq!(classify(Event::Key(Key::Tab), || true), TAB);
        assert_eq!(
            classify(Event::Key(Key::Tab), || false),
            Event::Key(Key::Tab),
            "a Tab with nothing after it completes"
        );
        // Other keys are never held up asking.
        assert_eq!(
            classify(Event::Char('a'), || panic!("asked for a character")),
            Event::Char('a')
        );
    }
}
