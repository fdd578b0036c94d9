//! `server admin …`: the operator's command line. It sends one request to the running
//! server's admin socket ([`super::socket`]) and prints the answer, for people or, with
//! `--json`, for scripts.
//!
//! # Exit codes
//! - 0: done.
//! - 1: the server refused the request ([`AdminError`]: no such user or room, a name
//!   several rooms share, a malformed value).
//! - 2: the command line is wrong (clap's own code).
//! - 3: no server answers at the socket (none running, another socket path, or no
//!   permission to use it).
//! - 4: the server or the store failed, or the exchange broke off.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::protocol::{
    read_line, AdminError, Answer, Request, Response, RoomDetail, RoomKind, RoomSummary,
    UserDetail, UserSummary, MAX_PAGE, MAX_RESPONSE_BYTES,
};

/// The request was refused.
const EXIT_REFUSED: u8 = 1;
/// No server answers at the socket.
const EXIT_NO_SERVER: u8 = 3;
/// The server failed, or the exchange broke off.
const EXIT_FAILED: u8 = 4;

/// How long the client waits for an answer: long enough for a purge or a large deletion.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// `server admin`: operate the running server through its admin socket.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The admin socket (default: `--admin-socket`/`ADMIN_SOCKET`, else `admin.sock` in
    /// the data directory, as the server has them).
    #[arg(long)]
    pub socket: Option<PathBuf>,

    /// Print JSON for scripts instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The admin subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Accounts.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Rooms, hidden ones and direct conversations included.
    #[command(subcommand)]
    Rooms(RoomsCommand),
    /// Counts of users, rooms and messages, and the store's size.
    Stats,
    /// Delete messages in every room: those older than `--older-than`, and/or all but each
    /// room's `--keep-newest` newest (as the retention settings do, once).
    Purge(PurgeArgs),
}

/// `server admin users …`.
#[derive(Debug, Clone, Subcommand)]
pub enum UsersCommand {
    /// List every account.
    List,
    /// Show one account: its rooms, rooms created, key rotations.
    Show {
        /// The username (any case).
        name: String,
    },
    /// Delete an account as the user's own DeleteAccount does: their sessions are closed
    /// (4002), they leave every room, and the name stays reserved.
    Delete {
        /// The username (any case).
        name: String,
    },
}

/// `server admin rooms …`.
#[derive(Debug, Clone, Subcommand)]
pub enum RoomsCommand {
    /// List every room, marked public, hidden or direct.
    List,
    /// Show one room: members, admins, topic, bans, message count.
    Show {
        /// The room's name (any case), or its key as `rooms list` shows it (`~…`) when
        /// several rooms share the name.
        room: String,
    },
    /// Delete a room as its owner's DeleteRoom does: members are told (RoomDeleted) and
    /// its history is deleted.
    Delete {
        /// The room's name (any case), or its key (`~…`).
        room: String,
    },
}

/// `server admin purge`.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = true)]
pub struct PurgeArgs {
    /// Delete messages older than this: a number with a unit, `s`, `m`, `h` or `d`
    /// (`90d`, `12h`).
    #[arg(long, value_parser = parse_age)]
    pub older_than: Option<u64>,

    /// Keep only this many of each room's newest messages.
    #[arg(long)]
    pub keep_newest: Option<u64>,
}

/// Parses `90d`, `12h`, `30m`, `45s` into seconds.
fn parse_age(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: s, m, h or d"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// Why a command did not get its answer.
#[derive(Debug, thiserror::Error)]
enum ClientError {
    /// Nothing answers at the socket.
    #[error(
        "no server is answering at the admin socket {path}: {source}\n\
         Start the server (`server admin` talks to a running server), or point at its socket \
         with --socket, ADMIN_SOCKET or --data-dir as the server was started with, and run \
         this as the server's OS user."
    )]
    NoServer {
        /// The socket.
        path: PathBuf,
        /// The connection's error.
        source: std::io::Error,
    },
    /// The server refused.
    #[error("{0}")]
    Refused(AdminError),
    /// The exchange broke off or made no sense.
    #[error("the exchange with the server failed: {0}")]
    Exchange(String),
}

impl ClientError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::NoServer { .. } => EXIT_NO_SERVER,
            Self::Refused(
                AdminError::UnknownUser { .. }
                | AdminError::UnknownRoom { .. }
                | AdminError::AmbiguousRoom { .. }
                | AdminError::BadRequest { .. },
            ) => EXIT_REFUSED,
            Self::Refused(_) | Self::Exchange(_) => EXIT_FAILED,
        }
    }
}

