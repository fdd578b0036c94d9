//! The ledger: what the client must remember about one account on one server across
//! reconnects, leaves and restarts, so that the server cannot make it forget.
//!
//! - **Replay record.** For every (room, sender, device) the counters of the messages the
//!   client accepted, as runs of consecutive counters with the server `seq` of each run's
//!   first and last message. A sender's counters and the server's positions rise
//!   together, so a message whose counter was accepted before is genuine only at its
//!   original position: seeing it again at the same place (re-reading history) is fine,
//!   anywhere else it is a replay. Runs keep the record small: a steady conversation is
//!   one run per sender and device.
//! - **Own counters**: the last counter this device signed in each room, so a restart
//!   never reuses one.
//! - **Known members** of each room, so that members added while the client was away are
//!   shown as joins when the room is opened again.
//! - **Retired keys** of peers who rotated (or whose changed key the user accepted), with
//!   the last counter each key may still vouch for per room and device.
//!
//! The file sits beside the pin store (`<key>.pem.ledger-<server id>.json`), is written
//! atomically (temporary file, fsync, rename, mode 0600), and is bounded: at most
//! [`MAX_ROOMS`] rooms, [`MAX_SENDERS`] sender devices per room and [`MAX_RUNS`] runs per
//! sender device (the closest runs merge, which errs towards refusing), and
//! [`MAX_RETIRED`] retired keys per user.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shared::crypto::rotation::CounterMark;
use shared::{DeviceId, RoomName, ServerId, Username};

use crate::atomic_file;

/// The file format version this code writes and reads.
const FORMAT_VERSION: u32 = 1;

/// Rooms remembered; beyond it, the least recently active are forgotten.
pub(crate) const MAX_ROOMS: usize = 1024;
/// Sender devices remembered per room; beyond it, the least recently active are forgotten.
pub(crate) const MAX_SENDERS: usize = 1024;
/// Runs per sender device; beyond it, the two closest runs merge.
pub(crate) const MAX_RUNS: usize = 64;
/// Retired keys remembered per user (the newest).
pub(crate) const MAX_RETIRED: usize = 4;

/// Why the ledger could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The file could not be read or written.
    #[error("ledger {path}: {source}")]
    Io {
        /// The ledger file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a valid ledger; it is left untouched and the client
    /// refuses to continue rather than forget what it accepted.
    #[error("ledger {path} is corrupt: {reason}")]
    Corrupt {
        /// The ledger file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// How a delivered message relates to what was accepted before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Its counter was never accepted.
    New,
    /// The same message at the same position as before (history read again).
    Again,
}

/// Why a message's counter is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Replayed {
    /// The refused counter.
    pub(crate) counter: u64,
}

/// Consecutive accepted counters `first..=last` with the positions of the ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Run {
    first: u64,
    first_seq: u64,
    last: u64,
    last_seq: u64,
}

/// One sender device's accepted counters in one room.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SenderRecord {
    /// Disjoint, ascending by counter, never adjacent (adjacent runs are merged).
    runs: Vec<Run>,
    /// The highest position seen, for choosing what to forget.
    latest_seq: u64,
}

/// What the ledger keeps per room.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RoomRecord {
    /// The member list last shown to the user (display case), once the room was opened.
    members: Option<Vec<Username>>,
    /// `"<canonical sender>/<device hex>"` → accepted counters.
    senders: BTreeMap<String, SenderRecord>,
    /// The last counter this device signed here.
    own_counter: u64,
    /// The highest position seen, for choosing what to forget.
    latest_seq: u64,
}

/// A peer's key that is no longer current, and what it may still vouch for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RetiredKey {
    /// SubjectPublicKeyInfo DER.
    #[serde(with = "hex_bytes")]
    pub(crate) public_key: Vec<u8>,
    /// Per room and device, the last counter signed with it; anything later is refused.
    pub(crate) marks: Vec<CounterMark>,
}

