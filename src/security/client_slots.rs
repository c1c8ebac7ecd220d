//! What each client address holds open (connections on a listener, tunnels on an
//! egress listener), counted against a cap. A slot gives its place back when dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Open slots per client address.
#[derive(Default)]
pub struct ClientCounts {
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// One thing a client holds open.
pub struct ClientSlot {
    counts: Arc<ClientCounts>,
    ip: IpAddr,
}

impl ClientCounts {
    /// A slot for one more of `ip`'s, unless it holds `cap` already (None: no cap).
    pub fn take(self: &Arc<Self>, ip: IpAddr, cap: Option<u32>) -> Option<ClientSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_default();
        if cap.is_some_and(|cap| *count >= cap) {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            counts: self.clone(),
            ip,
        })
    }

    /// Slots held by every client together.
    pub fn total(&self) -> u64 {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.values().map(|n| u64::from(*n)).sum()
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_client_and_given_back() {
        let counts = Arc::new(ClientCounts::default());
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = counts.take(a, Some(2)).unwrap();
        let _second = counts.take(a, Some(2)).unwrap();
        assert!(counts.take(a, Some(2)).is_none());
        assert!(counts.take(b, Some(2)).is_some());
        assert_eq!(counts.total(), 2, "b's slot went back when dropped");
        drop(first);
        assert!(counts.take(a, Some(2)).is_some());
        assert!(counts.take(a, None).is_some(), "no cap");
    }
}
