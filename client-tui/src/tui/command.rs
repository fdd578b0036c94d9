//! What the user asks for, and what the network task is asked to do.
//!
//! Two layers, as in ncspot's `command.rs`:
//!
//! - [`Action`]: an intent from a key binding, a form or the input line (`/join …`). Actions
//!   are interpreted by [`AppState::act`](super::state::AppState::act), which knows the
//!   current room and turns them into state changes, dialogs and [`Command`]s.
//! - [`Command`]: a request to the network task (`super::network`), the only code that
//!   talks to the server. Commands carry everything they need (room names, texts), so the
//!   network task never reads UI state.
//!
//! [`parse_input`] turns a line typed in the input box into an [`Action`].

use std::fmt;
use std::path::PathBuf;

use shared::crypto::message::ACTION_PREFIX;
use shared::protocol::{ModerationAction, Role};
use shared::{MessageId, RoomName, Username};
use zeroize::Zeroizing;

/// A passphrase or room password: zeroed on drop, never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret string.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// `None` for an empty string (the user left the field blank), else the secret.
    pub fn non_empty(value: &str) -> Option<Self> {
        (!value.is_empty()).then(|| Self::new(value))
    }

    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where the private key of a new account comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Generate a fresh RSA key of this many bits (2048–4096).
    Generate {
        /// Modulus size.
        bits: usize,
    },
    /// Import an existing key file (e.g. made with `openssl genpkey -algorithm RSA`).
    Import {
        /// The file to read.
        path: PathBuf,
        /// Its passphrase, if it is encrypted.
        passphrase: Option<Secret>,
    },
}

/// First run: create (or, for an imported key, restore) an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    /// The account name.
    pub username: Username,
    /// The passphrase the key file is encrypted with.
    pub passphrase: Secret,
    /// Where to save the key.
    pub key_path: PathBuf,
    /// Generate or import.
    pub source: KeySource,
}

/// Later runs: decrypt the saved key and log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unlock {
    /// The account name.
    pub username: Username,
    /// The key file.
    pub key_path: PathBuf,
    /// Its passphrase (`None` for an unencrypted file).
    pub passphrase: Option<Secret>,
}

/// A request to the network task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create an account (onboarding).
    CreateAccount(NewAccount),
    /// Unlock the saved key and log in (onboarding).
    Unlock(Unlock),
    /// List the public rooms again.
    RefreshRooms,
    /// Create a room and open it.
    CreateRoom {
        /// Its name.
        room: RoomName,
        /// Optional password.
        password: Option<Secret>,
        /// Whether it is hidden from the lobby.
        hidden: bool,
    },
    /// Join (or re-open) a room by name.
    JoinRoom {
        /// Its name.
        room: RoomName,
        /// The password, if one is needed.
        password: Option<Secret>,
    },
    /// Encrypt and send a message.
    Send {
        /// The room.
        room: RoomName,
        /// The text.
        text: String,
        /// The UI's id for the pending line, echoed back in the result.
        local_id: u64,
        /// The message's id, the same on every attempt: a message stored before its ack
        /// was lost is refused as a duplicate rather than stored twice.
        message_id: MessageId,
    },
    /// Fetch messages older than `before_seq`.
    LoadOlder {
        /// The room.
        room: RoomName,
        /// The oldest `seq` shown now.
        before_seq: u64,
    },
    /// Leave a room for good.
    Leave {
        /// The room.
        room: RoomName,
    },
    /// Trust a changed key after comparing fingerprints out of band.
    AcceptKey {
        /// Whose key.
        username: Username,
    },
    /// Mark a member's current key verified after comparing fingerprints out of band.
    MarkVerified {
        /// Whose key.
        username: Username,
    },
    /// Moderate a group room (never a password change: see [`Command::SetPassword`]).
    Moderate {
        /// The room.
        room: RoomName,
        /// What to do.
        action: ModerationAction,
    },
    /// Set, change or remove a group room's password.
    SetPassword {
        /// The room.
        room: RoomName,
        /// The new password; `None` removes it.
        password: Option<Secret>,
    },
    /// Open a room the user is a member of without switching to it (a direct conversation
    /// someone else started).
    Reopen {
        /// The room.
        room: RoomName,
    },
    /// Start (or re-open) the direct conversation with a user, and switch to it.
    OpenDirect {
        /// The other user.
        user: Username,
    },
    /// Block or unblock a user's direct conversations.
    SetBlocked {
        /// Who.
        user: Username,
        /// Block or unblock.
        blocked: bool,
    },
    /// Tell a room the user is typing, or stopped.
    SetTyping {
        /// The room.
        room: RoomName,
        /// Typing or stopped.
        typing: bool,
    },
    /// Record how far the user has read a room, for their other sessions.
    MarkRead {
        /// The room.
        room: RoomName,
        /// The newest `seq` seen.
        seq: u64,
    },
    /// Delete the user's account for good.
    DeleteAccount,
    /// Replace the user's own key: generate a new one, save it beside the key file, have
    /// the server switch to it, then keep the old file as a backup (see
    /// [`super::keyfile`]).
    RotateKey,
    /// Cut a reconnection back-off short and try now.
    Reconnect,
    /// Close the connection and stop.
    Quit,
}

