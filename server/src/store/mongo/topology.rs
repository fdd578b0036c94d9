//! What kind of deployment the adapter is connected to, checked once at start-up.
//!
//! # Why a standalone server is refused by default
//! Every write is sent with `{ w: "majority", j: true }` so that a message acknowledged to
//! its sender survives the loss of a node: MongoDB acknowledges it only once a majority of
//! the replica set's voting members has journaled it, and such a write is never rolled
//! back by a failover. A standalone `mongod` has no replica set: it accepts the same write
//! concern and acknowledges once its one node has the write, so the promise silently
//! shrinks to "on one disk". Start-up therefore asks the server what it is (the `hello`
//! command MongoDB's drivers use for discovery; MongoDB documents `setName` in its reply
//! for replica-set members and `msg: "isdbgrid"` for a `mongos` router of a sharded
//! cluster, whose shards are replica sets) and refuses a standalone server unless the
//! operator allowed one (`MONGODB_ALLOW_STANDALONE`, for development and the wire-protocol
//! emulator), logging a warning then.
//!
//! The check uses the server the driver selected as primary; Atlas and the Compose file's
//! single-member replica set both report a `setName`.

use std::fmt;

use mongodb::bson::Document;

/// Whether start-up accepts a standalone server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standalone {
    /// Refuse it: production, where `w: "majority"` must mean a replica-set majority.
    Refuse,
    /// Accept it with a warning: local development, tests and the emulator.
    Allow,
}

/// The deployment `hello` describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deployment {
    /// A member of the named replica set.
    ReplicaSet(String),
    /// A `mongos` router in front of a sharded cluster.
    Sharded,
    /// A server on its own.
    Standalone,
}

impl Deployment {
    /// Reads a `hello` reply.
    pub(super) fn from_hello(hello: &Document) -> Self {
        if let Ok(set) = hello.get_str("setName") {
            Self::ReplicaSet(set.to_owned())
        } else if hello.get_str("msg") == Ok("isdbgrid") {
            Self::Sharded
        } else {
            Self::Standalone
        }
    }
}

impl fmt::Display for Deployment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReplicaSet(name) => write!(f, "replica set {name:?}"),
            Self::Sharded => f.write_str("sharded cluster (mongos)"),
            Self::Standalone => f.write_str("standalone server"),
        }
    }
}
