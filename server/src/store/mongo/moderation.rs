//! Running rooms on MongoDB: roles, bans, moving a room to another key, deleting it,
//! direct conversations, block lists, read markers and account deletion.
//!
//! ```text
//! rooms { _id: "#3f…", key: "general", …, owner: "Alice", admins: [ "bob" ],
//!         bans: [ "mallory" ], topic?: "…", direct?: [ "alice", "bob" ],
//!         members: [ { user: "alice", username: "Alice", joined_at: ISODate, read?: NumberLong(7) } ] }
//! users { _id: "alice", …, blocked?: [ "mallory" ] }
//!       { _id: "gone", username: "Gone", deleted: true, deleted_at: ISODate }   (a tombstone)
//! meta  { _id: "room_deletion:#3f…", room: "#3f…" }   (a room deletion in progress)
//! ```
//!
//! Everything here is a single-document write, and so atomic, except two operations that
//! touch many documents, which are ordered so that an interruption is safe and finished
//! later:
//!
//! - **Moving a room** changes only its `key` field (uniquely indexed): one update. Its
//!   messages refer to its permanent `_id` and never move.
//! - **Deleting a room** first records the deletion in `meta`, then deletes the room
//!   document (the room is gone for every reader from here on), then its messages, then
//!   the record. [`MongoStore::connect`] finishes any deletion it finds recorded.
//!   (A message whose insert took its number before the room document went and lands
//!   after the messages were deleted refers to an id no room has, and ids are never
//!   reused, so nobody can read it.)
//! - **Deleting an account** removes its memberships and its copies first and writes the
//!   tombstone last: an interrupted deletion leaves an account that can log in and delete
//!   itself again.
//!
//! A member's read marker is a field of their member entry, so it goes with the
//! membership and moves with the room.

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::ReturnDocument;
use shared::Username;

use super::documents::{
    datetime, member_doc, members_from_doc, now_ms, room_from_doc, room_to_doc, to_i64, Fields,
};
use super::errors::{is_duplicate_key, map_err, unavailable, MembershipContention};
use super::{is_listed, MongoStore, META, ROOMS, USERS};
use crate::store::{RoomKey, RoomRecord, RoomUpdate, StoreError};

/// The prefix of a `meta` document that records a room deletion in progress.
const ROOM_DELETION: &str = "room_deletion:";

/// How often a conditional update is retried when the document changed in between.
const MAX_ATTEMPTS: usize = 8;

