//! The puppet-backend harness shared by the headless view tests: keys go in as events, the
//! screen comes out as text, and the commands the views produce are read from the channel
//! the network task would receive.

#![allow(dead_code)]

use std::path::PathBuf;

use client_tui::tui::app::{self, App};
use client_tui::tui::command::Command;
use client_tui::tui::event::{ConnectionState, Me, UiEvent};
use client_tui::tui::network::CommandSender;
use client_tui::tui::profile::Start;
use client_tui::tui::state::AppState;
use client_tui::tui::views;
use client_tui::{DecryptedMessage, HistoryView, KeyStatus, MemberView, RoomView};
use cursive::backends::puppet::observed::ObservedScreen;
use cursive::backends::puppet::Backend;
use cursive::event::Event;
use cursive::views::EditView;
use cursive::{Cursive, CursiveRunner, Vec2};
use shared::crypto::keys::Fingerprint;
use shared::protocol::{RoomList, RoomSummary};
use shared::{DeviceId, MessageId, RoomName, Username};
use tokio::sync::mpsc;

pub struct Harness {
    runner: CursiveRunner<Cursive>,
    input: crossbeam_like::Input,
    frames: crossbeam_like::Frames,
    commands: mpsc::Receiver<Command>,
    last: Option<ObservedScreen>,
}

/// The puppet backend's channel types, named without depending on crossbeam directly.
pub mod crossbeam_like {
    pub type Input = cursive::reexports::crossbeam_channel::Sender<Option<cursive::event::Event>>;
    pub type Frames = cursive::reexports::crossbeam_channel::Receiver<
        cursive::backends::puppet::observed::ObservedScreen,
    >;
}

pub fn name(s: &str) -> Username {
    Username::parse(s).expect("valid username")
}

pub fn room(s: &str) -> RoomName {
    RoomName::parse(s).expect("valid room name")
}

impl Harness {
    pub fn new(start: Start) -> Self {
        let backend = Backend::init(Some(Vec2::new(120, 36)));
        let input = backend.input();
        let frames = backend.stream();
        let mut siv = Cursive::new();
        let (commands, rx) = CommandSender::channel();
        app::install(
            &mut siv,
            App::new(
                AppState::new("ws://test/ws", start),
                commands,
                2048,
                Some(PathBuf::from("/cfg")),
            ),
        );
        let runner = siv.into_runner(backend);
        let mut h = Self {
            runner,
            input,
            frames,
            commands: rx,
            last: None,
        };
        h.step();
        h
    }

    /// A harness past onboarding, logged in as alice.
    pub fn logged_in() -> Self {
        let mut h = Self::new(Start::NewAccount {
            username: None,
            import: None,
            key_path: None,
        });
        h.event(UiEvent::Ready(Me {
            username: name("alice"),
            fingerprint: Fingerprint([0xab; 32]),
            key_path: PathBuf::from("/cfg/keys/alice.pem"),
        }));
        h.event(UiEvent::Connection(ConnectionState::Online));
        h.drain();
        h
    }

    pub fn step(&mut self) {
        self.runner.refresh();
        for _ in 0..5 {
            self.runner.step();
        }
        self.runner.refresh();
        if let Some(frame) = self.frames.try_iter().last() {
            self.last = Some(frame);
        }
    }

    pub fn press(&mut self, event: impl Into<Event>) {
        self.input.send(Some(event.into())).expect("backend alive");
        self.step();
    }

    pub fn type_text(&mut self, text: &str) {
        for c in text.chars() {
            self.input
                .send(Some(Event::Char(c)))
                .expect("backend alive");
        }
        self.step();
    }

    pub fn event(&mut self, event: UiEvent) {
        app::on_event(&mut self.runner, event);
        self.step();
    }

    pub fn screen(&self) -> String {
        self.last
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    pub fn assert_shows(&self, text: &str) {
        let screen = self.screen();
        assert!(screen.contains(text), "{text:?} not on screen:\n{screen}");
    }

    /// What the input line holds now.
    pub fn input_line(&mut self) -> String {
        self.runner
            .call_on_name(views::INPUT, |v: &mut EditView| v.get_content().to_string())
            .unwrap_or_default()
    }

    /// Clears the input line through the keyboard (End, then Ctrl-U, as a user would).
    pub fn clear_input(&mut self) {
        self.press(Event::Key(cursive::event::Key::End));
        self.press(Event::CtrlChar('u'));
    }

    /// A logged-in harness whose lobby lists `general` (open) and `vault` (password).
    pub fn in_lobby() -> Self {
        let mut h = Self::logged_in();
        h.event(UiEvent::RoomList(lobby_list()));
        h.drain();
        h
    }

    /// Whether the UI is still running (it has not quit).
    pub fn running(&self) -> bool {
        self.runner.is_running()
    }

    /// The commands sent to the network task since the last drain, without the typing
    /// notifications that typing in a room sends (see [`Harness::drain_all`]).
    pub fn drain(&mut self) -> Vec<Command> {
        self.drain_all()
            .into_iter()
            .filter(|c| !matches!(c, Command::SetTyping { .. }))
            .collect()
    }

    /// Every command sent to the network task since the last drain.
    pub fn drain_all(&mut self) -> Vec<Command> {
        let mut out = Vec::new();
        while let Ok(c) = self.commands.try_recv() {
            out.push(c);
        }
        out
    }
}

pub fn member(n: &str, byte: u8) -> MemberView {
    MemberView {
        username: name(n),
        fingerprint: Fingerprint([byte; 32]),
        status: KeyStatus::Trusted,
        verified: false,
    }
}

pub fn message(r: &str, seq: u64, sender: &str, text: &str) -> DecryptedMessage {
    DecryptedMessage {
        room: room(r),
        seq,
        message_id: MessageId([seq as u8; 16]),
        sender: name(sender),
        device: DeviceId([1; 16]),
        counter: seq,
        sent_at_ms: 1_700_000_000_000 + seq,
        server_time_ms: 1_700_000_000_000 + seq,
        recipients: vec![name("alice"), name(sender)],
        unknown_recipients: Vec::new(),
        text: text.into(),
    }
}

pub fn opened(r: &str, members: Vec<MemberView>, messages: Vec<DecryptedMessage>) -> UiEvent {
    UiEvent::RoomOpened {
        view: RoomView {
            online: Vec::new(),
            room: room(r),
            owner: name("bob"),
            kind: shared::protocol::RoomKind::Group,
            admins: Vec::new(),
            topic: None,
            read_up_to: 0,
            has_password: true,
            hidden: true,
            members,
            history: HistoryView {
                room: room(r),
                messages,
                rejected: Vec::new(),
                has_more: true,
                next_before: None,
            },
        },
        focus: true,
    }
}

/// The lobby of [`Harness::in_lobby`]: `general` (open) and `vault` (password).
pub fn lobby_list() -> RoomList {
    RoomList {
        rooms: vec![
            RoomSummary {
                name: room("general"),
                has_password: false,
                members: 5,
                members_online: 2,
                topic: None,
            },
            RoomSummary {
                name: room("vault"),
                has_password: true,
                members: 1,
                members_online: 1,
                topic: None,
            },
        ],
        users_online: 3,
        next_after: None,
    }
}
