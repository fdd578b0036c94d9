//! The first-run and unlock forms, and the progress box shown over them while a slow
//! step (key generation, key encryption, connecting) runs.
//!
//! Submitting a form validates it here and sends a
//! [`Command::CreateAccount`] or [`Command::Unlock`] straight to the network task.

use std::path::PathBuf;
use std::time::Duration;

use cursive::traits::{Nameable, Resizable};
use cursive::views::{Dialog, EditView, LinearLayout, ListView, ResizedView, TextView};
use cursive::Cursive;
use shared::Username;

use super::super::command::{Command, KeySource, NewAccount, Secret, Unlock};
use super::super::profile::{default_key_path_in, Start};
use super::super::shell::{self, submit, with_app};
use super::super::state::{Level, Onboarding, Phase};
use super::level_style;

const USERNAME: &str = "ob_username";
const PASSPHRASE: &str = "ob_passphrase";
const REPEAT: &str = "ob_repeat";
const IMPORT_PATH: &str = "ob_import_path";
const IMPORT_PASSPHRASE: &str = "ob_import_passphrase";
const ERROR: &str = "ob_error";

/// The shortest passphrase accepted for a new key file.
pub const MIN_PASSPHRASE: usize = 8;

/// Shows the form the state's onboarding phase asks for.
pub fn show(siv: &mut Cursive) {
    let Some((start, server, bits)) = with_app(siv, |_, app| match &app.state.phase {
        Phase::Onboarding(o) => Some((o.start.clone(), app.state.server_url.clone(), app.key_bits)),
        Phase::Main => None,
    })
    .flatten() else {
        return;
    };
    let dialog = match start {
        Start::NewAccount {
            username, import, ..
        } => new_account_form(&server, bits, username.as_ref(), import),
        Start::Unlock { username, key_path } => unlock_form(&server, username.as_ref(), &key_path),
    };
    siv.add_layer(dialog.with_name(super::ONBOARDING));
    let first_empty = [USERNAME, PASSPHRASE].into_iter().find(|name| {
        siv.call_on_name(name, |v: &mut EditView| v.get_content().is_empty())
            .unwrap_or(false)
    });
    if let Some(name) = first_empty {
        let _ = siv.focus_name(name);
    }
}

fn field(
    name: &str,
    secret: bool,
    content: &str,
    next: Option<&'static str>,
) -> impl cursive::View {
    let mut edit = EditView::new().content(content);
    if secret {
        edit.set_secret(true);
    }
    let edit = match next {
        Some(next) => edit.on_submit(move |s, _| {
            let _ = s.focus_name(next);
        }),
        None => edit.on_submit(|s, _| submit_form(s)),
    };
    edit.with_name(name).fixed_width(40)
}

fn new_account_form(
    server: &str,
    bits: usize,
    username: Option<&Username>,
    import: Option<PathBuf>,
) -> ResizedView<Dialog> {
    let importing = import.is_some();
    let intro = if importing {
        format!(
            "Server: {server}\n\nCreate an account with an existing RSA key (e.g. made with \
             `openssl genpkey -algorithm RSA`), or restore your account on this machine. The \
             key is saved encrypted with your passphrase."
        )
    } else {
        format!(
            "Server: {server}\n\nWelcome! Choose a username and a passphrase. A new RSA-{bits} \
             key is generated for you (a second or so) and saved, encrypted with the \
             passphrase, in your configuration directory. The passphrase never leaves this \
             machine; without it the key cannot be used."
        )
    };
    let mut form = ListView::new().child(
        "Username",
        field(
            USERNAME,
            false,
            username.map(Username::as_str).unwrap_or_default(),
            Some(PASSPHRASE),
        ),
    );
    form.add_child("Passphrase", field(PASSPHRASE, true, "", Some(REPEAT)));
    if let Some(path) = &import {
        form.add_child("Repeat it", field(REPEAT, true, "", Some(IMPORT_PATH)));
        form.add_child(
            "Key to import",
            field(
                IMPORT_PATH,
                false,
                &path.to_string_lossy(),
                Some(IMPORT_PASSPHRASE),
            ),
        );
        form.add_child("Its passphrase", field(IMPORT_PASSPHRASE, true, "", None));
    } else {
        form.add_child("Repeat it", field(REPEAT, true, "", None));
    }
    let content = LinearLayout::vertical()
        .child(TextView::new(intro))
        .child(TextView::new(" "))
        .child(form)
        .child(
            TextView::new("")
                .style(level_style(Level::Error))
                .with_name(ERROR),
        );
    let toggle = if importing {
        "Generate a new key instead"
    } else {
        "Import a key…"
    };
    Dialog::around(content)
        .title(if importing {
            "Import a key"
        } else {
            "Create your account"
        })
        .button(
            if importing {
                "Import and log in"
            } else {
                "Create account"
            },
            submit_form,
        )
        .button(toggle, move |s| toggle_import(s, importing))
        .button("Quit", Cursive::quit)
        .max_width(78)
}

