//! Dialogs: forms (join, create, password), confirmations, the fingerprint and key views,
//! the key-change and own-key alarms and error messages. [`open`] builds the one a
//! [`DialogKind`] asks for.
//!
//! Every dialog that can do something hard to undo (accept a changed key, mark a key
//! verified, replace the user's key, leave a room) opens with the harmless button focused,
//! so a stray Enter never decides for the user.

use cursive::traits::{Nameable, Resizable, Scrollable};
use cursive::views::{
    Checkbox, Dialog, DialogFocus, EditView, LinearLayout, ListView, SelectView, TextView,
};
use cursive::Cursive;
use shared::crypto::keys::Fingerprint;
use shared::{RoomName, Username};

use super::super::command::{Action, Secret};
use super::super::multiline;
use super::super::shell::act as dispatch;
use super::super::state::{DialogKind, KeyAlert, Level};
use super::chat::closable;
use super::{help, level_style, running, trust_mark};
use crate::directory::{KeyStatus, MemberView};

const JOIN_NAME: &str = "join_name";
const JOIN_PASSWORD: &str = "join_password";
const CREATE_NAME: &str = "create_name";
const CREATE_PASSWORD: &str = "create_password";
const CREATE_HIDDEN: &str = "create_hidden";
const ROOM_PASSWORD: &str = "room_password";
const FORM_ERROR: &str = "form_error";
const KEYS_LIST: &str = "keys_list";
const KEYS_DETAIL: &str = "keys_detail";
/// The "Quit?" dialog's layer: a second Ctrl-C while it is open quits.
pub const CONFIRM_QUIT: &str = "confirm_quit";

/// The name of the key-change dialog for `user`, so it can be closed when the change is
/// settled otherwise (a verified rotation).
pub fn key_alert_name(user: &Username) -> String {
    format!("key_alert:{}", user.canonical())
}

/// `dialog` with button `index` focused: the harmless choice of a dialog that decides
/// something.
pub(super) fn focused(mut dialog: Dialog, index: usize) -> Dialog {
    dialog.set_focus(DialogFocus::Button(index));
    dialog
}