/// An intent from a key, a form or the input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Enter on the input line, with what it held.
    Submit(String),
    /// Send a message to the current room (one longer than
    /// [`super::multiline::LINES_WITHOUT_ASKING`] lines asks first).
    Send(String),
    /// Send a long message the user confirmed.
    SendLong(String),
    /// Up on the input line: the lobby's previous row, or an older line of the input
    /// history (`draft` is what the line holds now, given back after the newest).
    Up {
        /// The input line's content.
        draft: String,
    },
    /// Down on the input line: the lobby's next row, or a newer line of the history.
    Down,
    /// Tab on the input line: complete its last word.
    Complete {
        /// The input line's content.
        line: String,
    },
    /// Send the current room's unconfirmed messages again (`/retry`).
    Retry,
    /// Reconnect now instead of waiting for the back-off (`/reconnect`).
    Reconnect,
    /// Ask before quitting (Ctrl-C).
    AskQuit,
    /// Join a room by name (the way into hidden rooms).
    Join {
        /// The room.
        room: RoomName,
        /// Its password, if known.
        password: Option<Secret>,
    },
    /// Create a room.
    Create {
        /// The room.
        room: RoomName,
        /// Optional password.
        password: Option<Secret>,
        /// Hidden from the lobby.
        hidden: bool,
    },
    /// Ask to leave the current room (confirmation first).
    LeaveCurrent,
    /// Leave a room (confirmed).
    Leave(RoomName),
    /// Refresh the lobby.
    Refresh,
    /// Load older messages of the current room.
    LoadOlder,
    /// Show the lobby.
    ShowLobby,
    /// Show a joined room.
    ShowRoom(RoomName),
    /// Next joined room (wrapping, the lobby included).
    NextRoom,
    /// Previous joined room.
    PrevRoom,
    /// Show the key bindings and commands.
    ShowHelp,
    /// Show the user's own fingerprint.
    ShowFingerprint,
    /// Show the current room's members with full fingerprints, and pending key changes.
    ShowKeys,
    /// Open the "join by name" form.
    OpenJoin,
    /// Open the "create room" form.
    OpenCreate,
    /// Accept a changed key.
    AcceptKey(Username),
    /// Ask to mark a member's key verified (a confirmation showing the fingerprint first).
    AskVerify(Username),
    /// Mark a member's key verified (confirmed).
    Verify(Username),
    /// Ask to rotate the user's own key (a confirmation first).
    AskRotateKey,
    /// Rotate the user's own key (confirmed).
    RotateKey,
    /// Moderate the current group room (`/kick`, `/ban`, `/unban`, `/op`, `/deop`,
    /// `/topic`, `/hide`, `/unhide`, `/transfer`).
    Moderate(ModerationAction),
    /// Set (or with `None` remove) the current room's password (`/password`).
    SetPassword(Option<Secret>),
    /// Ask to delete the current room (a confirmation first).
    AskDeleteRoom,
    /// Delete a room (confirmed).
    DeleteRoom(RoomName),
    /// Open (or switch to) the direct conversation with a user, optionally sending a text.
    Msg {
        /// The other user.
        user: Username,
        /// A message to send there.
        text: Option<String>,
    },
    /// Block or unblock a user's direct conversations.
    Block {
        /// Who.
        user: Username,
        /// Block or unblock.
        blocked: bool,
    },
    /// Leave the current direct conversation (`/ignore`).
    Ignore,
    /// Switch telling others while the user types on or off (`/typing on|off`).
    TypingSetting(bool),
    /// Switch read markers on or off (`/read-markers on|off`).
    ReadMarkersSetting(bool),
    /// Switch desktop notifications on or off (`/notify on|off`).
    NotifySetting(bool),
    /// Ask to delete the account (a dialog where the user types their username).
    AskDeleteAccount,
    /// Delete the account, if `typed` is the user's username.
    DeleteAccount {
        /// What the user typed in the confirmation dialog.
        typed: String,
    },
    /// The input line's text changed (typing notifications follow it).
    Edited(String),
    /// Quit.
    Quit,
}

