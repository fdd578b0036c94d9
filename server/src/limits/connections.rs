//! Open WebSocket connections per client address.
//!
//! An upgrade takes a [`ConnectionSlot`] for its address and holds it until the connection
//! ends; past the cap the upgrade is refused (HTTP 429). Only addresses with open
//! connections are remembered, so the memory follows the connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::address::ClientAddress;

/// Counts open connections per address, up to a cap.
#[derive(Debug)]
pub struct ConnectionCounter {
    cap: usize,
    /// Addresses with at least one open connection. A std mutex: nothing is awaited while
    /// it is held.
    open: Mutex<HashMap<ClientAddress, usize>>,
}

/// One open connection's place in its address's count, given back on drop.
#[derive(Debug)]
pub struct ConnectionSlot {
    counter: Arc<ConnectionCounter>,
    address: ClientAddress,
}

impl ConnectionCounter {
    /// A counter allowing `cap` connections per address.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `address`, or `None` when it has `cap` open.
    pub fn admit(self: &Arc<Self>, address: ClientAddress) -> Option<ConnectionSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(address).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            counter: Arc::clone(self),
            address,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self
            .counter
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_holds_per_address_and_slots_come_back() {
        let counter = ConnectionCounter::new(2);
        let a = ClientAddress::of([1, 1, 1, 1].into());
        let b = ClientAddress::of([2, 2, 2, 2].into());
        let first = counter.admit(a).expect("first");
        let _second = counter.admit(a).expect("second");
        assert!(counter.admit(a).is_none(), "a third from a is refused");
        let _other = counter.admit(b).expect("b has its own count");
        drop(first);
        let _again = counter.admit(a).expect("a slot came back");
        assert!(counter.admit(a).is_none(), "and only one");
    }

    #[test]
    fn addresses_without_connections_are_forgotten() {
        let counter = ConnectionCounter::new(1);
        let a = ClientAddress::of([1, 1, 1, 1].into());
        drop(counter.admit(a));
        let open = counter.open.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(open.is_empty());
    }
}