/// Opens the dialog `kind` asks for.
pub fn open(siv: &mut Cursive, kind: DialogKind) {
    match kind {
        DialogKind::Help => siv.add_layer(closable(
            Dialog::around(TextView::new(help::help_text()).scrollable())
                .title("Help")
                .dismiss_button("Close"),
        )),
        DialogKind::Fingerprint(me) => {
            let dialog = Dialog::around(TextView::new(format!(
                "You are {}. Your key fingerprint:\n\n{}\n\nRead it to the people you talk \
                 to over another channel (in person, by phone). Their client shows it next \
                 to your name (F3); if the two differ, someone is in between.\n\nKey file: {}\n\n\
                 \"Rotate my key\" replaces your key with a new one (e.g. if this one may have \
                 leaked); your contacts' clients follow the change without a warning.",
                me.username,
                fingerprint_block(&me.fingerprint),
                me.key_path.display()
            )))
            .title("Your fingerprint")
            .button("Rotate my key…", |s| {
                s.pop_layer();
                dispatch(s, Action::AskRotateKey);
            })
            .dismiss_button("Close");
            siv.add_layer(closable(focused(dialog, 1).max_width(76)));
        }
        DialogKind::Keys {
            room,
            members,
            pending,
        } => open_keys(siv, room, members, pending),
        DialogKind::ConfirmDeleteRoom(room) => running::open_confirm_delete_room(siv, room),
        DialogKind::DeleteAccount { username } => running::open_delete_account(siv, &username),
        DialogKind::AccountDeleted => running::open_account_deleted(siv),
        DialogKind::Join => open_join(siv),
        DialogKind::Create => open_create(siv),
        DialogKind::ConfirmLeave(room) => {
            let target = room.clone();
            let dialog = Dialog::text(format!(
                "Leave #{room}? You stop receiving its messages; joining again may need its \
                 password."
            ))
            .title("Leave room")
            .button("Leave", move |s| {
                s.pop_layer();
                dispatch(s, Action::Leave(target.clone()));
            })
            .dismiss_button("Cancel");
            siv.add_layer(closable(focused(dialog, 1).max_width(60)));
        }
        DialogKind::ConfirmLongMessage { text } => {
            let lines = multiline::line_count(&text);
            let dialog = Dialog::text(format!(
                "Send this message of {lines} lines?\n\nIt stays in the input line if you \
                 do not."
            ))
            .title("Long message")
            .button("Send", move |s| {
                s.pop_layer();
                dispatch(s, Action::SendLong(text.clone()));
            })
            .dismiss_button("Edit");
            siv.add_layer(closable(focused(dialog, 1).max_width(60)));
        }
        DialogKind::ConfirmQuit { unsent } => {
            let lost = match unsent {
                0 => String::new(),
                1 => "\n\nOne message is not sent yet and will be lost.".to_owned(),
                n => format!("\n\n{n} messages are not sent yet and will be lost."),
            };
            let dialog = Dialog::text(format!(
                "Quit e2e-chat?{lost}\n\n(Ctrl-C again, Ctrl-Q or F10 quit at once.)"
            ))
            .title("Quit")
            .button("Quit", Cursive::quit)
            .dismiss_button("Stay");
            siv.add_layer(closable(focused(dialog, 1).max_width(60)).with_name(CONFIRM_QUIT));
        }
        DialogKind::OwnKeyAlarm { presented, own } => open_own_key_alarm(siv, presented, own),
        DialogKind::ConfirmVerify {
            username,
            fingerprint,
        } => open_confirm_verify(siv, username, fingerprint),
        DialogKind::ConfirmRotate { current } => {
            let dialog = Dialog::text(format!(
                "Replace your key with a new one?\n\nYour current fingerprint:\n{}\n\nA new \
                 key is generated and saved, encrypted with your passphrase, in place of your \
                 key file; the old key file is kept beside it (<key>.retired-<time>) so older \
                 messages still open. The server is told with a certificate signed by both \
                 keys, so your contacts' clients follow the change without a warning. Your \
                 other sessions are logged out. People who verified your fingerprint should \
                 compare the new one (F2) again.",
                fingerprint_block(&current)
            ))
            .title("Rotate my key")
            .button("Replace my key", |s| {
                s.pop_layer();
                dispatch(s, Action::RotateKey);
            })
            .dismiss_button("Cancel");
            siv.add_layer(closable(focused(dialog, 1).max_width(76)));
        }
        DialogKind::Password { room, wrong } => open_password(siv, room, wrong),
        DialogKind::KeyAlert(alert) => open_key_alert(siv, alert),
        DialogKind::Error { title, message } => siv.add_layer(closable(
            Dialog::text(message)
                .title(title)
                .dismiss_button("OK")
                .max_width(70),
        )),
    }
}

/// A fingerprint as two lines of eight groups.
pub fn fingerprint_block(fp: &Fingerprint) -> String {
    let text = fp.to_string();
    let groups: Vec<&str> = text.split(' ').collect();
    let (a, b) = groups.split_at(groups.len() / 2);
    format!("  {}\n  {}", a.join(" "), b.join(" "))
}

fn edit_content(siv: &mut Cursive, name: &str) -> String {
    siv.call_on_name(name, |v: &mut EditView| v.get_content().to_string())
        .unwrap_or_default()
}

fn show_form_error(siv: &mut Cursive, message: &str) {
    siv.call_on_name(FORM_ERROR, |v: &mut TextView| {
        v.set_content(message.to_owned())
    });
}

fn error_line() -> impl cursive::View {
    TextView::new("")
        .style(super::level_style(super::super::state::Level::Error))
        .with_name(FORM_ERROR)
}