/// The on-disk shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LedgerFile {
    version: u32,
    /// This installation's device id for the account on this server.
    #[serde(with = "hex_bytes_16")]
    device: [u8; 16],
    /// Canonical room name → record.
    rooms: BTreeMap<String, RoomRecord>,
    /// Canonical username → retired keys, newest first.
    retired: BTreeMap<String, Vec<RetiredKey>>,
}

/// The ledger for one account on one server (see the module docs).
#[derive(Debug)]
pub(crate) struct Ledger {
    /// `None` keeps it in memory only (tests, tools).
    path: Option<PathBuf>,
    data: LedgerFile,
    /// Changed since the last save (saving an unchanged ledger writes nothing).
    dirty: bool,
}

/// The ledger file for the pin store at `pins_path` and the server `server`.
pub(crate) fn ledger_path_for(pins_path: &Path, server: &ServerId) -> PathBuf {
    crate::pins::account_file(pins_path, "ledger", server)
}

fn sender_key(sender: &Username, device: &DeviceId) -> String {
    format!("{}/{device}", sender.canonical())
}

impl Ledger {
    /// An empty ledger that is never written to disk, with a fresh device id.
    pub(crate) fn in_memory() -> Self {
        Self {
            path: None,
            data: LedgerFile::fresh(),
            dirty: false,
        }
    }

    /// Opens the ledger at `path`; a missing file starts an empty one with a fresh device
    /// id (written on the first change).
    ///
    /// # Errors
    /// [`LedgerError::Io`] if the file exists but cannot be read; [`LedgerError::Corrupt`]
    /// if it is not a valid ledger.
    pub(crate) fn open(path: PathBuf) -> Result<Self, LedgerError> {
        let data = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text).map_err(|reason| LedgerError::Corrupt {
                path: path.clone(),
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => LedgerFile::fresh(),
            Err(source) => return Err(LedgerError::Io { path, source }),
        };
        Ok(Self {
            path: Some(path),
            data,
            // A fresh ledger's device id must reach the disk before it signs anything.
            dirty: true,
        })
    }

    /// This installation's device id.
    pub(crate) fn device(&self) -> DeviceId {
        DeviceId(self.data.device)
    }

    /// Writes the ledger atomically if it changed since the last save (nothing for an
    /// in-memory ledger).
    ///
    /// # Errors
    /// [`LedgerError::Io`]; the ledger stays marked as changed.
    pub(crate) fn save(&mut self) -> Result<(), LedgerError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let io = |source| LedgerError::Io {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_string(&self.data).map_err(|e| io(std::io::Error::other(e)))?;
        atomic_file::write(path, text.as_bytes(), 0o600).map_err(io)
    }

    // --- replay record ---------------------------------------------------------------

    /// How a message with `counter` at position `seq` relates to what was accepted.
    ///
    /// # Errors
    /// [`Replayed`] if the counter was accepted at another position, or its position
    /// contradicts the order of the sender's other accepted messages.
    pub(crate) fn check(
        &self,
        room: &RoomName,
        sender: &Username,
        device: &DeviceId,
        counter: u64,
        seq: u64,
    ) -> Result<Seen, Replayed> {
        let runs = self
            .data
            .rooms
            .get(&room.canonical())
            .and_then(|r| r.senders.get(&sender_key(sender, device)))
            .map_or(&[][..], |s| &s.runs[..]);
        classify(runs, counter, seq)
    }

    /// Records a message as accepted (re-checking first).
    ///
    /// # Errors
    /// As [`Ledger::check`].
    pub(crate) fn record(
        &mut self,
        room: &RoomName,
        sender: &Username,
        device: &DeviceId,
        counter: u64,
        seq: u64,
    ) -> Result<Seen, Replayed> {
        let seen = self.check(room, sender, device, counter, seq)?;
        if seen == Seen::Again {
            return Ok(seen);
        }
        self.dirty = true;
        let record = self.room_mut(room);
        record.latest_seq = record.latest_seq.max(seq);
        let key = sender_key(sender, device);
        if !record.senders.contains_key(&key) && record.senders.len() >= MAX_SENDERS {
            forget_oldest(&mut record.senders, |s| s.latest_seq);
        }
        let entry = record.senders.entry(key).or_default();
        entry.latest_seq = entry.latest_seq.max(seq);
        insert_run(&mut entry.runs, counter, seq);
        Ok(seen)
    }

