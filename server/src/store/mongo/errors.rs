//! Driver errors mapped into [`StoreError`], and the adapter's own error types.

use std::time::Duration;

use mongodb::error::{
    Error as DriverError, ErrorKind, WriteFailure, RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR,
};

use super::STORE;
use crate::store::StoreError;

/// The server's code for dropping an index that does not exist.
pub(super) const INDEX_NOT_FOUND: i32 = 27;

/// Server error codes for a duplicate key (11001 is the pre-2.6 spelling).
pub(super) const DUPLICATE_KEY_CODES: [i32; 2] = [11000, 11001];

/// Server error codes that mean "try again later": unreachable hosts, network timeouts, a
/// primary stepping down or shutting down, `maxTimeMS` and write-concern timeouts.
pub(super) const UNAVAILABLE_CODES: [i32; 15] = [
    6, 7, 50, 64, 89, 91, 189, 202, 262, 9001, 10107, 11600, 11602, 13435, 13436,
];

/// Server error code for a server whose disk is full (`OutOfDiskSpace`).
pub(super) const OUT_OF_DISK_SPACE: i32 = 14031;

/// Why [`MongoStore::connect`] failed, with the step and the hosts (never credentials).
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    #[error("invalid MongoDB connection string")]
    Uri(#[source] DriverError),
    #[error("invalid MongoDB database name {name:?}: {reason}")]
    DatabaseName { name: String, reason: &'static str },
    #[error("could not reach a MongoDB primary at {hosts} within {timeout:?} (is MONGODB_URI right and the server up?)")]
    Unreachable {
        hosts: String,
        timeout: Duration,
        #[source]
        source: DriverError,
    },
    #[error("the MongoDB database has schema version {found}, written by a newer server; this one reads up to {supported}")]
    NewerSchema { found: u64, supported: u64 },
    #[error("could not look up the SRV/TXT records of the mongodb+srv:// URI's host (DNS); the URI may be right and the name service down")]
    SrvLookup(#[source] DriverError),
    #[error("MongoDB at {hosts} rejected the credentials in MONGODB_URI (authentication failed)")]
    Authentication {
        hosts: String,
        #[source]
        source: DriverError,
    },
    #[error("MongoDB at {hosts} is a standalone server, not a replica set: w: \"majority\" would mean that one node, and an acknowledged message would not survive its loss. Use a replica set (Atlas, or a single-member set as in docker-compose.yml), or set MONGODB_ALLOW_STANDALONE=true for development")]
    Standalone { hosts: String },
    #[error("MongoDB at {hosts} refused {step}")]
    Refused {
        hosts: String,
        step: &'static str,
        #[source]
        source: DriverError,
    },
}

/// A stored document that does not have the shape this adapter writes.
#[derive(Debug, thiserror::Error)]
#[error("malformed {collection} document: field `{field}` {problem}")]
pub(super) struct MalformedDocument {
    pub(super) collection: &'static str,
    pub(super) field: &'static str,
    pub(super) problem: String,
}

/// A value the adapter cannot represent in BSON.
#[derive(Debug, thiserror::Error)]
#[error("{0} does not fit in a BSON 64-bit integer")]
pub(super) struct OutOfRange(pub(super) &'static str);

/// `insert_message` lost the race for the next sequence number too often.
#[derive(Debug, thiserror::Error)]
#[error("room {room}: gave up after {attempts} attempts to take the next sequence number")]
pub(super) struct SequenceContention {
    pub(super) room: String,
    pub(super) attempts: usize,
}

/// `add_member` kept seeing the room change under it.
#[derive(Debug, thiserror::Error)]
#[error("room {room}: membership kept changing during add_member")]
pub(super) struct MembershipContention {
    pub(super) room: String,
}

pub(super) fn backend(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::Backend {
        store: STORE,
        source: source.into(),
    }
}

pub(super) fn unavailable(
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> StoreError {
    StoreError::Unavailable {
        store: STORE,
        source: source.into(),
    }
}

/// Maps a driver error into the store's typed errors; the driver error stays the source.
pub(super) fn map_err(err: DriverError) -> StoreError {
    if is_duplicate_key(&err) {
        StoreError::AlreadyExists
    } else if error_code(&err) == Some(OUT_OF_DISK_SPACE) {
        unavailable(crate::store::StorageFull(err.to_string()))
    } else if is_unavailable(&err) {
        unavailable(err)
    } else {
        backend(err)
    }
}

/// Like [`map_err`], but wraps the driver error in `context` first.
pub(super) fn map_err_with(
    err: DriverError,
    context: impl FnOnce(DriverError) -> ConnectError,
) -> StoreError {
    if is_unavailable(&err) {
        unavailable(context(err))
    } else {
        backend(context(err))
    }
}

pub(super) fn is_duplicate_key(err: &DriverError) -> bool {
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => DUPLICATE_KEY_CODES.contains(&e.code),
        ErrorKind::Command(e) => DUPLICATE_KEY_CODES.contains(&e.code),
        _ => false,
    }
}

pub(super) fn is_index_not_found(err: &DriverError) -> bool {
    matches!(err.kind.as_ref(), ErrorKind::Command(e) if e.code == INDEX_NOT_FOUND)
}

/// The server's error code, for a command or write error.
pub(super) fn error_code(err: &DriverError) -> Option<i32> {
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => Some(e.code),
        ErrorKind::Command(e) => Some(e.code),
        _ => None,
    }
}

pub(super) fn is_unavailable(err: &DriverError) -> bool {
    if err.contains_label(RETRYABLE_WRITE_ERROR) || err.contains_label(RETRYABLE_ERROR) {
        return true;
    }
    match err.kind.as_ref() {
        // A write refused because the node stepped down, timed out or ran out of disk.
        ErrorKind::Write(WriteFailure::WriteError(e)) => {
            UNAVAILABLE_CODES.contains(&e.code) || e.code == OUT_OF_DISK_SPACE
        }
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown
        | ErrorKind::Write(WriteFailure::WriteConcernError(_)) => true,
        ErrorKind::Command(e) => UNAVAILABLE_CODES.contains(&e.code),
        _ => false,
    }
}