fn submit_join(siv: &mut Cursive) {
    let name = edit_content(siv, JOIN_NAME);
    let password = edit_content(siv, JOIN_PASSWORD);
    match RoomName::parse(name.trim().trim_start_matches('#')) {
        Ok(room) => {
            siv.pop_layer();
            dispatch(
                siv,
                Action::Join {
                    room,
                    password: Secret::non_empty(&password),
                },
            );
        }
        Err(e) => show_form_error(siv, &format!("{e}")),
    }
}

fn open_join(siv: &mut Cursive) {
    let form = ListView::new()
        .child(
            "Room name",
            EditView::new()
                .on_submit(|s, _| submit_join(s))
                .with_name(JOIN_NAME)
                .fixed_width(32),
        )
        .child(
            "Password",
            EditView::new()
                .secret()
                .on_submit(|s, _| submit_join(s))
                .with_name(JOIN_PASSWORD)
                .fixed_width(32),
        );
    let content = LinearLayout::vertical()
        .child(TextView::new(
            "Hidden rooms are never listed: type the exact name. Leave the password empty \
             if the room has none.",
        ))
        .child(form)
        .child(error_line());
    siv.add_layer(closable(
        Dialog::around(content)
            .title("Join a room by name")
            .button("Join", submit_join)
            .dismiss_button("Cancel")
            .max_width(64),
    ));
}

fn submit_create(siv: &mut Cursive) {
    let name = edit_content(siv, CREATE_NAME);
    let password = edit_content(siv, CREATE_PASSWORD);
    let hidden = siv
        .call_on_name(CREATE_HIDDEN, |v: &mut Checkbox| v.is_checked())
        .unwrap_or(false);
    match RoomName::parse(name.trim().trim_start_matches('#')) {
        Ok(room) => {
            siv.pop_layer();
            dispatch(
                siv,
                Action::Create {
                    room,
                    password: Secret::non_empty(&password),
                    hidden,
                },
            );
        }
        Err(e) => show_form_error(siv, &format!("{e}")),
    }
}

fn open_create(siv: &mut Cursive) {
    let form = ListView::new()
        .child(
            "Room name",
            EditView::new()
                .on_submit(|s, _| submit_create(s))
                .with_name(CREATE_NAME)
                .fixed_width(32),
        )
        .child("Hidden", Checkbox::new().with_name(CREATE_HIDDEN))
        .child(
            "Password",
            EditView::new()
                .secret()
                .on_submit(|s, _| submit_create(s))
                .with_name(CREATE_PASSWORD)
                .fixed_width(32),
        );
    let content = LinearLayout::vertical()
        .child(TextView::new(
            "Names: letters, digits, '-', '_' and '.'. A password is optional. A hidden room \
             is not listed in the lobby; people join it by its exact name.",
        ))
        .child(form)
        .child(error_line());
    siv.add_layer(closable(
        Dialog::around(content)
            .title("Create a room")
            .button("Create", submit_create)
            .dismiss_button("Cancel")
            .max_width(64),
    ));
}

fn open_password(siv: &mut Cursive, room: RoomName, wrong: bool) {
    let text = if wrong {
        format!("No room #{room} with that password. Check the name and try again:")
    } else {
        format!("#{room} needs a password (or no room has that name):")
    };
    let submit = {
        let room = room.clone();
        move |s: &mut Cursive| {
            let password = edit_content(s, ROOM_PASSWORD);
            s.pop_layer();
            dispatch(
                s,
                Action::Join {
                    room: room.clone(),
                    password: Secret::non_empty(&password),
                },
            );
        }
    };
    let on_enter = submit.clone();
    let content = LinearLayout::vertical().child(TextView::new(text)).child(
        EditView::new()
            .secret()
            .on_submit(move |s, _| on_enter(s))
            .with_name(ROOM_PASSWORD)
            .fixed_width(32),
    );
    siv.add_layer(closable(
        Dialog::around(content)
            .title(format!("Password for #{room}"))
            .button("Join", submit)
            .dismiss_button("Cancel")
            .max_width(64),
    ));
}