    /// The highest counter accepted from each device of `sender` in `room`.
    pub(crate) fn last_counters(&self, room: &RoomName, sender: &Username) -> Vec<CounterMark> {
        let prefix = format!("{}/", sender.canonical());
        let Some(record) = self.data.rooms.get(&room.canonical()) else {
            return Vec::new();
        };
        record
            .senders
            .iter()
            .filter_map(|(key, s)| {
                let device = key.strip_prefix(&prefix)?;
                let device: [u8; 16] = hex::decode(device).ok()?.try_into().ok()?;
                Some(CounterMark {
                    room: room.clone(),
                    device: DeviceId(device),
                    last_counter: s.runs.last()?.last,
                })
            })
            .collect()
    }

    /// Every room the ledger holds a replay record for.
    pub(crate) fn rooms(&self) -> impl Iterator<Item = &str> {
        self.data.rooms.keys().map(String::as_str)
    }

    // --- own counters ----------------------------------------------------------------

    /// The next counter for a message from this device to `room` (recorded at once).
    pub(crate) fn next_counter(&mut self, room: &RoomName) -> u64 {
        self.dirty = true;
        let record = self.room_mut(room);
        record.own_counter += 1;
        record.own_counter
    }

    /// Gives `counter` back if it is the latest one handed out for `room`: its message was
    /// refused, so it never reached anyone and the next message may use it (otherwise
    /// recipients would see a gap).
    pub(crate) fn release_counter(&mut self, room: &RoomName, counter: u64) -> bool {
        let record = self.room_mut(room);
        if record.own_counter == counter && counter > 0 {
            record.own_counter -= 1;
            self.dirty = true;
            true
        } else {
            false
        }
    }

    /// The last counter this device signed in each room, for a rotation certificate.
    pub(crate) fn own_marks(&self, rooms: &[RoomName]) -> Vec<CounterMark> {
        let device = self.device();
        rooms
            .iter()
            .filter_map(|room| {
                let last = self.data.rooms.get(&room.canonical())?.own_counter;
                (last > 0).then(|| CounterMark {
                    room: room.clone(),
                    device,
                    last_counter: last,
                })
            })
            .collect()
    }

    // --- members ---------------------------------------------------------------------

    /// The member list last shown for `room`, if it was ever opened.
    pub(crate) fn members(&self, room: &RoomName) -> Option<&[Username]> {
        self.data
            .rooms
            .get(&room.canonical())
            .and_then(|r| r.members.as_deref())
    }

    /// Records the member list shown for `room`.
    pub(crate) fn set_members(&mut self, room: &RoomName, members: Vec<Username>) {
        let record = self.room_mut(room);
        if record.members.as_ref() != Some(&members) {
            record.members = Some(members);
            self.dirty = true;
        }
    }

    /// Adds a member to `room`'s list, if the room was opened and they are not listed.
    pub(crate) fn add_member(&mut self, room: &RoomName, user: &Username) {
        if let Some(members) = self.room_members_mut(room) {
            if !members.iter().any(|m| m.same_as(user)) {
                members.push(user.clone());
                self.dirty = true;
            }
        }
    }

    /// Removes a member from `room`'s list, if the room was opened.
    pub(crate) fn remove_member(&mut self, room: &RoomName, user: &Username) {
        if let Some(members) = self.room_members_mut(room) {
            let before = members.len();
            members.retain(|m| !m.same_as(user));
            if members.len() != before {
                self.dirty = true;
            }
        }
    }

