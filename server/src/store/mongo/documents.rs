//! The BSON documents the adapter writes and reads, and typed access to their fields.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use mongodb::bson::{doc, spec::BinarySubtype, Binary, Bson, DateTime, Document};
use shared::protocol::{DeliveredMessage, Envelope};
use shared::{MessageId, RoomName, Username};

use super::errors::{backend, MalformedDocument, OutOfRange};
use super::{MESSAGES, ROOMS, USERS};
use crate::store::{
    Membership, NewMessage, RoomKey, RoomKindRecord, RoomRecord, StoreError, UserRecord,
};

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(super) fn binary(bytes: Vec<u8>) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes,
    }
}

pub(super) fn to_i64(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| backend(OutOfRange(what)))
}

pub(super) fn datetime(ms: u64, what: &'static str) -> Result<DateTime, StoreError> {
    Ok(DateTime::from_millis(to_i64(ms, what)?))
}

pub(super) fn user_to_doc(user: &UserRecord) -> Result<Document, StoreError> {
    Ok(doc! {
        "_id": user.username.canonical(),
        "username": user.username.as_str(),
        "public_key": binary(user.public_key.clone()),
        "created_at": datetime(user.created_at_ms, "user creation time")?,
    })
}

pub(super) fn user_from_doc(d: &Document) -> Result<UserRecord, StoreError> {
    let f = Fields::new(USERS, d);
    Ok(UserRecord {
        username: f.username("username")?,
        public_key: f.bytes("public_key")?,
        created_at_ms: f.millis("created_at")?,
    })
}

/// A fresh permanent id for a new room document: `#` and 32 random hex digits. `#` is in
/// no room key (names and hidden keys never hold it), so it never meets the `_id` of a
/// room stored before rooms had internal ids (theirs is their original key).
pub(super) fn new_room_id() -> String {
    let bytes: [u8; 16] = rand::random();
    format!("#{}", hex::encode(bytes))
}

/// The room under `key`, without its members (the caller adds them), with a new internal
/// id.
pub(super) fn room_to_doc(key: &RoomKey, room: &RoomRecord) -> Result<Document, StoreError> {
    let mut d = doc! {
        "_id": new_room_id(),
        "key": key.as_str(),
        "canonical": room.name.canonical(),
        "name": room.name.as_str(),
        "owner": room.owner.as_str(),
        "hidden": room.hidden,
        "created_at": datetime(room.created_at_ms, "room creation time")?,
        "admins": room.admins.iter().map(Username::canonical).collect::<Vec<_>>(),
    };
    if let Some(hash) = &room.password_hash {
        d.insert("password_hash", hash.as_str());
    }
    if let Some(topic) = &room.topic {
        d.insert("topic", topic.as_str());
    }
    if let RoomKindRecord::Direct { participants } = &room.kind {
        d.insert(
            "direct",
            participants
                .iter()
                .map(Username::canonical)
                .collect::<Vec<_>>(),
        );
    }
    Ok(d)
}

pub(super) fn room_from_doc(d: &Document) -> Result<RoomRecord, StoreError> {
    let f = Fields::new(ROOMS, d);
    let mut admins = match d.get("admins") {
        None => Vec::new(),
        Some(_) => f.usernames("admins")?,
    };
    admins.sort();
    let kind = match d.get("direct") {
        None => RoomKindRecord::Group,
        Some(_) => match <[Username; 2]>::try_from(f.usernames("direct")?) {
            Ok(participants) => RoomKindRecord::Direct { participants },
            Err(_) => return Err(f.malformed("direct", "does not name two users")),
        },
    };
    Ok(RoomRecord {
        name: f.room_name("name")?,
        owner: f.username("owner")?,
        password_hash: f.opt_str("password_hash")?.map(str::to_owned),
        hidden: f.bool("hidden")?,
        created_at_ms: f.millis("created_at")?,
        kind,
        admins,
        topic: f.opt_str("topic")?.map(str::to_owned),
    })
}