fn open_keys(
    siv: &mut Cursive,
    room: Option<RoomName>,
    members: Vec<MemberView>,
    pending: Vec<KeyAlert>,
) {
    let mut content = LinearLayout::vertical();
    let mut can_verify = false;
    match &room {
        Some(room) => {
            content.add_child(TextView::new(format!(
                "Members of #{room}. Select one to see the full fingerprint. Compare it with \
                 the one they read to you from their own screen (F2), in person or over a \
                 call you trust; if it matches, choose \"Mark verified\".\n"
            )));
            let mut list = SelectView::<Username>::new()
                .on_select(|s, user: &Username| show_member_detail(s, user));
            for m in &members {
                let (mark, words, _) = trust_mark(m);
                list.add_item(
                    format!("{mark:<2} {} ({words})", m.username),
                    m.username.clone(),
                );
            }
            content.add_child(list.with_name(KEYS_LIST));
            let first = members.first().map(member_detail).unwrap_or_default();
            content.add_child(TextView::new(first).with_name(KEYS_DETAIL));
            can_verify = !members.is_empty();
        }
        None => content.add_child(TextView::new(
            "Open a room to see its members' fingerprints and verify them.",
        )),
    }
    let mut pending_text = String::new();
    if pending.is_empty() {
        pending_text.push_str("\nNo changed keys are waiting for you.");
    } else {
        pending_text.push_str("\nChanged keys waiting for your decision:\n");
        for alert in &pending {
            let was = if alert.verified {
                "  VERIFIED before:"
            } else {
                "  before:"
            };
            pending_text.push_str(&format!(
                "\n{}\n{was}\n{}\n  now:\n{}\n",
                alert.username,
                fingerprint_block(&alert.pinned),
                fingerprint_block(&alert.new)
            ));
        }
    }
    content.add_child(TextView::new(pending_text));
    let mut dialog = Dialog::around(content.scrollable()).title("Keys");
    if can_verify {
        dialog.add_button("Mark verified…", |s| {
            let selected = s
                .call_on_name(KEYS_LIST, |v: &mut SelectView<Username>| v.selection())
                .flatten();
            if let Some(user) = selected {
                s.pop_layer();
                dispatch(s, Action::AskVerify((*user).clone()));
            }
        });
    }
    for alert in pending {
        let user = alert.username.clone();
        dialog.add_button(format!("Accept {user}"), move |s| {
            s.pop_layer();
            dispatch(s, Action::AcceptKey(user.clone()));
        });
    }
    siv.add_layer(closable(dialog.dismiss_button("Close").max_width(76)));
}

/// The selected member's full fingerprint and what their mark means.
fn member_detail(m: &MemberView) -> String {
    let (_, words, _) = trust_mark(m);
    let meaning = match &m.status {
        KeyStatus::Trusted if m.verified => "you compared it out of band",
        KeyStatus::Trusted => "trusted when first seen; not compared yet",
        KeyStatus::Unaccepted { .. } => "the server presents a new key; see below",
        KeyStatus::Invalid { .. } => "it cannot be used",
    };
    format!(
        "\n{} · {words}: {meaning}\n{}",
        m.username,
        fingerprint_block(&m.fingerprint)
    )
}

/// Shows `user`'s detail under the list (looked up in the state's current room).
fn show_member_detail(siv: &mut Cursive, user: &Username) {
    let member = super::super::shell::with_app(siv, |_, app| {
        app.state
            .current_room()
            .and_then(|r| r.members.iter().find(|m| m.username.same_as(user)).cloned())
    })
    .flatten();
    if let Some(m) = member {
        siv.call_on_name(KEYS_DETAIL, |v: &mut TextView| {
            v.set_content(member_detail(&m))
        });
    }
}

