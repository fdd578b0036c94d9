//! A room's [`Timeline`]: messages in `seq` order, the user's own pending lines, refusals
//! and notices where they happened.

use shared::protocol::SendAck;
use shared::{MessageId, Username};

use super::status::Level;
use super::words::{now_ms, rejection_words};
use crate::inbox::{DecryptedMessage, Rejection};

/// Where a message of the timeline stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Decrypted and its signature verified under the sender's pinned key (or, for the
    /// user's own message, stored by the server).
    Verified,
    /// The user's own message, being encrypted and sent.
    Sending,
    /// The user's own message, waiting for the connection: it is sent again (with the
    /// same id) once the client is online.
    Waiting,
    /// The user's own message that could not be sent.
    Failed(String),
}

/// One line of a room's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A chat message.
    Message {
        /// Its position in the room (`None` while the user's own message is pending).
        seq: Option<u64>,
        /// The UI's id of the user's own pending message.
        local_id: Option<u64>,
        /// The author's id for it (signed), to show each message once whatever its `seq`
        /// (`None` while the user's own message is pending).
        message_id: Option<MessageId>,
        /// The author.
        sender: Username,
        /// The text.
        text: String,
        /// Verified, pending or failed.
        delivery: Delivery,
        /// Whether the user wrote it.
        own: bool,
        /// The server's time, when it differs from the signed send time by more than
        /// clocks drift (the author's clock is wrong, or the server held it back).
        disputed_server_time: Option<u64>,
        /// Signed recipients not shown as members of the room: someone the user was not
        /// shown may be reading along.
        unknown_recipients: Vec<Username>,
    },
    /// A message the client refused to show.
    Rejected {
        /// Its position, per the server.
        seq: u64,
        /// Its sender, per the server.
        sender: Username,
        /// Why it was refused.
        reason: String,
    },
    /// A join, a leave, a key change, a connection notice.
    Notice {
        /// What happened.
        text: String,
        /// How loud.
        level: Level,
    },
}

/// A timeline line with its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Milliseconds since the Unix epoch: for messages the author's signed send time (the
    /// user's own clock for their own lines), for notices when they happened.
    pub time_ms: u64,
    /// What it is.
    pub kind: EntryKind,
}

impl Entry {
    /// The room position, for messages and refusals.
    pub fn seq(&self) -> Option<u64> {
        match &self.kind {
            EntryKind::Message { seq, .. } => *seq,
            EntryKind::Rejected { seq, .. } => Some(*seq),
            EntryKind::Notice { .. } => None,
        }
    }
}

/// A room's lines: messages in `seq` order, notices where they happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    pub(super) entries: Vec<Entry>,
}