fn unlock_form(
    server: &str,
    username: Option<&Username>,
    key_path: &std::path::Path,
) -> ResizedView<Dialog> {
    let mut form = ListView::new();
    if username.is_none() {
        form.add_child("Username", field(USERNAME, false, "", Some(PASSPHRASE)));
    }
    form.add_child("Passphrase", field(PASSPHRASE, true, "", None));
    let who = match username {
        Some(u) => format!("Welcome back, {u}."),
        None => "Which account is this key for?".to_owned(),
    };
    let content = LinearLayout::vertical()
        .child(TextView::new(format!(
            "Server: {server}\nKey: {}\n\n{who} Enter your passphrase to unlock your key \
             (leave it empty if the key file is not encrypted).",
            key_path.display()
        )))
        .child(TextView::new(" "))
        .child(form)
        .child(
            TextView::new("")
                .style(level_style(Level::Error))
                .with_name(ERROR),
        );
    Dialog::around(content)
        .title("Unlock your key")
        .button("Log in", submit_form)
        .button("Quit", Cursive::quit)
        .max_width(78)
}

fn toggle_import(siv: &mut Cursive, importing: bool) {
    let username = text_of(siv, USERNAME);
    with_app(siv, |_, app| {
        if let Phase::Onboarding(o) = &mut app.state.phase {
            if let Start::NewAccount {
                import,
                username: name,
                ..
            } = &mut o.start
            {
                *import = if importing {
                    None
                } else {
                    Some(PathBuf::new())
                };
                *name = Username::parse(username.trim()).ok();
            }
            o.error = None;
        }
    });
    siv.pop_layer();
    show(siv);
}

fn text_of(siv: &mut Cursive, name: &str) -> String {
    siv.call_on_name(name, |v: &mut EditView| v.get_content().to_string())
        .unwrap_or_default()
}

fn set_error(siv: &mut Cursive, message: &str) {
    with_app(siv, |_, app| {
        if let Phase::Onboarding(o) = &mut app.state.phase {
            o.error = Some(message.to_owned());
        }
    });
    shell::render(siv);
}

/// Validates the form and sends its command.
fn submit_form(siv: &mut Cursive) {
    let Some((start, bits, config_dir)) = with_app(siv, |_, app| match &app.state.phase {
        Phase::Onboarding(o) if o.busy.is_none() => {
            Some((o.start.clone(), app.key_bits, app.config_dir.clone()))
        }
        _ => None,
    })
    .flatten() else {
        return;
    };
    let typed_name = text_of(siv, USERNAME);
    let passphrase = text_of(siv, PASSPHRASE);
    let command = match start {
        Start::NewAccount {
            key_path, import, ..
        } => {
            let username = match Username::parse(typed_name.trim()) {
                Ok(u) => u,
                Err(e) => return set_error(siv, &format!("Username: {e}.")),
            };
            if passphrase.chars().count() < MIN_PASSPHRASE {
                return set_error(
                    siv,
                    &format!("Choose a passphrase of at least {MIN_PASSPHRASE} characters."),
                );
            }
            if passphrase != text_of(siv, REPEAT) {
                return set_error(siv, "The two passphrases differ.");
            }
            let key_path = match (key_path, &config_dir) {
                (Some(path), _) => path,
                (None, Some(dir)) => default_key_path_in(dir, &username),
                (None, None) => {
                    return set_error(
                        siv,
                        "No configuration directory is known; restart with --key PATH.",
                    )
                }
            };
            let source = match import {
                None => KeySource::Generate { bits },
                Some(_) => {
                    let path = text_of(siv, IMPORT_PATH);
                    if path.trim().is_empty() {
                        return set_error(siv, "Enter the path of the key file to import.");
                    }
                    KeySource::Import {
                        path: PathBuf::from(path.trim()),
                        passphrase: Secret::non_empty(&text_of(siv, IMPORT_PASSPHRASE)),
                    }
                }
            };
            Command::CreateAccount(NewAccount {
                username,
                passphrase: Secret::new(passphrase),
                key_path,
                source,
            })
        }
        Start::Unlock { username, key_path } => {
            let username = match username {
                Some(u) => u,
                None => match Username::parse(typed_name.trim()) {
                    Ok(u) => u,
                    Err(e) => return set_error(siv, &format!("Username: {e}.")),
                },
            };
            Command::Unlock(Unlock {
                username,
                key_path,
                passphrase: Secret::non_empty(&passphrase),
            })
        }
    };
    with_app(siv, |_, app| {
        if let Phase::Onboarding(o) = &mut app.state.phase {
            o.error = None;
            o.busy = Some(("Starting".to_owned(), Duration::ZERO));
        }
    });
    submit(siv, command);
    shell::render(siv);
}

/// Shows the error and the progress box as the state says.
pub fn render(siv: &mut Cursive, onboarding: &Onboarding) {
    siv.call_on_name(ERROR, |v: &mut TextView| {
        v.set_content(onboarding.error.clone().unwrap_or_default())
    });
    super::render_busy(siv, onboarding.busy.as_ref());
}

/// The progress text: a spinner, what is happening and for how long.
pub fn busy_text(title: &str, elapsed: Duration) -> String {
    const SPINNER: [char; 4] = ['|', '/', '-', '\\'];
    let frame = SPINNER[(elapsed.as_millis() / 100 % 4) as usize];
    let mut text = format!("{frame} {title}… {:.1} s", elapsed.as_secs_f32());
    if title.starts_with("Generating") {
        text.push_str(
            "\n\nRSA key generation takes about a second in a release build, longer on slow \
             machines. The screen stays responsive meanwhile.",
        );
    }
    text
}
