//! Connection fairness on one shard: whether a new connection from a client address is
//! admitted. Per address, a cap on open connections and a token bucket (GCRA, the
//! `governor` crate) on new ones; per shard, the connection cap, whose last
//! `connections_reserved_per_shard` slots (at most half) go only to addresses that authenticated on the
//! shard or hold fewer than [`RESERVE_CONNECTIONS_PER_ADDRESS_MAX`] of its connections,
//! so that health checks and known clients are still served while one address floods.
//! The accept loop (`http.rs`) asks and acts; what counts as authenticated is decided
//! there too. Everything here belongs to one shard's thread.
//!
//! Memory is bounded: addresses with open connections are at most the shard's
//! connection cap; addresses without are remembered (their buckets, their standing) in a
//! table of at most `addresses_tracked_max`, which forgets the least recently seen
//! first. A forgotten flooder starts again with a full bucket, no worse than a new one.
//! IPv6 clients are counted by their /64 prefix: one host is given a whole /64 and can
//! pick any address in it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::num::NonZeroUsize;

use governor::clock::MonotonicClock;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use lru::LruCache;

use crate::config::Config;

/// An address without standing may take a reserved slot only while it holds fewer than
/// this many of the shard's connections: enough for a health checker or a client's first
/// connection, far below what a flood holds.
pub const RESERVE_CONNECTIONS_PER_ADDRESS_MAX: u32 = 2;

type Bucket = RateLimiter<NotKeyed, InMemoryState, MonotonicClock>;

/// Why a connection is refused; each is answered 503 in the DMS envelope and closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The shard holds `connections_per_shard_max` connections.
    ShardFull,
    /// Only reserved slots are left, and the address has no claim to them.
    ReserveKept,
    /// The address holds `connections_per_address_max` connections on the shard.
    AddressConnections,
    /// The address opens connections faster than `accepts_per_address_per_s`.
    AddressRate,
}

impl Refusal {
    /// The sentence for the 503 body.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::ShardFull | Refusal::ReserveKept => "Too many connections; retry later.",
            Refusal::AddressConnections => {
                "Too many connections from your address; close some or retry later."
            }
            Refusal::AddressRate => "Connections from your address arrive too fast; retry later.",
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::ShardFull => "shard_full",
            Refusal::ReserveKept => "reserve",
            Refusal::AddressConnections => "address_connections",
            Refusal::AddressRate => "address_rate",
        }
    }
}

/// What the shard knows about one client address.
struct Entry {
    connections_open: u32,
    bucket: Bucket,
    /// A request on one of its connections passed authentication.
    authenticated: bool,
}

/// The limits, from the configuration.
#[derive(Clone, Copy, Debug)]
struct Limits {
    connections_per_shard_max: u32,
    connections_reserved: u32,
    connections_per_address_max: u32,
    quota: Quota,
}

/// One shard's view of its clients' addresses.
pub struct AddressTable {
    limits: Limits,
    /// Addresses holding connections (at most `connections_per_shard_max`).
    active: HashMap<IpAddr, Entry>,
    /// Addresses without connections, least recently seen first out.
    idle: LruCache<IpAddr, Entry>,
}

/// The key an address is counted under: itself for IPv4 (and IPv4-mapped IPv6), its
/// /64 prefix for IPv6.
pub fn client_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

impl AddressTable {
    /// A table for the validated `config`; the idle table is allocated to its limit.
    pub fn new(config: &Config) -> AddressTable {
        let nonzero = |n: u32, what: &str| {
            NonZeroU32::new(n).unwrap_or_else(|| panic!("{what}: validated at start-up"))
        };
        let quota = Quota::per_second(nonzero(config.accepts_per_address_per_s, "rate"))
            .allow_burst(nonzero(config.accepts_per_address_burst, "burst"));
        let idle_max = usize::try_from(config.addresses_tracked_max).expect("u32 fits usize");
        let active_max = usize::try_from(config.connections_per_shard_max).expect("u32 fits usize");
        AddressTable {
            limits: Limits {
                connections_per_shard_max: config.connections_per_shard_max,
                // At most half the cap (docs/server.md, "Connection fairness").
                connections_reserved: config
                    .connections_reserved_per_shard
                    .min(config.connections_per_shard_max / 2),
                connections_per_address_max: config.connections_per_address_max,
                quota,
            },
            active: HashMap::with_capacity(active_max),
            idle: LruCache::new(NonZeroUsize::new(idle_max).expect("validated at start-up")),
        }
    }

    /// Decides on a new connection from `key` (see [`client_key`]) while the shard holds
    /// `shard_open` connections. Admitted, it counts until [`AddressTable::release`].
    pub fn admit(&mut self, key: IpAddr, shard_open: u32) -> Result<(), Refusal> {
        let limits = self.limits;
        if shard_open >= limits.connections_per_shard_max {
            return Err(Refusal::ShardFull);
        }
        if let Some(entry) = self.active.get_mut(&key) {
            Self::admit_entry(&limits, entry, shard_open)?;
            entry.connections_open += 1;
            return Ok(());
        }
        let mut entry = self.idle.pop(&key).unwrap_or_else(|| Entry {
            connections_open: 0,
            bucket: RateLimiter::direct_with_clock(limits.quota, MonotonicClock),
            authenticated: false,
        });
        match Self::admit_entry(&limits, &mut entry, shard_open) {
            Ok(()) => {
                entry.connections_open = 1;
                assert!(
                    self.active.len()
                        < usize::try_from(limits.connections_per_shard_max).expect("fits"),
                    "an active address holds at least one of the shard's connections"
                );
                self.active.insert(key, entry);
                Ok(())
            }
            Err(refusal) => {
                // Remembered, so that a refused flooder's bucket stays empty.
                self.idle.push(key, entry);
                Err(refusal)
            }
        }
    }

