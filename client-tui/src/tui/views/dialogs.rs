//! Dialogs: forms (join, create, password), confirmations, the fingerprint and key views,
//! the key-change alarm and error messages. [`open`] builds the one a
//! [`DialogKind`] asks for.

use cursive::traits::{Nameable, Resizable, Scrollable};
use cursive::views::{Checkbox, Dialog, EditView, LinearLayout, ListView, TextView};
use cursive::Cursive;
use shared::crypto::keys::Fingerprint;
use shared::RoomName;

use super::super::app::dispatch;
use super::super::command::{Action, Secret};
use super::super::state::{DialogKind, KeyAlert};
use super::chat::closable;
use super::help;
use crate::directory::KeyStatus;

const JOIN_NAME: &str = "join_name";
const JOIN_PASSWORD: &str = "join_password";
const CREATE_NAME: &str = "create_name";
const CREATE_PASSWORD: &str = "create_password";
const CREATE_HIDDEN: &str = "create_hidden";
const ROOM_PASSWORD: &str = "room_password";
const FORM_ERROR: &str = "form_error";

/// Opens the dialog `kind` asks for.
pub fn open(siv: &mut Cursive, kind: DialogKind) {
    match kind {
        DialogKind::Help => siv.add_layer(closable(
            Dialog::around(TextView::new(help::help_text()).scrollable())
                .title("Help")
                .dismiss_button("Close"),
        )),
        DialogKind::Fingerprint(me) => siv.add_layer(closable(
            Dialog::around(TextView::new(format!(
                "You are {}. Your key fingerprint:\n\n{}\n\nRead it to the people you talk \
                 to over another channel (in person, by phone). Their client shows it next \
                 to your name (F3); if the two differ, someone is in between.\n\nKey file: {}",
                me.username,
                fingerprint_block(&me.fingerprint),
                me.key_path.display()
            )))
            .title("Your fingerprint")
            .dismiss_button("Close")
            .max_width(76),
        )),
        DialogKind::Keys {
            room,
            members,
            pending,
        } => open_keys(siv, room, members, pending),
        DialogKind::Join => open_join(siv),
        DialogKind::Create => open_create(siv),
        DialogKind::ConfirmLeave(room) => {
            let target = room.clone();
            siv.add_layer(closable(
                Dialog::text(format!(
                    "Leave #{room}? You stop receiving its messages; joining again may need \
                     its password."
                ))
                .title("Leave room")
                .button("Leave", move |s| {
                    s.pop_layer();
                    dispatch(s, Action::Leave(target.clone()));
                })
                .dismiss_button("Cancel")
                .max_width(60),
            ));
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
    members: Vec<crate::directory::MemberView>,
    pending: Vec<KeyAlert>,
) {
    let mut text = String::new();
    match &room {
        Some(room) => {
            text.push_str(&format!("Members of #{room} and their key fingerprints:\n"));
            for m in &members {
                let status = match &m.status {
                    KeyStatus::Trusted => "trusted".to_owned(),
                    KeyStatus::Unaccepted { .. } => "CHANGED, not accepted".to_owned(),
                    KeyStatus::Invalid { reason } => format!("unusable: {reason}"),
                };
                text.push_str(&format!(
                    "\n{} ({status})\n{}\n",
                    m.username,
                    fingerprint_block(&m.fingerprint)
                ));
            }
        }
        None => text.push_str("Open a room to see its members' fingerprints.\n"),
    }
    if pending.is_empty() {
        text.push_str("\nNo changed keys are waiting for you.");
    } else {
        text.push_str("\nChanged keys waiting for your decision:\n");
        for alert in &pending {
            text.push_str(&format!(
                "\n{}\n  before:\n{}\n  now:\n{}\n",
                alert.username,
                fingerprint_block(&alert.pinned),
                fingerprint_block(&alert.new)
            ));
        }
    }
    let mut dialog = Dialog::around(TextView::new(text).scrollable()).title("Keys");
    for alert in pending {
        let user = alert.username.clone();
        dialog.add_button(format!("Accept {user}"), move |s| {
            s.pop_layer();
            dispatch(s, Action::AcceptKey(user.clone()));
        });
    }
    siv.add_layer(closable(dialog.dismiss_button("Close").max_width(76)));
}

fn open_key_alert(siv: &mut Cursive, alert: KeyAlert) {
    let rooms = if alert.rooms.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = alert.rooms.iter().map(|r| format!("#{r}")).collect();
        format!("Seen in {}.\n\n", names.join(", "))
    };
    let text = format!(
        "The server now presents a DIFFERENT key for {user}.\n\nTrusted before:\n{old}\n\nNew \
         key:\n{new}\n\n{rooms}This is expected if {user} reinstalled or replaced their key. It \
         is also what an impersonator (or a malicious server) would do. Compare the new \
         fingerprint with {user} over another channel before accepting. Until you accept, \
         nothing is encrypted to {user} and their new messages stay hidden.",
        user = alert.username,
        old = fingerprint_block(&alert.pinned),
        new = fingerprint_block(&alert.new),
    );
    let user = alert.username.clone();
    // Deliberately not closable with Esc: one of the two buttons must be chosen.
    siv.add_layer(
        Dialog::around(TextView::new(text).scrollable())
            .title(format!("⚠ Key changed: {}", alert.username))
            .button("Accept new key", move |s| {
                s.pop_layer();
                dispatch(s, Action::AcceptKey(user.clone()));
            })
            .button("Decide later (F3)", |s| {
                s.pop_layer();
            })
            .max_width(76),
    );
}
