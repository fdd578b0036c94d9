//! [`RoomBuffer`]: a joined room as the UI shows it, and how history pages merge into it.

use std::collections::BTreeSet;
use std::time::Instant;

use shared::protocol::Role;
use shared::{RoomName, Username};

use super::super::command::Command;
use super::timeline::Timeline;
use super::Effect;
use crate::directory::MemberView;
use crate::rooms::HistoryView;

/// A joined room as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomBuffer {
    /// The room.
    pub name: RoomName,
    /// For a direct conversation, the other user (the room list and the header name it
    /// by them, never by its `dm.…` name).
    pub peer: Option<Username>,
    /// Who runs it (unknown until the room is opened).
    pub owner: Option<Username>,
    /// The members the owner made admins.
    pub admins: Vec<Username>,
    /// The topic, shown in the room's header.
    pub topic: Option<String>,
    /// The highest `seq` the user has read, here or on another session.
    pub read_up_to: u64,
    /// Who is typing, and when they last said so (they lapse, see
    /// [`TYPING_LAPSE_SECS`](shared::protocol::TYPING_LAPSE_SECS)).
    pub typing: Vec<(Username, Instant)>,
    /// Set when the user is no longer a member (removed, or the room was deleted): why.
    /// The room stays listed, read-only, until the user leaves it (F8).
    pub ended: Option<String>,
    /// Whether joining needs a password.
    pub has_password: bool,
    /// Whether it is hidden from the lobby.
    pub hidden: bool,
    /// The members with their key fingerprints.
    pub members: Vec<MemberView>,
    /// The members online now, by canonical name (the snapshot's word, then `Presence`).
    pub online: BTreeSet<String>,
    /// The lines.
    pub timeline: Timeline,
    /// Messages that arrived while the user looked elsewhere.
    pub unread: usize,
    /// Those of them that mention the user (the room list marks the room with `@`).
    pub mentions: usize,
    /// Whether older messages exist on the server.
    pub has_more: bool,
    /// Whether a page of older messages is on its way.
    pub loading_older: bool,
    /// While catching up after a reconnect: the newest `seq` shown before it. Pages are
    /// fetched backwards from the re-opened room's newest page until they reach it, so
    /// messages that arrived while offline are never left in a gap.
    pub gap_floor: Option<u64>,
    /// The `before_seq` to fetch older messages with, as the server said with the oldest
    /// page so far (`None`: below the oldest message shown).
    pub older_before: Option<u64>,
    /// Canonical names whose addition was shown from a refused send before the client's
    /// `MemberJoined` arrived; that event then completes the line instead of adding one.
    pub announced_joins: Vec<String>,
}

impl RoomBuffer {
    pub(super) fn new(name: RoomName) -> Self {
        Self {
            name,
            peer: None,
            owner: None,
            admins: Vec::new(),
            topic: None,
            read_up_to: 0,
            typing: Vec::new(),
            ended: None,
            has_password: false,
            hidden: false,
            members: Vec::new(),
            online: BTreeSet::new(),
            timeline: Timeline::default(),
            unread: 0,
            mentions: 0,
            has_more: false,
            loading_older: false,
            gap_floor: None,
            older_before: None,
            announced_joins: Vec::new(),
        }
    }

    /// After merging `page`, asks for the page before it while a gap down to
    /// `gap_floor` remains; clears the gap once a page reaches it or nothing older exists.
    pub(super) fn continue_gap_fill(&mut self, page: &HistoryView) -> Vec<Effect> {
        let Some(floor) = self.gap_floor else {
            return Vec::new();
        };
        match page.next_before.or(page.oldest_seq()) {
            Some(oldest) if page.has_more && oldest > floor.saturating_add(1) => {
                self.loading_older = true;
                vec![Effect::Command(Command::LoadOlder {
                    room: self.name.clone(),
                    before_seq: oldest,
                })]
            }
            _ => {
                self.gap_floor = None;
                Vec::new()
            }
        }
    }

    /// Whether the member `user` is online.
    pub fn is_online(&self, user: &Username) -> bool {
        self.online.contains(&user.canonical())
    }

    /// Marks `user` online or offline if they are a member. Returns whether it changed.
    pub(super) fn set_online(&mut self, user: &Username, online: bool) -> bool {
        if !self.members.iter().any(|m| m.username.same_as(user)) {
            return false;
        }
        if online {
            self.online.insert(user.canonical())
        } else {
            self.online.remove(&user.canonical())
        }
    }

    /// How the room is named on screen: `#den`, or `@bob` for a direct conversation.
    pub fn label(&self) -> String {
        match &self.peer {
            Some(peer) => format!("@{peer}"),
            None => format!("#{}", self.name),
        }
    }

    /// `user`'s role in the room.
    pub fn role_of(&self, user: &Username) -> Role {
        if self.owner.as_ref().is_some_and(|o| o.same_as(user)) {
            Role::Owner
        } else if self.admins.iter().any(|a| a.same_as(user)) {
            Role::Admin
        } else {
            Role::Member
        }
    }

    /// Recounts the unread messages as those from others after the read marker.
    pub(super) fn recount_unread(&mut self) {
        let marker = self.read_up_to;
        self.unread = self
            .timeline
            .entries()
            .iter()
            .filter(|e| {
                matches!(&e.kind, super::EntryKind::Message { own: false, seq: Some(s), .. } if *s > marker)
            })
            .count();
        if self.unread == 0 {
            self.mentions = 0;
        }
    }

    pub(super) fn has_member(&self, user: &Username) -> bool {
        self.members.iter().any(|m| m.username.same_as(user))
    }

    /// Merges a page of history; returns the positions of the messages from others it
    /// added (the caller counts those newer than what was shown as unread).
    pub(super) fn merge_history(&mut self, page: &HistoryView, me: Option<&Username>) -> Vec<u64> {
        let before = self.timeline.oldest_seq();
        let mut added = Vec::new();
        for msg in &page.messages {
            let own = me.is_some_and(|m| m.same_as(&msg.sender));
            if self.timeline.insert_message(msg, own) && !own {
                added.push(msg.seq);
            }
        }
        for rejection in &page.rejected {
            self.timeline.insert_rejection(rejection);
        }
        // Only a page that reaches further back than what is shown says whether even
        // older messages exist.
        match (page.oldest_seq(), before) {
            (Some(p), Some(b)) if p > b => {}
            // An empty page says where to go on when the server read a stretch that
            // holds nothing for this user.
            (None, Some(b)) => {
                if let Some(next) = page.next_before.filter(|n| *n <= b) {
                    self.has_more = true;
                    self.older_before = Some(next);
                }
            }
            _ => {
                self.has_more = page.has_more;
                self.older_before = page.next_before;
            }
        }
        added
    }

    /// Counts as unread the added messages newer than `floor` (the newest shown before
    /// a reconnect; `None`: nothing was shown).
    pub(super) fn count_caught_up(&mut self, added: &[u64], floor: Option<u64>) {
        self.unread += added
            .iter()
            .filter(|seq| floor.is_none_or(|f| **seq > f))
            .count();
    }
}