/// The commands [`parse_input`] knows by their main name: what Tab completes after `/`.
pub const COMMAND_NAMES: &[&str] = &[
    "/ban",
    "/block",
    "/create",
    "/delete-account",
    "/delete-room",
    "/deop",
    "/fingerprint",
    "/help",
    "/hide",
    "/ignore",
    "/join",
    "/keys",
    "/kick",
    "/leave",
    "/lobby",
    "/me",
    "/msg",
    "/notify",
    "/older",
    "/op",
    "/password",
    "/quit",
    "/read-markers",
    "/reconnect",
    "/refresh",
    "/retry",
    "/rotate-key",
    "/topic",
    "/transfer",
    "/typing",
    "/unban",
    "/unblock",
    "/unhide",
    "/verify",
];

/// What the input line asked for, or why it is not understood.
///
/// # Errors
/// A plain-words message for an unknown command or an invalid argument.
pub fn parse_input(line: &str) -> Result<Option<Action>, String> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    // "//text" sends "/text" literally.
    if let Some(rest) = trimmed.strip_prefix("//") {
        return Ok(Some(Action::Send(format!("/{rest}"))));
    }
    let Some(command) = trimmed.strip_prefix('/') else {
        return Ok(Some(Action::Send(line.trim_end().to_owned())));
    };
    let mut words = command.split_whitespace();
    let verb = words.next().unwrap_or_default().to_ascii_lowercase();
    let args: Vec<&str> = words.collect();
    let room = |name: Option<&&str>| -> Result<RoomName, String> {
        let name = name.ok_or_else(|| format!("/{verb} needs a room name"))?;
        RoomName::parse(name.trim_start_matches('#')).map_err(|e| format!("{e}"))
    };
    let action = match verb.as_str() {
        "join" | "j" => {
            if args.len() > 2 {
                return Err("usage: /join ROOM [PASSWORD]".into());
            }
            Action::Join {
                room: room(args.first())?,
                password: args.get(1).and_then(|p| Secret::non_empty(p)),
            }
        }
        "create" | "new" => {
            let hidden = args.iter().any(|a| *a == "--hidden" || *a == "-h");
            let rest: Vec<&&str> = args
                .iter()
                .filter(|a| **a != "--hidden" && **a != "-h")
                .collect();
            if rest.len() > 2 {
                return Err("usage: /create [--hidden] ROOM [PASSWORD]".into());
            }
            Action::Create {
                room: room(rest.first().copied())?,
                password: rest.get(1).and_then(|p| Secret::non_empty(p)),
                hidden,
            }
        }
        "leave" | "part" => Action::LeaveCurrent,
        "lobby" | "rooms" => Action::ShowLobby,
        "refresh" => Action::Refresh,
        "retry" | "resend" => Action::Retry,
        "reconnect" => Action::Reconnect,
        "older" | "more" => Action::LoadOlder,
        "fp" | "fingerprint" | "whoami" => Action::ShowFingerprint,
        "keys" | "members" => Action::ShowKeys,
        "verify" => {
            let [user] = args.as_slice() else {
                return Err("usage: /verify USER".into());
            };
            let user = Username::parse(user.trim_start_matches('@')).map_err(|e| format!("{e}"))?;
            Action::AskVerify(user)
        }
        "rotate-key" => Action::AskRotateKey,
        "kick" | "ban" | "unban" | "op" | "deop" | "transfer" | "block" | "unblock" => {
            let user = one_user(&verb, &args)?;
            match verb.as_str() {
                "kick" => Action::Moderate(ModerationAction::Kick { user }),
                "ban" => Action::Moderate(ModerationAction::Ban { user }),
                "unban" => Action::Moderate(ModerationAction::Unban { user }),
                "op" => Action::Moderate(ModerationAction::SetRole {
                    user,
                    role: Role::Admin,
                }),
                "deop" => Action::Moderate(ModerationAction::SetRole {
                    user,
                    role: Role::Member,
                }),
                "transfer" => Action::Moderate(ModerationAction::TransferOwnership { to: user }),
                other => Action::Block {
                    user,
                    blocked: other == "block",
                },
            }
        }
        "topic" => {
            let text = rest_after(command, 0);
            if let Err(e) = shared::protocol::check_topic(&text) {
                return Err(e.to_string());
            }
            Action::Moderate(ModerationAction::SetTopic {
                topic: (!text.is_empty()).then_some(text),
            })
        }
        "password" => {
            if args.len() > 1 {
                return Err("usage: /password [PASSWORD] (none removes it)".into());
            }
            Action::SetPassword(args.first().and_then(|p| Secret::non_empty(p)))
        }
        "hide" => Action::Moderate(ModerationAction::SetHidden { hidden: true }),
        "unhide" => Action::Moderate(ModerationAction::SetHidden { hidden: false }),
        "delete-room" => Action::AskDeleteRoom,
        "msg" | "query" | "dm" => {
            let Some(user) = args.first() else {
                return Err("usage: /msg USER [TEXT]".into());
            };
            let user = Username::parse(user.trim_start_matches('@')).map_err(|e| format!("{e}"))?;
            let text = rest_after(command, 1);
            Action::Msg {
                user,
                text: (!text.is_empty()).then_some(text),
            }
        }
        "me" => {
            let action = rest_after(command, 0);
            if action.is_empty() {
                return Err("usage: /me ACTION".into());
            }
            Action::Send(format!("{ACTION_PREFIX}{action}"))
        }
        "ignore" => Action::Ignore,
        "typing" => Action::TypingSetting(on_off(&verb, &args)?),
        "read-markers" => Action::ReadMarkersSetting(on_off(&verb, &args)?),
        "notify" => Action::NotifySetting(on_off(&verb, &args)?),
        "delete-account" => Action::AskDeleteAccount,
        "help" | "?" => Action::ShowHelp,
        "quit" | "exit" | "q" => Action::Quit,
        other => return Err(format!("unknown command /{other} (press F1 for the list)")),
    };
    Ok(Some(action))
}