impl Timeline {
    /// The lines, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The smallest `seq` shown.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.entries.iter().filter_map(Entry::seq).min()
    }

    /// The largest `seq` shown.
    pub fn newest_seq(&self) -> Option<u64> {
        self.entries.iter().filter_map(Entry::seq).max()
    }

    /// Inserts a decrypted message in `seq` order, shown at its signed send time. A
    /// message already shown (by position or by message id) is skipped; a refusal at the
    /// same position is replaced (the key was accepted since). Returns whether the
    /// timeline changed.
    pub fn insert_message(&mut self, msg: &DecryptedMessage, own: bool) -> bool {
        let entry = Entry {
            time_ms: msg.sent_at_ms,
            kind: EntryKind::Message {
                seq: Some(msg.seq),
                local_id: None,
                message_id: Some(msg.message_id),
                sender: msg.sender.clone(),
                text: msg.text.clone(),
                delivery: Delivery::Verified,
                own,
                disputed_server_time: msg.time_disputed().then_some(msg.server_time_ms),
                unknown_recipients: msg.unknown_recipients.clone(),
            },
        };
        let at_seq = self.position_of(msg.seq);
        if let Some(i) = at_seq {
            if !matches!(self.entries[i].kind, EntryKind::Rejected { .. }) {
                return false;
            }
        }
        if self.has_message_id(&msg.message_id) {
            return false;
        }
        match at_seq {
            Some(i) => self.entries[i] = entry,
            None => self.insert_ordered(msg.seq, msg.server_time_ms, entry),
        }
        true
    }

    /// Whether a message with this id is shown.
    pub fn has_message_id(&self, id: &MessageId) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(&e.kind, EntryKind::Message { message_id: Some(m), .. } if m == id))
    }

    /// Inserts a refusal in `seq` order unless something is already shown there.
    pub fn insert_rejection(&mut self, rejection: &Rejection) -> bool {
        if self.position_of(rejection.seq).is_some() {
            return false;
        }
        let now = now_ms();
        let entry = Entry {
            time_ms: now,
            kind: EntryKind::Rejected {
                seq: rejection.seq,
                sender: rejection.sender.clone(),
                reason: rejection_words(&rejection.reason),
            },
        };
        self.insert_ordered(rejection.seq, now, entry);
        true
    }

    /// Appends a notice.
    pub fn push_notice(&mut self, text: impl Into<String>, level: Level) {
        self.entries.push(Entry {
            time_ms: now_ms(),
            kind: EntryKind::Notice {
                text: text.into(),
                level,
            },
        });
    }

    /// Replaces the newest notice reading `old` with `new`. Returns whether one was found.
    pub fn replace_notice(&mut self, old: &str, new: String) -> bool {
        let found = self
            .entries
            .iter_mut()
            .rev()
            .find(|e| matches!(&e.kind, EntryKind::Notice { text, .. } if text == old));
        match found {
            Some(entry) => {
                if let EntryKind::Notice { text, .. } = &mut entry.kind {
                    *text = new;
                }
                true
            }
            None => false,
        }
    }

    /// Appends the user's own message while it is being sent.
    pub fn push_pending(&mut self, local_id: u64, sender: Username, text: String) {
        self.entries.push(Entry {
            time_ms: now_ms(),
            kind: EntryKind::Message {
                seq: None,
                local_id: Some(local_id),
                message_id: None,
                sender,
                text,
                delivery: Delivery::Sending,
                own: true,
                disputed_server_time: None,
                unknown_recipients: Vec::new(),
            },
        });
    }

    /// The text of a pending message.
    pub fn pending_text(&self, local_id: u64) -> Option<&str> {
        let i = self.pending_index(local_id)?;
        match &self.entries[i].kind {
            EntryKind::Message { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Marks a pending message as stored. If that position or message id is already shown
    /// (the same message arrived through history first), the pending line is dropped. The
    /// line keeps the time it was typed at: the user's own clock, as the signed time is.
    pub fn confirm(&mut self, local_id: u64, ack: &SendAck) {
        let duplicate = self.position_of(ack.seq).is_some() || self.has_message_id(&ack.message_id);
        let Some(i) = self.pending_index(local_id) else {
            return;
        };
        if duplicate {
            self.entries.remove(i);
            return;
        }
        if let EntryKind::Message {
            seq,
            local_id: l,
            message_id,
            delivery,
            ..
        } = &mut self.entries[i].kind
        {
            *seq = Some(ack.seq);
            *l = None;
            *message_id = Some(ack.message_id);
            *delivery = Delivery::Verified;
        }
    }

    /// Marks a pending message as failed.
    pub fn fail(&mut self, local_id: u64, reason: &str) {
        self.set_delivery(local_id, Delivery::Failed(reason.to_owned()));
    }

    /// Marks a pending message as waiting for the connection.
    pub fn wait(&mut self, local_id: u64) {
        self.set_delivery(local_id, Delivery::Waiting);
    }

    /// Marks a pending message as being sent (again).
    pub fn sending(&mut self, local_id: u64) {
        self.set_delivery(local_id, Delivery::Sending);
    }

    /// A pending message the server already holds (an earlier attempt was stored, its
    /// ack lost): dropped if that message is shown already, else marked stored under its
    /// id, so the copy history brings later is recognised.
    pub fn confirm_stored(&mut self, local_id: u64, id: MessageId) {
        let Some(i) = self.pending_index(local_id) else {
            return;
        };
        if self.has_message_id(&id) {
            self.entries.remove(i);
            return;
        }
        if let EntryKind::Message {
            local_id: l,
            message_id,
            delivery,
            ..
        } = &mut self.entries[i].kind
        {
            *l = None;
            *message_id = Some(id);
            *delivery = Delivery::Verified;
        }
    }

    /// Drops a pending line (its message arrived through history, or its room was left).
    pub fn remove_pending(&mut self, local_id: u64) {
        if let Some(i) = self.pending_index(local_id) {
            self.entries.remove(i);
        }
    }

    fn set_delivery(&mut self, local_id: u64, to: Delivery) {
        if let Some(i) = self.pending_index(local_id) {
            if let EntryKind::Message { delivery, .. } = &mut self.entries[i].kind {
                *delivery = to;
            }
        }
    }

    pub(super) fn pending_index(&self, local_id: u64) -> Option<usize> {
        self.entries.iter().position(
            |e| matches!(&e.kind, EntryKind::Message { local_id: Some(l), .. } if *l == local_id),
        )
    }

    pub(super) fn position_of(&self, seq: u64) -> Option<usize> {
        self.entries.iter().position(|e| e.seq() == Some(seq))
    }

    /// Before the first line with a larger `seq`, and before notices newer than
    /// `order_ms` (the server's time, which unlike the signed time is the same clock as
    /// the notices').
    pub(super) fn insert_ordered(&mut self, seq: u64, order_ms: u64, entry: Entry) {
        let mut pos = self
            .entries
            .iter()
            .position(|e| e.seq().is_some_and(|s| s > seq))
            .unwrap_or(self.entries.len());
        while pos > 0
            && matches!(self.entries[pos - 1].kind, EntryKind::Notice { .. })
            && self.entries[pos - 1].time_ms > order_ms
        {
            pos -= 1;
        }
        self.entries.insert(pos, entry);
    }
}