impl MongoStore {
    /// The room document under `key`, with `projection`.
    async fn room_doc(&self, key: &RoomKey, projection: Document) -> Result<Document, StoreError> {
        self.find_room_doc(key, projection)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// [`Store::hand_over`](crate::store::Store::hand_over) on MongoDB: a conditional update
    /// that sets the owner only if it is still the leaver and the successor still a member.
    pub(super) async fn hand_over_room(
        &self,
        room: &RoomKey,
        leaver: &Username,
    ) -> Result<Option<Username>, StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let d = self
                .room_doc(room, doc! { "owner": 1, "admins": 1, "members": 1 })
                .await?;
            let f = Fields::new(ROOMS, &d);
            let owner = f.str("owner")?.to_owned();
            if !owner.eq_ignore_ascii_case(leaver.as_str()) {
                return Ok(None);
            }
            let others: Vec<(String, Username)> = members_from_doc(&d)?
                .into_iter()
                .filter(|(key, _)| *key != leaver.canonical())
                .collect();
            let successor = others
                .iter()
                .find(|(key, _)| is_listed(&d, "admins", key))
                .or_else(|| others.first());
            let Some((successor_key, successor)) = successor.cloned() else {
                return Ok(None);
            };
            let result = self
                .rooms
                .update_one(
                    doc! { "key": room.as_str(), "owner": &owner, "members.user": &successor_key },
                    doc! {
                        "$set": { "owner": successor.as_str() },
                        "$pull": { "admins": &successor_key },
                    },
                )
                .await
                .map_err(map_err)?;
            if result.matched_count == 1 {
                return Ok(Some(successor));
            }
        }
        Err(unavailable(MembershipContention {
            room: room.as_str().to_owned(),
        }))
    }

    /// [`Store::update_room`](crate::store::Store::update_room) on MongoDB.
    pub(super) async fn update_room_doc(
        &self,
        room: &RoomKey,
        update: RoomUpdate,
    ) -> Result<RoomRecord, StoreError> {
        let mut filter = doc! { "key": room.as_str() };
        let change = match update {
            RoomUpdate::Topic(Some(topic)) => doc! { "$set": { "topic": topic } },
            RoomUpdate::Topic(None) => doc! { "$unset": { "topic": "" } },
            RoomUpdate::PasswordHash(Some(hash)) => doc! { "$set": { "password_hash": hash } },
            RoomUpdate::PasswordHash(None) => doc! { "$unset": { "password_hash": "" } },
            RoomUpdate::Admin { user, admin } => {
                let user_key = user.canonical();
                filter.insert("members.user", &user_key);
                if admin {
                    doc! { "$addToSet": { "admins": user_key } }
                } else {
                    doc! { "$pull": { "admins": user_key } }
                }
            }
            RoomUpdate::Owner { to } => return self.transfer(room, &to).await,
        };
        let d = self
            .rooms
            .find_one_and_update(filter, change)
            .return_document(ReturnDocument::After)
            .projection(doc! { "members": 0, "bans": 0 })
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        room_from_doc(&d)
    }

    /// Makes member `to` the owner; the previous owner, if still a member, becomes an
    /// admin. Conditional on the owner not having changed since it was read.
    async fn transfer(&self, room: &RoomKey, to: &Username) -> Result<RoomRecord, StoreError> {
        let to_key = to.canonical();
        for _ in 0..MAX_ATTEMPTS {
            let d = self
                .room_doc(room, doc! { "owner": 1, "admins": 1, "members": 1 })
                .await?;
            let members = members_from_doc(&d)?;
            let Some((_, display)) = members.iter().find(|(key, _)| *key == to_key) else {
                return Err(StoreError::NotFound);
            };
            let f = Fields::new(ROOMS, &d);
            let previous = f.str("owner")?.to_owned();
            let previous_key = previous.to_ascii_lowercase();
            let mut admins: Vec<String> = match d.get("admins") {
                Some(_) => f
                    .usernames("admins")?
                    .iter()
                    .map(Username::canonical)
                    .collect(),
                None => Vec::new(),
            };
            admins.retain(|a| *a != to_key);
            if previous_key != to_key && members.iter().any(|(key, _)| *key == previous_key) {
                admins.push(previous_key);
            }
            admins.sort();
            admins.dedup();
            let updated = self
                .rooms
                .find_one_and_update(
                    doc! { "key": room.as_str(), "owner": &previous, "members.user": &to_key },
                    doc! { "$set": { "owner": display.as_str(), "admins": admins } },
                )
                .return_document(ReturnDocument::After)
                .projection(doc! { "members": 0, "bans": 0 })
                .await
                .map_err(map_err)?;
            if let Some(d) = updated {
                return room_from_doc(&d);
            }
        }
        Err(unavailable(MembershipContention {
            room: room.as_str().to_owned(),
        }))
    }

    /// [`Store::move_room`](crate::store::Store::move_room) on MongoDB: one update of the
    /// room document's `key`, which the unique `room_key_unique` index guards.
    pub(super) async fn move_room_doc(
        &self,
        from: &RoomKey,
        to: &RoomKey,
        hidden: bool,
        password_hash: Option<String>,
    ) -> Result<(), StoreError> {
        let mut change = doc! { "$set": { "key": to.as_str(), "hidden": hidden } };
        match password_hash {
            Some(hash) => {
                if let Ok(set) = change.get_document_mut("$set") {
                    set.insert("password_hash", hash);
                }
            }
            None => {
                change.insert("$unset", doc! { "password_hash": "" });
            }
        }
        match self
            .rooms
            .update_one(doc! { "key": from.as_str() }, change)
            .await
        {
            Ok(result) if result.matched_count == 1 => Ok(()),
            Ok(_) => Err(StoreError::NotFound),
            Err(e) if is_duplicate_key(&e) => Err(StoreError::AlreadyExists),
            Err(e) => Err(map_err(e)),
        }
    }

    /// [`Store::delete_room`](crate::store::Store::delete_room) on MongoDB (see the module
    /// docs for the order).
    pub(super) async fn delete_room_doc(
        &self,
        room: &RoomKey,
    ) -> Result<Vec<Username>, StoreError> {
        let d = self.room_doc(room, doc! { "_id": 1, "members": 1 }).await?;
        let id = Fields::new(ROOMS, &d).str("_id")?.to_owned();
        let members = members_from_doc(&d)?
            .into_iter()
            .map(|(_, name)| name)
            .collect();
        let marker = format!("{ROOM_DELETION}{id}");
        self.meta
            .update_one(doc! { "_id": &marker }, doc! { "$set": { "room": &id } })
            .upsert(true)
            .await
            .map_err(map_err)?;
        self.finish_room_deletion(&marker, &id).await?;
        Ok(members)
    }

    /// Deletes the room with id `id` and its messages, then the `meta` record `marker`.
    async fn finish_room_deletion(&self, marker: &str, id: &str) -> Result<(), StoreError> {
        self.rooms
            .delete_one(doc! { "_id": id })
            .await
            .map_err(map_err)?;
        self.messages
            .delete_many(doc! { "room": id })
            .await
            .map_err(map_err)?;
        self.meta
            .delete_one(doc! { "_id": marker })
            .await
            .map_err(map_err)?;
        Ok(())
    }

    /// Finishes every room deletion recorded in `meta` (an earlier server stopped in the
    /// middle of one). Run by [`MongoStore::connect`].
    pub(super) async fn finish_room_deletions(&self) -> Result<(), StoreError> {
        let pending: Vec<Document> = self
            .meta
            .find(doc! { "_id": { "$regex": format!("^{ROOM_DELETION}") } })
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        for d in &pending {
            let f = Fields::new(META, d);
            self.finish_room_deletion(f.str("_id")?, f.str("room")?)
                .await?;
        }
        if !pending.is_empty() {
            tracing::info!(rooms = pending.len(), "finished interrupted room deletions");
        }
        Ok(())
    }

    /// [`Store::ban`](crate::store::Store::ban) on MongoDB: one update that adds the ban
    /// (while the list has room) and removes the membership.
    pub(super) async fn ban_user(
        &self,
        room: &RoomKey,
        user: &Username,
        max_bans: usize,
    ) -> Result<bool, StoreError> {
        let user_key = user.canonical();
        let full_marker = format!("bans.{}", max_bans.saturating_sub(1));
        let remove = doc! { "members": { "user": &user_key }, "admins": &user_key };
        let before = self
            .rooms
            .find_one_and_update(
                doc! {
                    "key": room.as_str(),
                    "$or": [ { (full_marker.as_str()): { "$exists": false } }, { "bans": &user_key } ],
                },
                doc! { "$addToSet": { "bans": &user_key }, "$pull": remove },
            )
            .return_document(ReturnDocument::Before)
            .projection(doc! { "members": 1 })
            .await
            .map_err(map_err)?;
        match before {
            Some(d) => Ok(members_from_doc(&d)?
                .iter()
                .any(|(key, _)| *key == user_key)),
            None => {
                self.room_doc(room, doc! { "_id": 1 }).await?;
                Err(StoreError::QuotaExceeded)
            }
        }
    }

    /// [`Store::unban`](crate::store::Store::unban) on MongoDB.
    pub(super) async fn unban_user(
        &self,
        room: &RoomKey,
        user: &Username,
    ) -> Result<bool, StoreError> {
        let result = self
            .rooms
            .update_one(
                doc! { "key": room.as_str() },
                doc! { "$pull": { "bans": user.canonical() } },
            )
            .await
            .map_err(map_err)?;
        if result.matched_count == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(result.modified_count == 1)
    }

    /// [`Store::bans`](crate::store::Store::bans) on MongoDB.
    pub(super) async fn ban_list(&self, room: &RoomKey) -> Result<Vec<Username>, StoreError> {
        let d = self.room_doc(room, doc! { "bans": 1 }).await?;
        let mut bans = match d.get("bans") {
            Some(_) => Fields::new(ROOMS, &d).usernames("bans")?,
            None => Vec::new(),
        };
        bans.sort();
        Ok(bans)
    }

    /// [`Store::open_direct`](crate::store::Store::open_direct) on MongoDB: an insert of
    /// the conversation with both participants, or, when it exists, one conditional
    /// `$push` per missing participant.
    pub(super) async fn open_direct_doc(
        &self,
        key: &RoomKey,
        room: RoomRecord,
    ) -> Result<Vec<Username>, StoreError> {
        let Some(participants) = room.participants().cloned() else {
            return Err(super::errors::backend(super::errors::MalformedDocument {
                collection: ROOMS,
                field: "direct",
                problem: "open_direct needs a direct conversation's record".into(),
            }));
        };
        let canonical = room.name.canonical();
        let mut displays = Vec::new();
        for user in &participants {
            displays.push(self.display_username(user).await?);
        }
        let existing = self.find_room_doc(key, doc! { "_id": 1 }).await?;
        if existing.is_none() {
            for user in &participants {
                self.check_name_free(&user.canonical(), &canonical, Some(key))
                    .await?;
            }
            let mut d = room_to_doc(key, &room)?;
            let members = displays
                .iter()
                .map(|u| member_doc(u, room.created_at_ms).map(Bson::Document))
                .collect::<Result<Vec<_>, _>>()?;
            d.insert("members", members);
            match self.rooms.insert_one(d).await {
                Ok(_) => return Ok(displays),
                Err(e) if is_duplicate_key(&e) => {} // opened by the other side meanwhile
                Err(e) => return Err(map_err(e)),
            }
        }
        let mut added = Vec::new();
        for display in displays {
            let user_key = display.canonical();
            if self
                .member_list(key)
                .await?
                .iter()
                .any(|(k, _)| *k == user_key)
            {
                continue;
            }
            self.check_name_free(&user_key, &canonical, Some(key))
                .await?;
            let result = self
                .rooms
                .update_one(
                    doc! { "key": key.as_str(), "members.user": { "$ne": &user_key } },
                    doc! { "$push": { "members": member_doc(&display, now_ms())? } },
                )
                .await
                .map_err(map_err)?;
            if result.modified_count == 1 {
                added.push(display);
            }
        }
        Ok(added)
    }

    /// [`Store::set_blocked`](crate::store::Store::set_blocked) on MongoDB: one conditional
    /// update of the user document.
    pub(super) async fn set_blocked_doc(
        &self,
        user: &Username,
        target: &Username,
        blocked: bool,
        max: usize,
    ) -> Result<bool, StoreError> {
        let (user_key, target_key) = (user.canonical(), target.canonical());
        if !blocked {
            let result = self
                .users
                .update_one(
                    doc! { "_id": &user_key },
                    doc! { "$pull": { "blocked": &target_key } },
                )
                .await
                .map_err(map_err)?;
            return Ok(result.modified_count == 1);
        }
        let full_marker = format!("blocked.{}", max.saturating_sub(1));
        let result = self
            .users
            .update_one(
                doc! { "_id": &user_key, (full_marker.as_str()): { "$exists": false } },
                doc! { "$addToSet": { "blocked": &target_key } },
            )
            .await
            .map_err(map_err)?;
        if result.matched_count == 1 {
            return Ok(result.modified_count == 1);
        }
        if self.has_blocked_user(user, target).await? {
            return Ok(false);
        }
        Err(StoreError::QuotaExceeded)
    }

    /// [`Store::blocked_users`](crate::store::Store::blocked_users) on MongoDB.
    pub(super) async fn blocked_list(&self, user: &Username) -> Result<Vec<Username>, StoreError> {
        let found = self
            .users
            .find_one(doc! { "_id": user.canonical() })
            .projection(doc! { "blocked": 1 })
            .await
            .map_err(map_err)?;
        let mut blocked = match &found {
            Some(d) if d.get("blocked").is_some() => Fields::new(USERS, d).usernames("blocked")?,
            _ => Vec::new(),
        };
        blocked.sort();
        Ok(blocked)
    }

    /// [`Store::has_blocked`](crate::store::Store::has_blocked) on MongoDB.
    pub(super) async fn has_blocked_user(
        &self,
        user: &Username,
        target: &Username,
    ) -> Result<bool, StoreError> {
        let found = self
            .users
            .find_one(doc! { "_id": user.canonical(), "blocked": target.canonical() })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(map_err)?;
        Ok(found.is_some())
    }

    /// [`Store::mark_read`](crate::store::Store::mark_read) on MongoDB: a conditional
    /// update of the member's entry that only raises it.
    pub(super) async fn mark_read_doc(
        &self,
        room: &RoomKey,
        user: &Username,
        seq: u64,
    ) -> Result<Option<u64>, StoreError> {
        let user_key = user.canonical();
        let d = self.room_doc(room, doc! { "last_seq": 1 }).await?;
        let newest = Fields::new(ROOMS, &d).counter("last_seq")?;
        let target = to_i64(seq.min(newest), "read marker")?;
        let result = self
            .rooms
            .update_one(
                doc! {
                    "key": room.as_str(),
                    "members": { "$elemMatch": {
                        "user": &user_key,
                        "$or": [ { "read": { "$exists": false } }, { "read": { "$lt": target } } ],
                    } },
                },
                doc! { "$set": { "members.$.read": target } },
            )
            .await
            .map_err(map_err)?;
        Ok((result.modified_count == 1).then_some(seq.min(newest)))
    }

    /// [`Store::read_marker`](crate::store::Store::read_marker) on MongoDB.
    pub(super) async fn read_marker_doc(
        &self,
        room: &RoomKey,
        user: &Username,
    ) -> Result<u64, StoreError> {
        let user_key = user.canonical();
        let Some(d) = self.find_room_doc(room, doc! { "members": 1 }).await? else {
            return Ok(0);
        };
        let Ok(members) = d.get_array("members") else {
            return Ok(0);
        };
        for member in members.iter().filter_map(Bson::as_document) {
            if member.get_str("user") == Ok(user_key.as_str()) {
                return Fields::new(ROOMS, member).counter("read");
            }
        }
        Ok(0)
    }

    /// [`Store::delete_account`](crate::store::Store::delete_account) on MongoDB (see the
    /// module docs for the order).
    pub(super) async fn delete_account_doc(&self, user: &Username) -> Result<(), StoreError> {
        let user_key = user.canonical();
        let exists = self
            .users
            .find_one(doc! { "_id": &user_key })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(map_err)?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        self.rooms
            .update_many(
                doc! { "members.user": &user_key },
                doc! { "$pull": { "members": { "user": &user_key }, "admins": &user_key } },
            )
            .await
            .map_err(map_err)?;
        self.messages
            .update_many(
                doc! { "copies.recipient": &user_key },
                doc! { "$pull": { "copies": { "recipient": &user_key } } },
            )
            .await
            .map_err(map_err)?;
        self.users
            .update_one(
                doc! { "_id": &user_key },
                doc! {
                    "$set": { "deleted": true, "deleted_at": datetime(now_ms(), "deletion time")? },
                    "$unset": { "public_key": "", "key_history": "", "blocked": "" },
                },
            )
            .await
            .map_err(map_err)?;
        Ok(())
    }
}
