//! [`Outbox`]: the user's messages that the server has not confirmed yet.
//!
//! A message typed into the input line stays here until its ack arrives. If the
//! connection fails under it, it waits and goes out again once the client is online; if
//! the server refused it, the user can send it again with `/retry`. Every attempt
//! carries the same [`MessageId`], so a message whose ack was lost (stored, but the
//! connection dropped before the reply) is refused by the server as a duplicate instead
//! of being stored twice.

use shared::{MessageId, RoomName};

use super::super::command::Command;

/// Where an unconfirmed message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutState {
    /// Handed to the network task; a result will come back.
    InFlight,
    /// The connection failed under it: it goes out again once online.
    Waiting,
    /// The server refused it (or something the user must fix): it goes out again only
    /// when the user asks (`/retry`).
    Failed,
}

/// One unconfirmed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The UI's id for its timeline line.
    pub local_id: u64,
    /// Where it goes.
    pub room: RoomName,
    /// What it says.
    pub text: String,
    /// The id every attempt carries, so the server's duplicate check applies.
    pub message_id: MessageId,
    /// Where it stands.
    pub state: OutState,
}

impl Outgoing {
    fn command(&self) -> Command {
        Command::Send {
            room: self.room.clone(),
            text: self.text.clone(),
            local_id: self.local_id,
            message_id: self.message_id,
        }
    }
}

/// The unconfirmed messages, oldest first (they are re-sent in that order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbox {
    items: Vec<Outgoing>,
}

impl Outbox {
    /// Takes a new message and returns the command that sends it.
    pub fn add(&mut self, local_id: u64, room: RoomName, text: String) -> Command {
        let item = Outgoing {
            local_id,
            room,
            text,
            message_id: MessageId::random(),
            state: OutState::InFlight,
        };
        let command = item.command();
        self.items.push(item);
        command
    }

    /// A message by its UI id.
    pub fn get(&self, local_id: u64) -> Option<&Outgoing> {
        self.items.iter().find(|i| i.local_id == local_id)
    }

    /// The unconfirmed messages, oldest first.
    pub fn items(&self) -> &[Outgoing] {
        &self.items
    }

    /// Forgets a message: it was stored, or its room was left.
    pub fn remove(&mut self, local_id: u64) -> Option<Outgoing> {
        let i = self.items.iter().position(|i| i.local_id == local_id)?;
        Some(self.items.remove(i))
    }

    /// Forgets every message of a room the user left; returns their UI ids.
    pub fn remove_room(&mut self, room: &RoomName) -> Vec<u64> {
        let gone: Vec<u64> = self
            .items
            .iter()
            .filter(|i| i.room.same_as(room))
            .map(|i| i.local_id)
            .collect();
        self.items.retain(|i| !i.room.same_as(room));
        gone
    }

    /// Records a failed attempt: `waiting` if the connection failed under it.
    pub fn failed(&mut self, local_id: u64, waiting: bool) {
        if let Some(item) = self.items.iter_mut().find(|i| i.local_id == local_id) {
            item.state = if waiting {
                OutState::Waiting
            } else {
                OutState::Failed
            };
        }
    }

    /// Sends one message again (same id), unless an attempt is already under way.
    pub fn resend(&mut self, local_id: u64) -> Option<Command> {
        let item = self.items.iter_mut().find(|i| i.local_id == local_id)?;
        Self::restart(item)
    }

    /// Once online: sends again every message waiting for the connection.
    pub fn resend_waiting(&mut self) -> Vec<Command> {
        self.items
            .iter_mut()
            .filter(|i| i.state == OutState::Waiting)
            .filter_map(Self::restart)
            .collect()
    }

    /// On request: sends again every message of `room` not under way.
    pub fn resend_room(&mut self, room: &RoomName) -> Vec<(u64, Command)> {
        self.items
            .iter_mut()
            .filter(|i| i.room.same_as(room))
            .filter_map(|i| Some((i.local_id, Self::restart(i)?)))
            .collect()
    }

    fn restart(item: &mut Outgoing) -> Option<Command> {
        if item.state == OutState::InFlight {
            return None;
        }
        item.state = OutState::InFlight;
        Some(item.command())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(n: &str) -> RoomName {
        RoomName::parse(n).expect("valid")
    }

    fn id_of(command: &Command) -> MessageId {
        match command {
            Command::Send { message_id, .. } => *message_id,
            other => panic!("not a send: {other:?}"),
        }
    }

    #[test]
    fn every_attempt_carries_the_first_attempts_id() {
        let mut out = Outbox::default();
        let first = out.add(1, room("den"), "hi".into());
        assert_eq!(out.resend(1), None, "an attempt is under way");
        out.failed(1, true);
        let again = out.resend_waiting();
        assert_eq!(again.len(), 1);
        assert_eq!(id_of(&again[0]), id_of(&first));
        assert!(
            out.resend_waiting().is_empty(),
            "never two attempts at once"
        );
    }

    #[test]
    fn only_waiting_messages_go_out_on_reconnect_and_refused_ones_on_request() {
        let mut out = Outbox::default();
        out.add(1, room("den"), "refused".into());
        out.add(2, room("den"), "waiting".into());
        out.add(3, room("town"), "other room".into());
        out.failed(1, false);
        out.failed(2, true);
        out.failed(3, false);
        let waiting = out.resend_waiting();
        assert!(
            matches!(waiting.as_slice(), [Command::Send { local_id: 2, .. }]),
            "{waiting:?}"
        );
        let asked: Vec<u64> = out
            .resend_room(&room("den"))
            .into_iter()
            .map(|(l, _)| l)
            .collect();
        assert_eq!(asked, vec![1], "#2 is under way already, #3 is elsewhere");
        assert_eq!(out.remove_room(&room("town")), vec![3]);
        assert!(out.remove(1).is_some());
        assert_eq!(out.items().len(), 1);
    }
}