fn open_confirm_verify(siv: &mut Cursive, username: Username, fingerprint: Fingerprint) {
    let text = format!(
        "Ask {username} to read their fingerprint from their own screen (F2), in person or \
         over a call you trust, and compare it with the one your client has for them:\n\n\
         {}\n\nMark it verified only if every group matches. If this key is ever replaced \
         without a rotation signed by it, you will get the strongest warning.",
        fingerprint_block(&fingerprint)
    );
    let user = username.clone();
    let dialog = Dialog::text(text)
        .title(format!("Verify {username}'s key"))
        .button("They match: mark verified", move |s| {
            s.pop_layer();
            dispatch(s, Action::Verify(user.clone()));
        })
        .dismiss_button("Cancel");
    siv.add_layer(closable(focused(dialog, 1).max_width(76)));
}

fn open_own_key_alarm(siv: &mut Cursive, presented: Fingerprint, own: Fingerprint) {
    let text = format!(
        "The server now claims that YOUR key is:\n{}\n\nYour real key is:\n{}\n\nYour client \
         keeps using your own key and will never accept another one for you. But other \
         people may be shown the false key: someone (the server, or whoever controls it) may \
         be trying to read your messages. Ask your contacts to compare your fingerprint (F2) \
         with what their client shows for you (F3).",
        fingerprint_block(&presented),
        fingerprint_block(&own)
    );
    // Nothing to decide: the only button dismisses. Not closable with Esc, so it is read.
    siv.add_layer(
        Dialog::around(
            TextView::new(text)
                .style(level_style(Level::Error))
                .scrollable(),
        )
        .title("⚠ The server presents another key for YOU")
        .dismiss_button("Dismiss")
        .max_width(76),
    );
}

fn open_key_alert(siv: &mut Cursive, alert: KeyAlert) {
    let rooms = if alert.rooms.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = alert.rooms.iter().map(|r| format!("#{r}")).collect();
        format!("Seen in {}.\n\n", names.join(", "))
    };
    let user = &alert.username;
    let (title, intro, advice) = if alert.verified {
        (
            format!("⚠⚠ VERIFIED key replaced: {user}"),
            format!(
                "The server now presents a DIFFERENT key for {user}, whose key YOU VERIFIED. \
                 The change is not signed by the verified key, as a real rotation would be."
            ),
            format!(
                "Treat this as an attack (an impersonator, or a malicious server) unless \
                 {user} confirms the NEW fingerprint to you in person or over a call you \
                 trust. Until you accept, nothing is encrypted to {user} and their new \
                 messages stay hidden."
            ),
        )
    } else {
        (
            format!("⚠ Key changed: {user}"),
            format!(
                "The server now presents a DIFFERENT key for {user}, not signed by the key you \
                 trusted before."
            ),
            format!(
                "This is expected if {user} reinstalled or lost their key. It is also what an \
                 impersonator (or a malicious server) would do. Compare the new fingerprint \
                 with {user} over another channel before accepting. Until you accept, nothing \
                 is encrypted to {user} and their new messages stay hidden."
            ),
        )
    };
    let was = if alert.verified {
        "Verified before"
    } else {
        "Trusted before"
    };
    let text = format!(
        "{intro}\n\n{was}:\n{old}\n\nNew key:\n{new}\n\n{rooms}{advice}",
        old = fingerprint_block(&alert.pinned),
        new = fingerprint_block(&alert.new),
    );
    let target = alert.username.clone();
    let accept = if alert.verified {
        "Accept anyway"
    } else {
        "Accept new key"
    };
    let mut body = TextView::new(text);
    if alert.verified {
        body.set_style(level_style(Level::Error));
    }
    // Deliberately not closable with Esc: one of the buttons must be chosen, and the
    // harmless one is focused.
    let dialog = Dialog::around(body.scrollable())
        .title(title)
        .button(accept, move |s| {
            s.pop_layer();
            dispatch(s, Action::AcceptKey(target.clone()));
        })
        .button("Decide later (F3)", |s| {
            s.pop_layer();
        });
    siv.add_layer(
        focused(dialog, 1)
            .max_width(76)
            .with_name(key_alert_name(&alert.username)),
    );
}