    /// The per-address checks; the bucket is charged only when all else allows.
    fn admit_entry(limits: &Limits, entry: &mut Entry, shard_open: u32) -> Result<(), Refusal> {
        if entry.connections_open >= limits.connections_per_address_max {
            return Err(Refusal::AddressConnections);
        }
        let general = limits.connections_per_shard_max - limits.connections_reserved;
        let claims_reserve =
            entry.authenticated || entry.connections_open < RESERVE_CONNECTIONS_PER_ADDRESS_MAX;
        if shard_open >= general && !claims_reserve {
            return Err(Refusal::ReserveKept);
        }
        entry.bucket.check().map_err(|_| Refusal::AddressRate)
    }

    /// One of `key`'s connections closed.
    pub fn release(&mut self, key: IpAddr) {
        let entry = self
            .active
            .get_mut(&key)
            .expect("released only after being admitted");
        assert!(entry.connections_open > 0, "more releases than admissions");
        entry.connections_open -= 1;
        if entry.connections_open == 0 {
            let entry = self.active.remove(&key).expect("just found");
            self.idle.push(key, entry);
        }
    }

    /// A request on one of `key`'s connections passed authentication: from now on the
    /// address may use reserved slots (up to its own limit) while the table remembers it.
    pub fn authenticated(&mut self, key: IpAddr) {
        if let Some(entry) = self.active.get_mut(&key) {
            entry.authenticated = true;
        }
    }

    /// Addresses remembered, with connections and without.
    pub fn tracked(&self) -> (usize, usize) {
        (self.active.len(), self.idle.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table with a shard cap of 10 (2 reserved), 4 per address, and a bucket of
    /// `burst` at one per second; remembers 3 idle addresses.
    fn check(burst: u32) -> AddressTable {
        let mut config = Config::defaults();
        config.connections_per_shard_max = 10;
        config.connections_reserved_per_shard = 2;
        config.connections_per_address_max = 4;
        config.accepts_per_address_per_s = 1;
        config.accepts_per_address_burst = burst;
        config.addresses_tracked_max = 3;
        config.validate().unwrap();
        AddressTable::new(&config)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn an_address_is_capped_and_others_still_get_in() {
        let mut table = check(100);
        for open in 0..4 {
            assert_eq!(table.admit(ip(1), open), Ok(()));
        }
        assert_eq!(table.admit(ip(1), 4), Err(Refusal::AddressConnections));
        assert_eq!(table.admit(ip(2), 4), Ok(()));
        table.release(ip(1));
        assert_eq!(
            table.admit(ip(1), 4),
            Ok(()),
            "a released slot is free again"
        );
    }

    #[test]
    fn the_bucket_refuses_a_burst_beyond_its_size() {
        let mut table = check(3);
        for _ in 0..3 {
            assert_eq!(table.admit(ip(1), 0), Ok(()));
            table.release(ip(1));
        }
        assert_eq!(table.admit(ip(1), 0), Err(Refusal::AddressRate));
        assert_eq!(table.admit(ip(2), 0), Ok(()), "another address has its own");
    }

    #[test]
    fn the_reserve_goes_to_light_or_authenticated_addresses() {
        let mut table = check(100);
        // 8 general slots: two heavy addresses take them.
        for open in 0..8 {
            assert_eq!(table.admit(ip(1 + u8::from(open >= 4)), open), Ok(()));
        }
        assert_eq!(table.admit(ip(1), 8), Err(Refusal::AddressConnections));
        assert_eq!(
            table.admit(ip(3), 8),
            Ok(()),
            "a new address gets a reserved slot"
        );
        table.release(ip(2));
        table.authenticated(ip(2));
        // ip(2) holds 3 (over the light limit) but authenticated.
        assert_eq!(table.admit(ip(2), 8), Ok(()));
        assert_eq!(table.admit(ip(4), 10), Err(Refusal::ShardFull));
    }

    #[test]
    fn a_heavy_unauthenticated_address_cannot_take_the_reserve() {
        let mut table = check(100);
        for open in 0..3 {
            assert_eq!(table.admit(ip(1), open), Ok(()));
        }
        // The shard is at its general limit (8) from others' connections.
        assert_eq!(table.admit(ip(1), 8), Err(Refusal::ReserveKept));
    }

    #[test]
    fn at_most_half_the_cap_is_reserved() {
        let mut config = Config::defaults();
        config.connections_per_shard_max = 4;
        config.validate().unwrap();
        let mut table = AddressTable::new(&config);
        for open in 0..2 {
            assert_eq!(table.admit(ip(1), open), Ok(()));
        }
        assert_eq!(table.admit(ip(1), 2), Err(Refusal::ReserveKept));
        assert_eq!(table.admit(ip(2), 2), Ok(()));
    }

    #[test]
    fn idle_addresses_are_bounded_and_forgotten_oldest_first() {
        let mut table = check(1);
        for last in 1..=5 {
            assert_eq!(table.admit(ip(last), 0), Ok(()));
            table.release(ip(last));
        }
        assert_eq!(table.tracked(), (0, 3));
        // ip(1) was forgotten (a full bucket again); ip(5) is remembered (empty).
        assert_eq!(table.admit(ip(1), 0), Ok(()));
        assert_eq!(table.admit(ip(5), 1), Err(Refusal::AddressRate));
    }

    #[test]
    fn ipv6_clients_count_by_their_64_prefix() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(client_key(mapped), IpAddr::from([127, 0, 0, 2]));
    }
}