/// Runs `server admin …` against the socket at `default_socket` (unless `--socket` says
/// otherwise), prints the outcome and says how the process should exit.
pub fn run(default_socket: &Path, args: AdminArgs) -> ExitCode {
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| default_socket.to_owned());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(execute(&socket, &args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if args.json {
                let error = match &e {
                    ClientError::Refused(error) => serde_json::to_string(error),
                    other => serde_json::to_string(&serde_json::json!({
                        "error": if matches!(other, ClientError::NoServer { .. }) { "no_server" } else { "exchange" },
                        "message": other.to_string(),
                    })),
                };
                eprintln!("{}", error.unwrap_or_default());
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// Carries out the command: one request, or a listing's pages.
async fn execute(socket: &Path, args: &AdminArgs) -> Result<(), ClientError> {
    let json = args.json;
    match &args.command {
        AdminCommand::Users(UsersCommand::List) => {
            let users = all_pages(
                socket,
                |after| Request::ListUsers {
                    after,
                    limit: MAX_PAGE,
                },
                |answer| match answer {
                    Answer::Users { users } => Some(users),
                    _ => None,
                },
                |user: &UserSummary| user.name.to_lowercase(),
            )
            .await?;
            print(json, &users, || users_text(&users));
        }
        AdminCommand::Rooms(RoomsCommand::List) => {
            let rooms = all_pages(
                socket,
                |after| Request::ListRooms {
                    after,
                    limit: MAX_PAGE,
                },
                |answer| match answer {
                    Answer::Rooms { rooms } => Some(rooms),
                    _ => None,
                },
                |room: &RoomSummary| room.key.clone(),
            )
            .await?;
            print(json, &rooms, || rooms_text(&rooms));
        }
        AdminCommand::Users(UsersCommand::Show { name }) => {
            one(socket, json, Request::ShowUser { name: name.clone() }).await?;
        }
        AdminCommand::Users(UsersCommand::Delete { name }) => {
            one(socket, json, Request::DeleteUser { name: name.clone() }).await?;
        }
        AdminCommand::Rooms(RoomsCommand::Show { room }) => {
            one(socket, json, Request::ShowRoom { room: room.clone() }).await?;
        }
        AdminCommand::Rooms(RoomsCommand::Delete { room }) => {
            one(socket, json, Request::DeleteRoom { room: room.clone() }).await?;
        }
        AdminCommand::Stats => one(socket, json, Request::Stats).await?,
        AdminCommand::Purge(purge) => {
            let request = Request::Purge {
                older_than_secs: purge.older_than,
                keep_newest: purge.keep_newest,
            };
            one(socket, json, request).await?;
        }
    }
    Ok(())
}

/// Every entry of a listing, a page ([`MAX_PAGE`] entries) per exchange: `request` asks
/// for the page after a cursor, `entries` takes the page out of the answer, `cursor` is
/// where an entry leaves off.
async fn all_pages<T>(
    socket: &Path,
    request: impl Fn(Option<String>) -> Request,
    entries: impl Fn(Answer) -> Option<Vec<T>>,
    cursor: impl Fn(&T) -> String,
) -> Result<Vec<T>, ClientError> {
    let mut all: Vec<T> = Vec::new();
    loop {
        let answer = ask(socket, &request(all.last().map(&cursor))).await?;
        let page = entries(answer).ok_or_else(unexpected)?;
        let done = page.len() < MAX_PAGE;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

/// A command that is one exchange: ask, and print the answer.
async fn one(socket: &Path, json: bool, request: Request) -> Result<(), ClientError> {
    let answer = ask(socket, &request).await?;
    print(json, &answer, || answer_text(&answer));
    Ok(())
}

/// An answer of the wrong kind.
fn unexpected() -> ClientError {
    ClientError::Exchange("the server answered with something else".into())
}

/// One exchange: connect, send `request`, read the response.
async fn ask(socket: &Path, request: &Request) -> Result<Answer, ClientError> {
    let mut stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ClientError::NoServer {
            path: socket.to_owned(),
            source,
        })?;
    let exchange = async {
        let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        line.push(b'\n');
        stream.write_all(&line).await.map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(stream);
        let answer = read_line(&mut reader, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        serde_json::from_slice::<Response>(&answer).map_err(|e| format!("unreadable answer: {e}"))
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, exchange).await {
        Err(_) => Err(ClientError::Exchange("no answer in time".into())),
        Ok(Err(e)) => Err(ClientError::Exchange(e)),
        Ok(Ok(Response::Ok(answer))) => Ok(answer),
        Ok(Ok(Response::Err(error))) => Err(ClientError::Refused(error)),
    }
}

/// Prints `value` as JSON, or `text()` for people.
fn print<T: Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        match serde_json::to_string_pretty(value) {
            Ok(out) => println!("{out}"),
            Err(e) => eprintln!("error: cannot print JSON: {e}"),
        }
    } else {
        print!("{}", text());
    }
}

/// A time in milliseconds since the epoch as UTC `YYYY-MM-DD HH:MM`.
fn when(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (hour, minute) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}")
}

fn users_text(users: &[UserSummary]) -> String {
    let mut out = format!("{:<32} {:<16}  {}\n", "USER", "REGISTERED (UTC)", "KEY");
    for u in users {
        out += &format!(
            "{:<32} {:<16}  {}\n",
            u.name,
            when(u.created_at_ms),
            u.fingerprint
        );
    }
    out + &format!("{} users\n", users.len())
}

fn kind(kind: RoomKind) -> &'static str {
    match kind {
        RoomKind::Public => "public",
        RoomKind::Hidden => "hidden",
        RoomKind::Direct => "direct",
    }
}

fn rooms_text(rooms: &[RoomSummary]) -> String {
    let mut out = format!(
        "{:<48} {:<7} {:>7} {:<32} {}\n",
        "ROOM", "KIND", "MEMBERS", "OWNER", "KEY"
    );
    for r in rooms {
        let name = if r.has_password {
            format!("{} (password)", r.name)
        } else {
            r.name.clone()
        };
        out += &format!(
            "{:<48} {:<7} {:>7} {:<32} {}\n",
            name,
            kind(r.kind),
            r.members,
            r.owner,
            r.key
        );
    }
    out + &format!("{} rooms\n", rooms.len())
}

fn user_text(u: &UserDetail) -> String {
    format!(
        "user:          {}\nregistered:    {} UTC\nkey:           {}\nkey rotations: {}\nrooms created: {}\nrooms ({}):     {}\n",
        u.summary.name,
        when(u.summary.created_at_ms),
        u.summary.fingerprint,
        u.key_rotations,
        u.rooms_created,
        u.rooms.len(),
        u.rooms.join(", ")
    )
}

fn room_text(r: &RoomDetail) -> String {
    let s = &r.summary;
    format!(
        "room:     {}\nkey:      {}\nkind:     {}{}\nowner:    {}\ncreated:  {} UTC\nadmins:   {}\ntopic:    {}\nmembers ({}): {}\nbanned ({}):  {}\nmessages: {}\n",
        s.name,
        s.key,
        kind(s.kind),
        if s.has_password { ", password" } else { "" },
        s.owner,
        when(s.created_at_ms),
        r.admins.join(", "),
        r.topic.as_deref().unwrap_or("-"),
        r.member_names.len(),
        r.member_names.join(", "),
        r.banned.len(),
        r.banned.join(", "),
        r.messages
    )
}

fn answer_text(answer: &Answer) -> String {
    match answer {
        Answer::Users { users } => users_text(users),
        Answer::User(user) => user_text(user),
        Answer::UserDeleted { name, rooms_left } => format!(
            "deleted user {name}: sessions closed, left {} rooms{}{}; the name stays reserved\n",
            rooms_left.len(),
            if rooms_left.is_empty() { "" } else { ": " },
            rooms_left.join(", ")
        ),
        Answer::Rooms { rooms } => rooms_text(rooms),
        Answer::Room(room) => room_text(room),
        Answer::RoomDeleted { room } => format!(
            "deleted {} room {} ({}): {} members told, history deleted\n",
            kind(room.kind),
            room.name,
            room.key,
            room.members
        ),
        Answer::Stats { store, stats } => format!(
            "store:    {store}\nusers:    {}\nrooms:    {}\nmessages: {}\nsize:     {}\n",
            stats.users,
            stats.rooms,
            stats.messages,
            stats
                .bytes
                .map_or_else(|| "unknown".to_owned(), |b| format!("{b} bytes"))
        ),
        Answer::Purged { messages } => format!("purged {messages} messages\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_need_a_unit() {
        assert_eq!(parse_age("90d"), Ok(90 * 86_400));
        assert_eq!(parse_age("12h"), Ok(12 * 3600));
        assert_eq!(parse_age("30m"), Ok(1800));
        assert_eq!(parse_age("45s"), Ok(45));
        for bad in ["", "10", "d", "10w", "-1d", "99999999999999999999d"] {
            assert!(parse_age(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_print_as_utc_dates() {
        assert_eq!(when(0), "1970-01-01 00:00");
        assert_eq!(when(1_700_000_000_000), "2023-11-14 22:13");
        assert_eq!(when(951_782_400_000), "2000-02-29 00:00");
    }
}