/// The one username a command takes (`/kick USER`).
fn one_user(verb: &str, args: &[&str]) -> Result<Username, String> {
    let [user] = args else {
        return Err(format!("usage: /{verb} USER"));
    };
    Username::parse(user.trim_start_matches('@')).map_err(|e| format!("{e}"))
}

/// `on` or `off` (`/typing on`).
fn on_off(verb: &str, args: &[&str]) -> Result<bool, String> {
    match args {
        ["on"] => Ok(true),
        ["off"] => Ok(false),
        _ => Err(format!("usage: /{verb} on|off")),
    }
}

/// The text of a command after its verb and `skip` more words, as typed (inner spaces
/// kept, ends trimmed).
fn rest_after(command: &str, skip: usize) -> String {
    let mut rest = command.trim_start();
    for _ in 0..=skip {
        rest = rest
            .trim_start()
            .split_once(char::is_whitespace)
            .map_or("", |(_, after)| after);
    }
    rest.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(n: &str) -> RoomName {
        RoomName::parse(n).expect("valid")
    }

    #[test]
    fn plain_text_is_sent_and_blank_is_ignored() {
        assert_eq!(parse_input("   "), Ok(None));
        assert_eq!(
            parse_input("hello there  "),
            Ok(Some(Action::Send("hello there".into())))
        );
        assert_eq!(
            parse_input("//not a command"),
            Ok(Some(Action::Send("/not a command".into())))
        );
    }

    #[test]
    fn slash_commands_parse() {
        assert_eq!(
            parse_input("/join #secret pw"),
            Ok(Some(Action::Join {
                room: room("secret"),
                password: Some(Secret::new("pw")),
            }))
        );
        assert_eq!(
            parse_input("/create --hidden den"),
            Ok(Some(Action::Create {
                room: room("den"),
                password: None,
                hidden: true,
            }))
        );
        assert_eq!(parse_input("/leave"), Ok(Some(Action::LeaveCurrent)));
        assert_eq!(parse_input("/QUIT"), Ok(Some(Action::Quit)));
        assert_eq!(
            parse_input("/verify bob"),
            Ok(Some(Action::AskVerify(
                Username::parse("bob").expect("valid")
            )))
        );
        assert!(parse_input("/verify").is_err());
        assert!(parse_input("/verify bob carol").is_err());
        assert_eq!(parse_input("/rotate-key"), Ok(Some(Action::AskRotateKey)));
        assert!(parse_input("/join").is_err());
        assert!(parse_input("/join bad! pw").is_err());
        assert!(parse_input("/join a b c").is_err());
        assert!(parse_input("/frobnicate").is_err());
    }

    #[test]
    fn every_completed_command_is_understood() {
        for name in COMMAND_NAMES {
            if let Err(e) = parse_input(name) {
                assert!(!e.starts_with("unknown command"), "{name}: {e}");
            }
        }
        assert_eq!(parse_input("/retry"), Ok(Some(Action::Retry)));
        assert_eq!(parse_input("/reconnect"), Ok(Some(Action::Reconnect)));
    }

    #[test]
    fn room_running_commands_parse() {
        let bob = Username::parse("bob").expect("valid");
        assert_eq!(
            parse_input("/kick @bob"),
            Ok(Some(Action::Moderate(ModerationAction::Kick {
                user: bob.clone()
            })))
        );
        assert_eq!(
            parse_input("/op bob"),
            Ok(Some(Action::Moderate(ModerationAction::SetRole {
                user: bob.clone(),
                role: Role::Admin
            })))
        );
        assert!(parse_input("/ban").is_err());
        assert!(parse_input("/ban bob carol").is_err());
        assert_eq!(
            parse_input("/topic  Release  planning "),
            Ok(Some(Action::Moderate(ModerationAction::SetTopic {
                topic: Some("Release  planning".into())
            })))
        );
        assert_eq!(
            parse_input("/topic"),
            Ok(Some(Action::Moderate(ModerationAction::SetTopic {
                topic: None
            })))
        );
        assert!(parse_input(&format!("/topic {}", "x".repeat(201))).is_err());
        assert_eq!(
            parse_input("/password s3cret"),
            Ok(Some(Action::SetPassword(Some(Secret::new("s3cret")))))
        );
        assert_eq!(
            parse_input("/password"),
            Ok(Some(Action::SetPassword(None)))
        );
        assert_eq!(
            parse_input("/msg bob  hi  there "),
            Ok(Some(Action::Msg {
                user: bob.clone(),
                text: Some("hi  there".into())
            }))
        );
        assert_eq!(
            parse_input("/msg bob"),
            Ok(Some(Action::Msg {
                user: bob.clone(),
                text: None
            }))
        );
        assert_eq!(
            parse_input("/unblock bob"),
            Ok(Some(Action::Block {
                user: bob,
                blocked: false
            }))
        );
        assert_eq!(
            parse_input("/typing off"),
            Ok(Some(Action::TypingSetting(false)))
        );
        assert_eq!(
            parse_input("/read-markers on"),
            Ok(Some(Action::ReadMarkersSetting(true)))
        );
        assert_eq!(
            parse_input("/notify on"),
            Ok(Some(Action::NotifySetting(true)))
        );
        assert!(parse_input("/typing maybe").is_err());
        assert_eq!(parse_input("/delete-room"), Ok(Some(Action::AskDeleteRoom)));
        assert_eq!(
            parse_input("/delete-account"),
            Ok(Some(Action::AskDeleteAccount))
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        let shown = format!("{:?}", Secret::new("hunter2"));
        assert!(!shown.contains("hunter2"));
    }
}
