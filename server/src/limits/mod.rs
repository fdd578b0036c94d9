//! Limits that keep one abusive client from hurting anyone else: what one address or one
//! user may cost the server, remembered in bounded memory.
//!
//! - [`address`] — the client address the per-address limits key on.
//! - [`connections`] — open WebSocket connections per address.
//! - [`registrations`] — accounts registered per address and in total, per window.
//! - [`joins`] — growing delays after failed room joins, per (user, room) and per user.
//! - [`rates`] — requests and bytes per second, per connection and per user.
//!
//! The argon2 pool that bounds password work lives in [`crate::passwords`].

pub mod address;
pub mod connections;
pub mod joins;
pub mod rates;
pub mod registrations;

use self::joins::JoinThrottle;
use self::rates::UserRates;
use self::registrations::RegistrationQuota;

/// The limits handlers apply.
#[derive(Debug)]
pub struct Limits {
    /// Registrations per address and in total.
    pub registrations: RegistrationQuota,
    /// Failed-join back-off.
    pub joins: JoinThrottle,
    /// Every user's request and byte budgets.
    pub users: UserRates,
    /// Rooms one user may own.
    pub rooms_per_user: usize,
    /// The largest ciphertext of one copy of a message, in bytes.
    pub max_message_bytes: usize,
}