    /// Forgets `room`'s member list (the user left; a later join starts afresh).
    pub(crate) fn clear_members(&mut self, room: &RoomName) {
        if let Some(record) = self.data.rooms.get_mut(&room.canonical()) {
            if record.members.take().is_some() {
                self.dirty = true;
            }
        }
    }

    fn room_members_mut(&mut self, room: &RoomName) -> Option<&mut Vec<Username>> {
        self.data
            .rooms
            .get_mut(&room.canonical())
            .and_then(|r| r.members.as_mut())
    }

    // --- retired keys ----------------------------------------------------------------

    /// `user`'s retired keys, newest first.
    pub(crate) fn retired(&self, user: &Username) -> &[RetiredKey] {
        self.data
            .retired
            .get(&user.canonical())
            .map_or(&[], Vec::as_slice)
    }

    /// Records a retired key of `user` (replacing an earlier record of the same key),
    /// keeping the newest [`MAX_RETIRED`].
    pub(crate) fn retire(&mut self, user: &Username, key: RetiredKey) {
        self.dirty = true;
        let list = self.data.retired.entry(user.canonical()).or_default();
        list.retain(|k| k.public_key != key.public_key);
        list.insert(0, key);
        list.truncate(MAX_RETIRED);
    }

    /// Forgets a retired key of `user` (it is current again).
    pub(crate) fn unretire(&mut self, user: &Username, public_key: &[u8]) {
        if let Some(list) = self.data.retired.get_mut(&user.canonical()) {
            let before = list.len();
            list.retain(|k| k.public_key != public_key);
            if list.len() != before {
                self.dirty = true;
            }
        }
    }

    fn room_mut(&mut self, room: &RoomName) -> &mut RoomRecord {
        let rooms = &mut self.data.rooms;
        let key = room.canonical();
        if !rooms.contains_key(&key) {
            self.dirty = true;
            if rooms.len() >= MAX_ROOMS {
                forget_oldest(rooms, |r| r.latest_seq);
            }
        }
        rooms.entry(key).or_default()
    }
}

impl LedgerFile {
    fn fresh() -> Self {
        Self {
            version: FORMAT_VERSION,
            device: DeviceId::random().0,
            rooms: BTreeMap::new(),
            retired: BTreeMap::new(),
        }
    }
}

fn parse(text: &str) -> Result<LedgerFile, String> {
    let data: LedgerFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if data.version != FORMAT_VERSION {
        return Err(format!("unsupported format version {}", data.version));
    }
    for (room, record) in &data.rooms {
        for (sender, s) in &record.senders {
            let ordered = s.runs.windows(2).all(|w| w[0].last + 1 < w[1].first);
            let sane = s.runs.iter().all(|r| r.first <= r.last);
            if !ordered || !sane {
                return Err(format!("runs of {sender} in {room} are out of order"));
            }
        }
    }
    Ok(data)
}

/// Where `counter` at `seq` stands against a sender device's runs.
fn classify(runs: &[Run], counter: u64, seq: u64) -> Result<Seen, Replayed> {
    let refused = Err(Replayed { counter });
    // The first run that ends at or after the counter.
    let at = runs.partition_point(|r| r.last < counter);
    if let Some(run) = runs.get(at).filter(|r| r.first <= counter) {
        let same_place = if counter == run.first {
            seq == run.first_seq
        } else if counter == run.last {
            seq == run.last_seq
        } else {
            run.first_seq < seq && seq < run.last_seq
        };
        return if same_place { Ok(Seen::Again) } else { refused };
    }
    // A new counter must sit between its neighbours' positions too.
    let after_previous = at == 0 || runs[at - 1].last_seq < seq;
    let before_next = runs.get(at).is_none_or(|next| seq < next.first_seq);
    if after_previous && before_next {
        Ok(Seen::New)
    } else {
        refused
    }
}

