//! The only code that turns protocol values into bytes and back.
//!
//! It wraps bincode 1.3 with one fixed configuration (little-endian, variable-length
//! integers, a byte limit of [`MAX_FRAME_BYTES`], trailing bytes rejected), so the format
//! is pinned here and could be swapped for another serde format in one place.

use bincode::Options;
use serde::{Deserialize, Serialize};

use crate::RequestId;

use super::{
    recipients_of, ClientFrame, DeliveredMessage, DeliveryHead, Envelope, Push, ServerMsg,
    MAX_FRAME_BYTES,
};

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The frame is larger than [`MAX_FRAME_BYTES`].
    #[error("frame of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// The frame's size, or the limit when the encoder stopped early.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not a valid frame (unknown variant, bad lengths, trailing bytes …).
    #[error("malformed frame: {0}")]
    Malformed(String),
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_limit(MAX_FRAME_BYTES as u64)
        .reject_trailing_bytes()
}

fn map_err(err: &bincode::ErrorKind, size: usize) -> CodecError {
    match err {
        bincode::ErrorKind::SizeLimit => CodecError::TooLarge {
            size,
            limit: MAX_FRAME_BYTES,
        },
        other => CodecError::Malformed(other.to_string()),
    }
}

/// Encodes any protocol value (frames, or the encrypted payload inside an envelope).
///
/// # Errors
/// [`CodecError::TooLarge`] if the encoding would exceed [`MAX_FRAME_BYTES`].
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    options()
        .serialize(value)
        .map_err(|e| map_err(&e, MAX_FRAME_BYTES))
}

/// The encoder of one message's `Push::Message` frames. Copy `c`'s frame is exactly what
/// [`encode_server`] gives for the push of the [`DeliveredMessage`] made of the head, the
/// copies' recipient list and `c`: [`shared`](Self::shared), the same for every copy
/// (every field before the envelope, the recipient list included), followed by `c`'s
/// encoding. The shared part is encoded once; a writer that can send a frame in pieces
/// sends it from one buffer for every copy and encodes only each copy's [`own`](Self::own)
/// part, while [`whole`](Self::whole) gives a frame in one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliveries {
    shared: Vec<u8>,
}

impl Deliveries {
    /// Prepares the frames of `head` for `copies`.
    ///
    /// # Errors
    /// [`CodecError::TooLarge`] if the shared part alone exceeds [`MAX_FRAME_BYTES`];
    /// [`CodecError::Malformed`] if there are no copies.
    pub fn new(head: DeliveryHead, copies: &[Envelope]) -> Result<Self, CodecError> {
        let first = copies
            .first()
            .ok_or_else(|| CodecError::Malformed("a message without copies".into()))?;
        // The envelope is the frame's last field, and bincode writes fields one after
        // another, so a whole frame minus its envelope's bytes is what every copy shares.
        let mut shared = encode_server(&ServerMsg::Push(Push::Message(DeliveredMessage {
            room: head.room,
            seq: head.seq,
            message_id: head.message_id,
            sender: head.sender,
            server_time_ms: head.server_time_ms,
            recipients: recipients_of(copies),
            envelope: first.clone(),
        })))?;
        let shared_len = shared
            .len()
            .checked_sub(encoded_len(first)?)
            .ok_or_else(|| {
                CodecError::Malformed("the envelope is longer than the frame holding it".into())
            })?;
        shared.truncate(shared_len);
        Ok(Self { shared })
    }

    /// The start of every copy's frame.
    pub fn shared(&self) -> &[u8] {
        &self.shared
    }

    /// The rest of `copy`'s frame: its envelope's encoding.
    ///
    /// # Errors
    /// [`CodecError::TooLarge`] if the whole frame would exceed [`MAX_FRAME_BYTES`].
    pub fn own(&self, copy: &Envelope) -> Result<Vec<u8>, CodecError> {
        self.write(copy, false)
    }

    /// `copy`'s whole frame, in one buffer.
    ///
    /// # Errors
    /// [`CodecError::TooLarge`] if the frame would exceed [`MAX_FRAME_BYTES`].
    pub fn whole(&self, copy: &Envelope) -> Result<Vec<u8>, CodecError> {
        self.write(copy, true)
    }

    fn write(&self, copy: &Envelope, with_shared: bool) -> Result<Vec<u8>, CodecError> {
        let own_len = encoded_len(copy)?;
        let size = self.shared.len() + own_len;
        if size > MAX_FRAME_BYTES {
            return Err(CodecError::TooLarge {
                size,
                limit: MAX_FRAME_BYTES,
            });
        }
        let mut frame = Vec::with_capacity(if with_shared { size } else { own_len });
        if with_shared {
            frame.extend_from_slice(&self.shared);
        }
        options()
            .serialize_into(&mut frame, copy)
            .map_err(|e| map_err(&e, size))?;
        Ok(frame)
    }
}

/// The size of `value`'s encoding.
fn encoded_len<T: Serialize>(value: &T) -> Result<usize, CodecError> {
    let size = options()
        .serialized_size(value)
        .map_err(|e| map_err(&e, MAX_FRAME_BYTES))?;
    usize::try_from(size).map_err(|_| CodecError::TooLarge {
        size: usize::MAX,
        limit: MAX_FRAME_BYTES,
    })
}

/// Decodes one complete value, rejecting oversized input and trailing bytes. `&str` and
/// `&[u8]` fields of `T` may borrow from `bytes` instead of copying.
///
/// # Errors
/// [`CodecError::TooLarge`] or [`CodecError::Malformed`].
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CodecError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(CodecError::TooLarge {
            size: bytes.len(),
            limit: MAX_FRAME_BYTES,
        });
    }
    options()
        .deserialize(bytes)
        .map_err(|e| map_err(&e, bytes.len()))
}

/// Encodes a client frame.
///
/// # Errors
/// See [`encode`].
pub fn encode_client(frame: &ClientFrame) -> Result<Vec<u8>, CodecError> {
    encode(frame)
}

/// Decodes a client frame.
///
/// # Errors
/// See [`decode`].
pub fn decode_client(bytes: &[u8]) -> Result<ClientFrame, CodecError> {
    decode(bytes)
}

/// The request id at the head of a client frame, read without decoding the rest: what a
/// server answers a frame it refuses unread (over a rate limit) with. `None` when the
/// bytes do not even start with one.
pub fn request_id_of(bytes: &[u8]) -> Option<RequestId> {
    bincode::DefaultOptions::new()
        .with_limit(MAX_FRAME_BYTES as u64)
        .allow_trailing_bytes()
        .deserialize(bytes)
        .ok()
}

/// Encodes a server frame.
///
/// # Errors
/// See [`encode`].
pub fn encode_server(msg: &ServerMsg) -> Result<Vec<u8>, CodecError> {
    encode(msg)
}

/// Decodes a server frame.
///
/// # Errors
/// See [`decode`].
pub fn decode_server(bytes: &[u8]) -> Result<ServerMsg, CodecError> {
    decode(bytes)
}
