//! The dialogs of running rooms and the account: "delete #room for everyone?", "type your
//! username to delete your account", and "your account was deleted". Each opens with the
//! harmless button focused.

use cursive::traits::{Nameable, Resizable};
use cursive::views::{Dialog, EditView, LinearLayout, TextView};
use cursive::Cursive;
use shared::{RoomName, Username};

use super::super::command::Action;
use super::super::shell::act as dispatch;
use super::chat::closable;
use super::dialogs::focused;

/// The account-deletion dialog's username field.
pub const DELETE_ACCOUNT_NAME: &str = "delete_account_name";

/// "Delete #room for everyone?"
pub fn open_confirm_delete_room(siv: &mut Cursive, room: RoomName) {
    let text = format!(
        "Delete #{room} for everyone?\n\nEvery member is removed and its history is deleted \
         on the server. This cannot be undone."
    );
    let dialog = Dialog::text(text)
        .title("Delete room")
        .button("Delete", move |s| {
            s.pop_layer();
            dispatch(s, Action::DeleteRoom(room.clone()));
        })
        .dismiss_button("Cancel");
    siv.add_layer(closable(focused(dialog, 1).max_width(60)));
}

/// "Type your username to delete your account."
pub fn open_delete_account(siv: &mut Cursive, username: &Username) {
    let submit = |s: &mut Cursive| {
        let typed = s
            .call_on_name(DELETE_ACCOUNT_NAME, |v: &mut EditView| {
                v.get_content().to_string()
            })
            .unwrap_or_default();
        s.pop_layer();
        dispatch(s, Action::DeleteAccount { typed });
    };
    let content = LinearLayout::vertical()
        .child(TextView::new(format!(
            "Delete the account {username} for good?\n\nYou leave every room; rooms you own \
             pass to an admin or another member, or are deleted when nobody is left. The \
             username stays reserved: nobody can register it again. Your key file stays on \
             this computer; delete it yourself.\n\nType your username to confirm:"
        )))
        .child(
            EditView::new()
                .on_submit(move |s, _| submit(s))
                .with_name(DELETE_ACCOUNT_NAME)
                .fixed_width(32),
        );
    let dialog = Dialog::around(content)
        .title("Delete your account")
        .dismiss_button("Cancel")
        .button("Delete my account", submit);
    siv.add_layer(closable(dialog.max_width(64)));
}

/// The account is gone: only quitting is left.
pub fn open_account_deleted(siv: &mut Cursive) {
    let dialog = Dialog::text(
        "Your account was deleted. This client no longer signs in with it; quit with \
         Ctrl-Q.",
    )
    .title("Account deleted")
    .button("Quit", Cursive::quit)
    .dismiss_button("Close");
    siv.add_layer(closable(focused(dialog, 1).max_width(60)));
}