/// Adds a new counter (already classified [`Seen::New`]) to the runs, merging neighbours.
fn insert_run(runs: &mut Vec<Run>, counter: u64, seq: u64) {
    let at = runs.partition_point(|r| r.last < counter);
    let joins_previous = at > 0 && runs[at - 1].last + 1 == counter;
    let joins_next = runs.get(at).is_some_and(|r| r.first == counter + 1);
    match (joins_previous, joins_next) {
        (true, true) => {
            let next = runs.remove(at);
            let previous = &mut runs[at - 1];
            previous.last = next.last;
            previous.last_seq = next.last_seq;
        }
        (true, false) => {
            let previous = &mut runs[at - 1];
            previous.last = counter;
            previous.last_seq = seq;
        }
        (false, true) => {
            let next = &mut runs[at];
            next.first = counter;
            next.first_seq = seq;
        }
        (false, false) => runs.insert(
            at,
            Run {
                first: counter,
                first_seq: seq,
                last: counter,
                last_seq: seq,
            },
        ),
    }
    if runs.len() > MAX_RUNS {
        // Merge the two runs with the smallest gap between them: the counters in the gap
        // then count as accepted (within the merged positions), which errs towards
        // refusing a late message rather than accepting a replay.
        let closest = (1..runs.len())
            .min_by_key(|&i| runs[i].first - runs[i - 1].last)
            .unwrap_or(1);
        let next = runs.remove(closest);
        let previous = &mut runs[closest - 1];
        previous.last = next.last;
        previous.last_seq = next.last_seq;
    }
}

/// Removes the entry with the smallest `age` key.
fn forget_oldest<V>(map: &mut BTreeMap<String, V>, age: impl Fn(&V) -> u64) {
    if let Some(oldest) = map
        .iter()
        .min_by_key(|(_, v)| age(v))
        .map(|(k, _)| k.clone())
    {
        map.remove(&oldest);
    }
}

/// Byte strings as lowercase hex in the JSON file.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

