//! The documents one instance writes for the others: a delivery (the encoded frames a
//! handler passed to [`Fanout::deliver`](crate::hub::Fanout::deliver), whatever push they
//! hold) or an eviction. Pure encoding and decoding, no I/O.
//!
//! ```text
//! { _id: ObjectId, origin: "<instance>", at: Date, kind: "deliver",
//!   shared: [Binary, …],                        // pieces several frames start with
//!   frames: [{ to: ["alice", …], s: 0, own: Binary }, …] }
//! { _id: ObjectId, origin: "<instance>", at: Date, kind: "evict", user: "alice", why: … }
//! { _id: ObjectId, origin: "<instance>", at: Date, kind: "lobby", frame: Binary }
//! ```
//!
//! Frames are carried as the bytes the handler encoded, so a push kind added to the
//! protocol crosses instances with no change here. Consecutive identical frames (a
//! broadcast) are stored once with all their recipients; the piece a message's copies
//! share is stored once per document. A delivery larger than [`MAX_DOC_FRAME_BYTES`] is
//! split over several documents, written in order.

use std::sync::Arc;

use bytes::Bytes;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{self, doc, oid::ObjectId, Binary, Bson, DateTime, Document};

use crate::hub::{Eviction, PushFrame};

/// Frame bytes per document, well under MongoDB's 16 MiB document limit.
pub const MAX_DOC_FRAME_BYTES: usize = 8 << 20;

/// What another instance asked this one to do.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// Send these frames to these users' connections here.
    Deliver(Vec<(String, PushFrame)>),
    /// End every connection of `user` here, telling it `why`.
    Evict {
        /// The user (canonical name).
        user: String,
        /// Why.
        why: Eviction,
    },
    /// Send this frame to the connections here that watch the lobby.
    Lobby(Bytes),
}

/// Why a document could not be read as an [`Event`] (written by a newer or broken
/// instance).
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// A field is missing or of the wrong type.
    #[error("malformed fan-out event: {0}")]
    Malformed(&'static str),
    /// The `kind` is not one this version knows.
    #[error("unknown fan-out event kind {0:?}")]
    UnknownKind(String),
    /// The eviction reason is not one this version knows.
    #[error("unknown eviction reason: {0}")]
    UnknownEviction(#[from] bson::de::Error),
}

/// The documents for one delivery from `origin`, in the order to write them (none for no
/// frames).
pub fn deliver_docs(origin: &str, frames: &[(String, PushFrame)]) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut chunk = Chunk::default();
    for (user, frame) in frames {
        if chunk.bytes + frame.len() > MAX_DOC_FRAME_BYTES && !chunk.entries.is_empty() {
            docs.push(std::mem::take(&mut chunk).into_doc(origin));
        }
        chunk.add(user, frame);
    }
    if !chunk.entries.is_empty() {
        docs.push(chunk.into_doc(origin));
    }
    docs
}

/// The document for an eviction from `origin`.
///
/// # Errors
/// If `why` cannot be written as BSON (it always can; the serializer is fallible).
pub fn evict_doc(origin: &str, user: &str, why: Eviction) -> Result<Document, bson::ser::Error> {
    Ok(doc! {
        "_id": ObjectId::new(),
        "origin": origin,
        "at": DateTime::now(),
        "kind": "evict",
        "user": user,
        "why": bson::to_bson(&why)?,
    })
}

/// The document for a lobby hint from `origin`.
pub fn lobby_doc(origin: &str, frame: &[u8]) -> Document {
    doc! {
        "_id": ObjectId::new(),
        "origin": origin,
        "at": DateTime::now(),
        "kind": "lobby",
        "frame": to_binary(frame),
    }
}

/// Reads an event document.
///
/// # Errors
/// [`EventError`] for a document this version cannot read.
pub fn decode(doc: &Document) -> Result<Event, EventError> {
    let kind = doc
        .get_str("kind")
        .map_err(|_| EventError::Malformed("kind"))?;
    match kind {
        "deliver" => decode_deliver(doc),
        "evict" => {
            let user = doc
                .get_str("user")
                .map_err(|_| EventError::Malformed("user"))?;
            let why = doc.get("why").ok_or(EventError::Malformed("why"))?;
            Ok(Event::Evict {
                user: user.to_owned(),
                why: bson::from_bson(why.clone())?,
            })
        }
        "lobby" => Ok(Event::Lobby(Bytes::copy_from_slice(binary(
            doc.get("frame").ok_or(EventError::Malformed("frame"))?,
        )?))),
        other => Err(EventError::UnknownKind(other.to_owned())),
    }
}

fn decode_deliver(doc: &Document) -> Result<Event, EventError> {
    let shared = doc
        .get_array("shared")
        .map_err(|_| EventError::Malformed("shared"))?
        .iter()
        .map(|b| binary(b).map(|bytes| Arc::new(Bytes::copy_from_slice(bytes))))
        .collect::<Result<Vec<_>, _>>()?;
    let mut frames = Vec::new();
    for entry in doc
        .get_array("frames")
        .map_err(|_| EventError::Malformed("frames"))?
    {
        let entry = entry.as_document().ok_or(EventError::Malformed("frame"))?;
        let own = Bytes::copy_from_slice(binary(
            entry.get("own").ok_or(EventError::Malformed("own"))?,
        )?);
        let frame = match entry.get("s") {
            None => PushFrame::from(own),
            Some(index) => {
                let piece = index
                    .as_i64()
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| shared.get(i))
                    .ok_or(EventError::Malformed("s"))?;
                PushFrame::new(Arc::clone(piece), own)
            }
        };
        for user in entry
            .get_array("to")
            .map_err(|_| EventError::Malformed("to"))?
        {
            let user = user.as_str().ok_or(EventError::Malformed("to"))?;
            frames.push((user.to_owned(), frame.clone()));
        }
    }
    Ok(Event::Deliver(frames))
}

