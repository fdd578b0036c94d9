//! The help bar at the bottom of the main screen and the F1 help dialog.

use cursive::style::{Effect, Style};
use cursive::utils::markup::StyledString;

/// The key bindings of the main screen, as (keys, what they do).
pub const BINDINGS: &[(&str, &str)] = &[
    (
        "Enter",
        "send the message / join the lobby row chosen with Up/Down",
    ),
    (
        "Up / Down",
        "earlier / later lines you sent; in the lobby: choose a room",
    ),
    (
        "Alt-Enter / Ctrl-J",
        "a line break in the message (shown as ↵); a paste stays one message",
    ),
    (
        "Tab",
        "complete a command, #room or member name (in a paste: spaces)",
    ),
    ("F1", "this help"),
    (
        "F2",
        "your own key fingerprint, to compare out of band; rotate your key",
    ),
    (
        "F3",
        "members' full fingerprints; mark them verified; accept changed keys",
    ),
    ("F4 / F5", "the lobby (public rooms) / refresh it"),
    ("F6", "create a room (name, password, hidden)"),
    ("F7", "join a room by name: the way into hidden rooms"),
    ("F8", "leave the current room"),
    ("F9 / PgUp at top", "load older messages"),
    ("PgUp / PgDn", "scroll the timeline"),
    (
        "Ctrl-N / Ctrl-P",
        "next / previous room (also Alt-Right / Alt-Left)",
    ),
    (
        "Ctrl-U/K/W, Ctrl-←/→",
        "delete before / after the cursor, the word before; by words",
    ),
    ("Esc / Ctrl-L", "close a dialog / redraw the screen"),
    ("Ctrl-Q / F10", "quit (Ctrl-C asks first)"),
];

/// The commands the input line understands.
pub const COMMANDS: &[(&str, &str)] = &[
    ("/join ROOM [PASSWORD]", "join a room by name"),
    ("/create [--hidden] ROOM [PASSWORD]", "create a room"),
    ("/leave", "leave the current room"),
    ("/lobby, /refresh", "show / refresh the lobby"),
    ("/older", "load older messages"),
    (
        "/retry, /reconnect",
        "send unsent messages again / reconnect now",
    ),
    ("/fp, /keys", "your fingerprint / the members' keys"),
    ("/verify USER", "mark USER's key verified (after comparing)"),
    ("/rotate-key", "replace your key with a new one"),
    (
        "/msg USER [TEXT]",
        "open (or switch to) the direct conversation with USER",
    ),
    ("/me ACTION", "say what you do: shown as \"* alice waves\""),
    ("/ignore", "leave the direct conversation shown"),
    (
        "/block USER, /unblock USER",
        "refuse / allow USER's direct conversations",
    ),
    (
        "/kick USER, /ban USER",
        "remove USER / and refuse their joins (owner, admins)",
    ),
    ("/unban USER", "lift USER's ban (owner, admins)"),
    (
        "/topic [TEXT]",
        "set the topic; without TEXT clear it (owner, admins)",
    ),
    (
        "/op USER, /deop USER",
        "make USER an admin / a plain member (owner)",
    ),
    (
        "/password [PASSWORD]",
        "set or change the password; without one remove it (owner)",
    ),
    ("/hide, /unhide", "make the room hidden / public (owner)"),
    ("/transfer USER", "hand the room to member USER (owner)"),
    (
        "/delete-room",
        "delete the room and its history for everyone (owner)",
    ),
    (
        "/typing on|off",
        "let others see when you are typing (on by default)",
    ),
    (
        "/read-markers on|off",
        "tell your other sessions how far you have read (on by default)",
    ),
    (
        "/notify on|off",
        "desktop notifications for mentions and direct messages elsewhere (off by default)",
    ),
    (
        "/delete-account",
        "delete your account for good (asks for your username)",
    ),
    ("/help, /quit", "this help / quit"),
    ("//text", "send a message starting with /"),
];

/// The help bar's entries, most important first: (key, label, short label).
const BAR: &[(&str, &str, &str)] = &[
    ("F1", "Help", "Help"),
    ("F2", "My key", "Me"),
    ("F3", "Keys", "Keys"),
    ("F4", "Lobby", "Lobby"),
    ("F5", "Refresh", "Refresh"),
    ("F6", "New room", "New"),
    ("F7", "Join", "Join"),
    ("F8", "Leave", "Leave"),
    ("F9", "Older", "Older"),
    ("^N/^P", "Rooms", "Rooms"),
    ("^Q", "Quit", "Quit"),
];

/// The one-line summary shown at the bottom of the main screen, fitted to `width`
/// columns: full labels if they fit, else short ones, dropping entries from the end
/// (but keeping "quit") if even those do not.
pub fn help_bar(width: usize) -> StyledString {
    let render = |entries: &[(&str, &str)]| {
        let mut out = StyledString::new();
        for (key, label) in entries {
            out.append_plain(" ");
            out.append_styled(*key, Style::from(Effect::Reverse));
            out.append_plain(format!(" {label}"));
        }
        out
    };
    let full: Vec<(&str, &str)> = BAR.iter().map(|(k, l, _)| (*k, *l)).collect();
    let bar = render(&full);
    if bar.width() <= width {
        return bar;
    }
    let mut short: Vec<(&str, &str)> = BAR.iter().map(|(k, _, s)| (*k, *s)).collect();
    loop {
        let bar = render(&short);
        if bar.width() <= width || short.len() <= 2 {
            return bar;
        }
        // Drop the least important entry before "quit".
        short.remove(short.len() - 2);
    }
}

/// The full help text.
pub fn help_text() -> String {
    let mut out = String::from("Keys\n");
    for (keys, what) in BINDINGS {
        out.push_str(&format!("  {keys:<20} {what}\n"));
    }
    out.push_str("\nCommands in the input line\n");
    for (command, what) in COMMANDS {
        out.push_str(&format!("  {command:<36} {what}\n"));
    }
    out.push_str(
        "\nMarks in the conversation: ✓ signature verified · … sending · ↻ waiting for the \
         connection, sent again once online · ✗ not sent (/retry) · ⏱ the \
         signed time and the server's differ by minutes · ⚠ refused, or also sent to someone \
         not shown as a member\n\
         Marks in the member list: ✓✓ key verified by you · ✓ trusted on first use · ! key \
         changed, not accepted · ✗ unusable key · ★ owner · @ admin\n\
         Direct conversations are listed under \"Direct\" by the other user's name; a room \
         marked ✗ is one you are no longer in (F8 takes it off the list).\n\
         Times are the sender's signed send times. Every message is end-to-end encrypted; the \
         server stores only ciphertext.",
    );
    out
}