/// A 16-byte id as lowercase hex in the JSON file.
mod hex_bytes_16 {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        super::hex_bytes::serialize(bytes, s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        super::hex_bytes::deserialize(d)?
            .try_into()
            .map_err(|_| serde::de::Error::custom("expected 16 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: &str) -> Username {
        Username::parse(n).expect("valid")
    }

    fn room(n: &str) -> RoomName {
        RoomName::parse(n).expect("valid")
    }

    const D: DeviceId = DeviceId([1; 16]);

    #[test]
    fn a_counter_is_accepted_once_and_again_only_at_its_place() {
        let mut l = Ledger::in_memory();
        let (r, a) = (room("general"), user("alice"));
        for (counter, seq) in [(1, 10), (2, 12), (3, 15)] {
            assert_eq!(l.record(&r, &a, &D, counter, seq), Ok(Seen::New));
        }
        // Re-reading history: same counters at the same places.
        for (counter, seq) in [(1, 10), (2, 12), (3, 15)] {
            assert_eq!(l.check(&r, &a, &D, counter, seq), Ok(Seen::Again));
        }
        // The same message replayed at a new position.
        for (counter, seq) in [(1, 16), (2, 30), (3, 16), (2, 10)] {
            assert_eq!(l.check(&r, &a, &D, counter, seq), Err(Replayed { counter }));
        }
        // A new counter whose position contradicts the sender's order.
        assert_eq!(l.check(&r, &a, &D, 4, 14), Err(Replayed { counter: 4 }));
        assert_eq!(l.check(&r, &a, &D, 4, 20), Ok(Seen::New));
        // Another device or room is another sequence.
        assert_eq!(l.check(&r, &a, &DeviceId([2; 16]), 1, 40), Ok(Seen::New));
        assert_eq!(l.check(&room("other"), &a, &D, 1, 40), Ok(Seen::New));
    }

    #[test]
    fn history_read_backwards_fills_in_and_merges_runs() {
        let mut l = Ledger::in_memory();
        let (r, a) = (room("general"), user("alice"));
        l.record(&r, &a, &D, 10, 100).expect("new");
        l.record(&r, &a, &D, 8, 80).expect("older, from history");
        assert_eq!(l.check(&r, &a, &D, 9, 95), Ok(Seen::New));
        assert_eq!(l.check(&r, &a, &D, 9, 79), Err(Replayed { counter: 9 }));
        l.record(&r, &a, &D, 9, 95).expect("fills the gap");
        let runs = &l.data.rooms["general"].senders[&sender_key(&a, &D)].runs;
        assert_eq!(
            runs,
            &[Run {
                first: 8,
                first_seq: 80,
                last: 10,
                last_seq: 100
            }]
        );
        assert_eq!(l.last_counters(&r, &a)[0].last_counter, 10);
    }

    #[test]
    fn the_record_is_bounded() {
        let mut l = Ledger::in_memory();
        let (r, a) = (room("general"), user("alice"));
        // Every other counter: no two runs adjacent.
        for i in 0..(MAX_RUNS as u64 + 20) {
            l.record(&r, &a, &D, 2 * i + 1, 10 * i + 1).expect("new");
        }
        let runs = &l.data.rooms["general"].senders[&sender_key(&a, &D)].runs;
        assert!(runs.len() <= MAX_RUNS);
        // Nothing accepted before became acceptable at a new place.
        assert!(l.check(&r, &a, &D, 1, 5000).is_err());
        for i in 0..(MAX_SENDERS as u64 + 5) {
            let device = DeviceId((i as u128).to_be_bytes());
            l.record(&r, &a, &device, 1, 1000 + i).expect("new");
        }
        assert!(l.data.rooms["general"].senders.len() <= MAX_SENDERS);
        for i in 0..(MAX_ROOMS + 3) {
            l.record(&room(&format!("r{i}")), &a, &D, 1, 1)
                .expect("new");
        }
        assert!(l.data.rooms.len() <= MAX_ROOMS);
    }

    #[test]
    fn counters_survive_reopening_and_a_refused_send_gives_its_counter_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alice.pem.ledger-x.json");
        let r = room("general");
        let device = {
            let mut l = Ledger::open(path.clone()).expect("opens");
            assert_eq!(l.next_counter(&r), 1);
            assert_eq!(l.next_counter(&r), 2);
            assert!(l.release_counter(&r, 2));
            assert!(!l.release_counter(&r, 7));
            assert_eq!(l.next_counter(&r), 2);
            l.record(&r, &user("bob"), &D, 5, 50).expect("new");
            l.set_members(&r, vec![user("alice"), user("bob")]);
            l.save().expect("saves");
            l.device()
        };
        let mut l = Ledger::open(path.clone()).expect("reopens");
        assert_eq!(l.device(), device, "the device id is kept");
        assert_eq!(l.next_counter(&r), 3);
        assert_eq!(
            l.check(&r, &user("bob"), &D, 5, 51),
            Err(Replayed { counter: 5 })
        );
        assert_eq!(l.members(&r).map(<[Username]>::len), Some(2));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "{\"version\": 1}").expect("write");
        assert!(matches!(
            Ledger::open(path),
            Err(LedgerError::Corrupt { .. })
        ));
    }

    #[test]
    fn retired_keys_are_bounded_and_newest_first() {
        let mut l = Ledger::in_memory();
        let a = user("alice");
        for i in 0..6u8 {
            l.retire(
                &a,
                RetiredKey {
                    public_key: vec![i],
                    marks: Vec::new(),
                },
            );
        }
        let kept: Vec<u8> = l.retired(&a).iter().map(|k| k.public_key[0]).collect();
        assert_eq!(kept, vec![5, 4, 3, 2]);
        l.unretire(&a, &[4]);
        assert_eq!(l.retired(&a).len(), 3);
    }

    #[test]
    fn the_ledger_sits_beside_the_pins() {
        assert_eq!(
            ledger_path_for(Path::new("/k/alice.pem.pins.json"), &ServerId([0xab; 16])),
            PathBuf::from(format!("/k/alice.pem.ledger-{}.json", "ab".repeat(16)))
        );
    }
}
