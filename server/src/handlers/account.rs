//! Deleting one's account: `DeleteAccount`.
//!
//! The account leaves every room as by `LeaveRoom` (members are pushed `MemberLeft`; an
//! owned group room passes to the first admin by canonical name, else to the first other
//! member, pushed as `OwnerChanged` with the deleted user as actor), and a room left with
//! nobody in it is deleted with its history. The store then deletes the account
//! ([`Store::delete_account`]): its key and key history, its block list, its read
//! markers, and every stored copy addressed to it; the copies it sent to others stay,
//! being their history. The username stays reserved: `LoginStart` answers `UnknownUser`
//! and `Register` answers `UsernameTaken` for it, and no key is kept.
//!
//! The user's other sessions are closed with `CLOSE_ACCOUNT_DELETED` (4002) first, so they
//! cannot act while the account goes; the session that asked gets `AccountDeleted` and is
//! closed the same way after it.
//!
//! [`Store::delete_account`]: crate::store::Store::delete_account

use shared::protocol::{DeleteAccount, Reply};
use shared::Username;

use super::rooms::{depart, Departure};
use super::{hub_gone, AppState};
use crate::error::HandlerError;
use crate::hub::{ConnId, Eviction};

/// # DeleteAccount
/// Deletes the caller's account (see the module docs).
///
/// # Errors
/// [`HandlerError::InvalidInput`] if `confirm` is not the caller's username (any case);
/// store failures (an interrupted deletion can be asked for again).
pub async fn delete(
    state: &AppState,
    conn: ConnId,
    user: &Username,
    req: DeleteAccount,
) -> Result<Reply, HandlerError> {
    if !req.confirm.same_as(user) {
        return Err(HandlerError::InvalidInput(
            "confirm with your own username to delete your account".into(),
        ));
    }
    delete_account(state, user, Some(conn)).await?;
    Ok(Reply::AccountDeleted)
}

/// Deletes `user`'s account as the module docs describe, for `DeleteAccount` and for an
/// operator (`server admin users delete`), so both take the same path: every session of
/// the user but `except` (the one that asked, closed after its reply) is closed with 4002
/// first, then the user leaves every room, then the store deletes the account and keeps
/// its name reserved.
///
/// # Errors
/// Store failures (an interrupted deletion can be run again);
/// [`HandlerError::Internal`] if the hub has stopped.
pub async fn delete_account(
    state: &AppState,
    user: &Username,
    except: Option<ConnId>,
) -> Result<(), HandlerError> {
    state
        .hub
        .evict(user.canonical(), except, Eviction::AccountDeleted)
        .await
        .map_err(hub_gone)?;
    for mine in state.store.rooms_of(user).await? {
        depart(state, except, user, &mine, Departure::AccountDeleted).await?;
    }
    state.store.delete_account(user).await?;
    tracing::info!(user = %user, "account deleted");
    Ok(())
}
