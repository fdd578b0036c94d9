//! The only code that turns protocol values into bytes and back.
//!
//! It wraps bincode 1.3 with one fixed configuration (little-endian, variable-length
//! integers, a byte limit of [`MAX_FRAME_BYTES`], trailing bytes rejected), so the format
//! is pinned here and could be swapped for another serde format in one place.

use bincode::Options;
use serde::{Deserialize, Serialize};

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

/// The `Push::Message` frame for each of a message's `copies`, in copy order. Each frame
/// is exactly what [`encode_server`] gives for the push of the [`DeliveredMessage`] made of
/// `head`, the copies' recipient list and that copy; but what all copies share (every field
/// before the envelope, the recipient list included) is encoded once, not once per copy.
///
/// # Errors
/// [`CodecError::TooLarge`] if a frame would exceed [`MAX_FRAME_BYTES`].
pub fn encode_deliveries(
    head: DeliveryHead,
    copies: &[Envelope],
) -> Result<Vec<Vec<u8>>, CodecError> {
    let Some(first) = copies.first() else {
        return Ok(Vec::new());
    };
    // The envelope is the frame's last field, and bincode writes fields one after another,
    // so a whole frame minus its envelope's bytes is the prefix every copy shares.
    let whole = encode_server(&ServerMsg::Push(Push::Message(DeliveredMessage {
        room: head.room,
        seq: head.seq,
        message_id: head.message_id,
        sender: head.sender,
        server_time_ms: head.server_time_ms,
        recipients: recipients_of(copies),
        envelope: first.clone(),
    })))?;
    let first_len = encoded_len(first)?;
    let shared = whole
        .len()
        .checked_sub(first_len)
        .and_then(|end| whole.get(..end))
        .ok_or_else(|| {
            CodecError::Malformed("the envelope is longer than the frame holding it".into())
        })?;
    copies
        .iter()
        .map(|copy| {
            let size = shared.len() + encoded_len(copy)?;
            if size > MAX_FRAME_BYTES {
                return Err(CodecError::TooLarge {
                    size,
                    limit: MAX_FRAME_BYTES,
                });
            }
            let mut frame = Vec::with_capacity(size);
            frame.extend_from_slice(shared);
            options()
                .serialize_into(&mut frame, copy)
                .map_err(|e| map_err(&e, size))?;
            Ok(frame)
        })
        .collect()
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