fn binary(value: &Bson) -> Result<&[u8], EventError> {
    match value {
        Bson::Binary(b) => Ok(&b.bytes),
        _ => Err(EventError::Malformed("binary")),
    }
}

fn to_binary(bytes: &[u8]) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes: bytes.to_vec(),
    })
}

/// One document's worth of frames being gathered.
#[derive(Default)]
struct Chunk {
    /// The shared pieces seen, by identity.
    shared: Vec<Arc<Bytes>>,
    /// `(recipients, index into shared, own piece)`.
    entries: Vec<(Vec<String>, Option<usize>, Bytes)>,
    bytes: usize,
}

impl Chunk {
    fn add(&mut self, user: &str, frame: &PushFrame) {
        let (shared, own) = frame.pieces();
        let index =
            shared.map(
                |piece| match self.shared.iter().position(|s| Arc::ptr_eq(s, piece)) {
                    Some(i) => i,
                    None => {
                        self.shared.push(Arc::clone(piece));
                        self.bytes += piece.len();
                        self.shared.len() - 1
                    }
                },
            );
        if let Some((users, last_index, last_own)) = self.entries.last_mut() {
            if *last_index == index && last_own == own {
                users.push(user.to_owned());
                return;
            }
        }
        self.bytes += own.len();
        self.entries
            .push((vec![user.to_owned()], index, own.clone()));
    }

    fn into_doc(self, origin: &str) -> Document {
        let frames: Vec<Bson> = self
            .entries
            .into_iter()
            .map(|(to, index, own)| {
                let mut entry = doc! { "to": to, "own": to_binary(&own) };
                if let Some(i) = index {
                    entry.insert("s", i64::try_from(i).unwrap_or(i64::MAX));
                }
                Bson::Document(entry)
            })
            .collect();
        let shared: Vec<Bson> = self.shared.iter().map(|s| to_binary(s)).collect();
        doc! {
            "_id": ObjectId::new(),
            "origin": origin,
            "at": DateTime::now(),
            "kind": "deliver",
            "shared": shared,
            "frames": frames,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(event: Event) -> Vec<(String, PushFrame)> {
        match event {
            Event::Deliver(frames) => frames,
            other => panic!("expected a delivery, got {other:?}"),
        }
    }

    #[test]
    fn a_message_delivery_round_trips_with_its_shared_piece_stored_once() {
        let shared = Arc::new(Bytes::from_static(b"head"));
        let frames = vec![
            (
                "alice".to_owned(),
                PushFrame::new(Arc::clone(&shared), Bytes::from_static(b"to-alice")),
            ),
            (
                "bob".to_owned(),
                PushFrame::new(Arc::clone(&shared), Bytes::from_static(b"to-bob")),
            ),
        ];
        let docs = deliver_docs("a", &frames);
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].get_array("shared").map(Vec::len), Ok(1));
        assert_eq!(docs[0].get_str("origin"), Ok("a"));
        assert_eq!(frames_of(decode(&docs[0]).expect("decodes")), frames);
    }

    #[test]
    fn a_broadcast_is_stored_once_with_all_its_recipients() {
        let frame = PushFrame::from(Bytes::from_static(b"joined"));
        let frames: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|u| ((*u).to_owned(), frame.clone()))
            .collect();
        let docs = deliver_docs("x", &frames);
        let entries = docs[0].get_array("frames").expect("frames");
        assert_eq!(entries.len(), 1, "one entry for three recipients");
        assert_eq!(frames_of(decode(&docs[0]).expect("decodes")), frames);
    }

    #[test]
    fn a_large_delivery_is_split_in_order_and_each_part_stands_alone() {
        let shared = Arc::new(Bytes::from(vec![1u8; 16]));
        let frames: Vec<_> = (0..5u8)
            .map(|i| {
                let own = Bytes::from(vec![i; MAX_DOC_FRAME_BYTES / 3]);
                (format!("u{i}"), PushFrame::new(Arc::clone(&shared), own))
            })
            .collect();
        let docs = deliver_docs("x", &frames);
        assert!(docs.len() >= 2, "split into {} documents", docs.len());
        let back: Vec<_> = docs
            .iter()
            .flat_map(|d| frames_of(decode(d).expect("decodes")))
            .collect();
        assert_eq!(back, frames);
        assert!(deliver_docs("x", &[]).is_empty());
    }

    #[test]
    fn an_eviction_round_trips_and_unknown_kinds_are_refused() {
        let doc = evict_doc("a", "alice", Eviction::KeyRotated).expect("encodes");
        assert_eq!(
            decode(&doc).expect("decodes"),
            Event::Evict {
                user: "alice".into(),
                why: Eviction::KeyRotated
            }
        );
        let mut newer = doc.clone();
        newer.insert("why", "SomethingNew");
        assert!(matches!(
            decode(&newer),
            Err(EventError::UnknownEviction(_))
        ));
        let lobby = lobby_doc("a", b"hint");
        assert_eq!(
            decode(&lobby).expect("decodes"),
            Event::Lobby(Bytes::from_static(b"hint"))
        );
        newer.insert("kind", "teleport");
        assert!(matches!(decode(&newer), Err(EventError::UnknownKind(k)) if k == "teleport"));
    }
}