/// A room document projected to `key` and `name`, as one of a member's rooms.
pub(super) fn membership_from_doc(d: &Document) -> Result<Membership, StoreError> {
    let f = Fields::new(ROOMS, d);
    Ok(Membership {
        key: RoomKey::from_stored(f.str("key")?.to_owned()),
        name: f.room_name("name")?,
    })
}

pub(super) fn member_doc(user: &Username, joined_at_ms: u64) -> Result<Document, StoreError> {
    Ok(doc! {
        "user": user.canonical(),
        "username": user.as_str(),
        "joined_at": datetime(joined_at_ms, "join time")?,
    })
}

/// A room document's members as (canonical, display) pairs, ordered by canonical name.
pub(super) fn members_from_doc(d: &Document) -> Result<Vec<(String, Username)>, StoreError> {
    let f = Fields::new(ROOMS, d);
    let array = match d.get("members") {
        None => return Ok(Vec::new()),
        Some(Bson::Array(a)) => a,
        Some(_) => return Err(f.malformed("members", "is not an array")),
    };
    let mut members = array
        .iter()
        .map(|m| match m {
            Bson::Document(m) => {
                let username = Fields::new(ROOMS, m).username("username")?;
                Ok((username.canonical(), username))
            }
            _ => Err(f.malformed("members", "has an entry that is not a document")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    members.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(members)
}

/// The message without `seq` (set per insert attempt). `room_name` is the room's display
/// name, as history returns it.
pub(super) fn message_to_doc(
    message: &NewMessage,
    room_name: &RoomName,
) -> Result<Document, StoreError> {
    let copies: Vec<Bson> = message
        .envelopes
        .iter()
        .map(|e| {
            Bson::Document(doc! {
                "recipient": e.recipient.canonical(),
                "recipient_name": e.recipient.as_str(),
                "wrapped_key": binary(e.wrapped_key.clone()),
                "nonce": binary(e.nonce.to_vec()),
                "ciphertext": binary(e.ciphertext.clone()),
            })
        })
        .collect();
    Ok(doc! {
        "room": message.room.as_str(),
        "room_name": room_name.as_str(),
        "message_id": binary(message.message_id.0.to_vec()),
        "sender": message.sender.as_str(),
        "server_time": datetime(message.server_time_ms, "server time")?,
        // Every recipient's display name, in copy order: each reader gets the whole list
        // with their one copy (the sender's signature covers it).
        "recipients": message
            .envelopes
            .iter()
            .map(|e| e.recipient.as_str())
            .collect::<Vec<_>>(),
        "copies": copies,
    })
}

/// A history document, projected to the recipient's copy only, as that recipient gets it.
pub(super) fn delivered_from_doc(d: &Document) -> Result<DeliveredMessage, StoreError> {
    let f = Fields::new(MESSAGES, d);
    let copy = match d.get("copies") {
        Some(Bson::Array(a)) => match a.as_slice() {
            [Bson::Document(copy)] => copy,
            _ => return Err(f.malformed("copies", "does not hold exactly one copy document")),
        },
        _ => return Err(f.malformed("copies", "is missing or not an array")),
    };
    let c = Fields::new(MESSAGES, copy);
    let message_id: [u8; 16] = f
        .bytes("message_id")?
        .try_into()
        .map_err(|_| f.malformed("message_id", "is not 16 bytes"))?;
    let nonce: [u8; 12] = c
        .bytes("nonce")?
        .try_into()
        .map_err(|_| c.malformed("nonce", "is not 12 bytes"))?;
    Ok(DeliveredMessage {
        room: f.room_name("room_name")?,
        seq: f.seq("seq")?,
        message_id: MessageId(message_id),
        sender: f.username("sender")?,
        server_time_ms: f.millis("server_time")?,
        recipients: f.usernames("recipients")?,
        envelope: Envelope {
            recipient: c.username("recipient_name")?,
            wrapped_key: c.bytes("wrapped_key")?,
            nonce,
            ciphertext: c.bytes("ciphertext")?,
        },
    })
}

/// Typed field access that reports which field of which collection is malformed.
pub(super) struct Fields<'a> {
    pub(super) collection: &'static str,
    pub(super) doc: &'a Document,
}

impl<'a> Fields<'a> {
    pub(super) fn new(collection: &'static str, doc: &'a Document) -> Self {
        Self { collection, doc }
    }

    pub(super) fn malformed(&self, field: &'static str, problem: impl fmt::Display) -> StoreError {
        backend(MalformedDocument {
            collection: self.collection,
            field,
            problem: problem.to_string(),
        })
    }

    pub(super) fn access<T>(
        &self,
        field: &'static str,
        value: Result<T, mongodb::bson::document::ValueAccessError>,
    ) -> Result<T, StoreError> {
        value.map_err(|e| self.malformed(field, format!("{e:?}")))
    }

    pub(super) fn str(&self, field: &'static str) -> Result<&'a str, StoreError> {
        self.access(field, self.doc.get_str(field))
    }

    pub(super) fn opt_str(&self, field: &'static str) -> Result<Option<&'a str>, StoreError> {
        match self.doc.get(field) {
            None | Some(Bson::Null) => Ok(None),
            Some(_) => self.str(field).map(Some),
        }
    }

    pub(super) fn bool(&self, field: &'static str) -> Result<bool, StoreError> {
        self.access(field, self.doc.get_bool(field))
    }

    pub(super) fn bytes(&self, field: &'static str) -> Result<Vec<u8>, StoreError> {
        self.access(field, self.doc.get_binary_generic(field))
            .cloned()
    }

    /// A sequence number or a counter.
    ///
    /// The adapter writes Int64, but a document that went through an export and import
    /// (`mongoexport`/`mongoimport` write numbers in Extended JSON, and tools on the way may
    /// narrow them), or through another driver, may hold the same number as an Int32 or a
    /// Double: MongoDB compares all three by value, so queries and sorts treat them alike,
    /// and so does this read. A fraction or a negative number is malformed.
    pub(super) fn seq(&self, field: &'static str) -> Result<u64, StoreError> {
        match self.doc.get(field) {
            Some(value) => number(value).ok_or_else(|| {
                self.malformed(field, format!("is not a non-negative integer: {value}"))
            }),
            None => Err(self.malformed(field, "is missing")),
        }
    }

    /// [`seq`](Self::seq) for a counter that starts absent: 0 then.
    pub(super) fn counter(&self, field: &'static str) -> Result<u64, StoreError> {
        match self.doc.get(field) {
            None | Some(Bson::Null) => Ok(0),
            Some(_) => self.seq(field),
        }
    }

    pub(super) fn millis(&self, field: &'static str) -> Result<u64, StoreError> {
        let value = self.access(field, self.doc.get_datetime(field))?;
        u64::try_from(value.timestamp_millis()).map_err(|_| self.malformed(field, "is before 1970"))
    }

    pub(super) fn username(&self, field: &'static str) -> Result<Username, StoreError> {
        Username::parse(self.str(field)?).map_err(|e| self.malformed(field, e))
    }

    pub(super) fn usernames(&self, field: &'static str) -> Result<Vec<Username>, StoreError> {
        self.access(field, self.doc.get_array(field))?
            .iter()
            .map(|name| match name {
                Bson::String(name) => Username::parse(name).map_err(|e| self.malformed(field, e)),
                _ => Err(self.malformed(field, "holds a non-string")),
            })
            .collect()
    }

    pub(super) fn room_name(&self, field: &'static str) -> Result<RoomName, StoreError> {
        RoomName::parse(self.str(field)?).map_err(|e| self.malformed(field, e))
    }
}

/// A non-negative integer stored as any BSON number type (see [`Fields::seq`]).
fn number(value: &Bson) -> Option<u64> {
    match value {
        Bson::Int32(n) => u64::try_from(*n).ok(),
        Bson::Int64(n) => u64::try_from(*n).ok(),
        // 2^53: past it a Double no longer holds every integer exactly.
        Bson::Double(x) if x.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(x) =>
        {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Some(*x as u64)
        }
        _ => None,
    }
}
