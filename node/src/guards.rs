//! [`AuthGuards`]: the node's mutable authentication state, one per node, shared by all its
//! shards: the replay cache of signed token requests (`crate::replay`) and the back-off
//! tables of failed password logins by tenant and by address (`crate::backoff`).
//!
//! Why a mutex here and not the directories' arc-swap: the directories are read on every
//! request and written rarely by one shard, so copy-and-publish suits them; these tables are
//! written by every login, from any shard, and a copy of a 65 536-entry map per login would
//! be both slow and lossy under concurrent writers (two shards publishing at once, one
//! insert lost). A std mutex per table, held for one bounded map operation and never across
//! an await, serves logins (rare next to queue traffic) without touching the data path.
//! Why per node and not per shard: a request may reach any shard (the server spreads
//! connections with SO_REUSEPORT), so a replayed request or a guesser's next attempt would
//! simply land on a shard whose table has not seen it.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::backoff::{BackoffPolicy, BackoffTable, Charged};
use crate::replay::{ReplayCache, ReplayRefusal};

/// The bounds of the login guards; start-up validates the server's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failed logins naming one tenant (from anywhere) before back-off starts.
    pub failures_per_tenant_max: u32,
    /// Failed logins from one address (an IPv6 /64) before back-off starts.
    pub failures_per_address_max: u32,
    /// First back-off; each further failure doubles it, up to `backoff_ms_max`.
    pub backoff_ms_min: u64,
    pub backoff_ms_max: u64,
    /// Failures are forgotten this long after a key's last one.
    pub failures_forget_ms: u64,
    /// Tenant names (or ids) tracked one by one; beyond, they share one entry.
    pub tenants_tracked_max: usize,
    /// Addresses tracked one by one; beyond, they share one entry.
    pub addresses_tracked_max: usize,
    /// Signed token requests remembered at once (each for the skew window).
    pub replay_entries_max: usize,
}

impl LoginLimits {
    /// Five failures per tenant, twenty per address, then 1 s doubling to 5 min; failures
    /// forgotten after 15 quiet minutes. The tables take a few MiB at most; the replay
    /// cache admits 65 536 signed token requests per skew window (218 a second over 5 min).
    pub fn standard() -> LoginLimits {
        LoginLimits {
            failures_per_tenant_max: 5,
            failures_per_address_max: 20,
            backoff_ms_min: 1_000,
            backoff_ms_max: 300_000,
            failures_forget_ms: 900_000,
            tenants_tracked_max: 16_384,
            addresses_tracked_max: 65_536,
            replay_entries_max: 65_536,
        }
    }

    fn policy(&self, failures_free: u32, entries_max: usize) -> BackoffPolicy {
        BackoffPolicy {
            failures_free,
            backoff_ms_min: self.backoff_ms_min,
            backoff_ms_max: self.backoff_ms_max,
            forget_ms: self.failures_forget_ms,
            entries_max,
        }
    }
}

/// What the guards saw, for the host's metrics. Never names a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthEvent {
    LoginSucceeded,
    /// A wrong user, password or project (the password was checked).
    LoginFailed,
    /// Refused before any check: the tenant or the address is backing off.
    LoginThrottled,
    /// Refused before any check: every password verifier was busy.
    LoginBusy,
    /// A signed token request seen before (or dated before the node started).
    TokenRequestReplayed,
}

/// The charges one login attempt made, to settle once its password was checked.
pub struct LoginTicket {
    tenant: Charged<String>,
    address: Charged<Option<IpAddr>>,
}

pub struct AuthGuards {
    replays: Mutex<ReplayCache>,
    tenants: Mutex<BackoffTable<String>>,
    addresses: Mutex<BackoffTable<Option<IpAddr>>>,
}

impl AuthGuards {
    /// Guards for a node started at `started_wall_ms` (signed token requests dated before
    /// that second are refused: the cache of an earlier run is gone).
    pub fn new(limits: &LoginLimits, started_wall_ms: u64) -> Arc<AuthGuards> {
        Arc::new(AuthGuards {
            replays: Mutex::new(ReplayCache::new(limits.replay_entries_max, started_wall_ms)),
            tenants: Mutex::new(BackoffTable::new(
                limits.policy(limits.failures_per_tenant_max, limits.tenants_tracked_max),
            )),
            addresses: Mutex::new(BackoffTable::new(limits.policy(
                limits.failures_per_address_max,
                limits.addresses_tracked_max,
            ))),
        })
    }

    /// See [`ReplayCache::admit`].
    pub fn admit_token_request(
        &self,
        signature: [u8; 32],
        dated_unix_s: i64,
        window_s: i64,
        now_wall_ms: u64,
    ) -> Result<(), ReplayRefusal> {
        self.replays
            .lock()
            .expect("no panic while the replay cache is held")
            .admit(signature, dated_unix_s, window_s, now_wall_ms)
    }

    /// Charges a login attempt to its tenant key and its address, or refuses it with the
    /// milliseconds until both allow it.
    pub fn login_begin(
        &self,
        tenant_key: &str,
        address: Option<IpAddr>,
        now_ms: u64,
    ) -> Result<LoginTicket, u64> {
        let tenant_key = tenant_key.to_string();
        let address = address_key(address);
        let tenant = self.tenant_table().charge(&tenant_key, now_ms)?;
        match self.address_table().charge(&address, now_ms) {
            Ok(address) => Ok(LoginTicket { tenant, address }),
            Err(wait_ms) => {
                self.tenant_table().refund(&tenant);
                Err(wait_ms)
            }
        }
    }

    /// Settles an attempt: a success forgets the tenant's failures and refunds the
    /// address's charge; a failure stays charged. `ran == false` (no verifier was free)
    /// refunds both.
    pub fn login_end(&self, ticket: LoginTicket, ran: bool, succeeded: bool) {
        if !ran {
            self.tenant_table().refund(&ticket.tenant);
            self.address_table().refund(&ticket.address);
        } else if succeeded {
            self.tenant_table().reset(&ticket.tenant);
            self.address_table().refund(&ticket.address);
        }
    }

    fn tenant_table(&self) -> std::sync::MutexGuard<'_, BackoffTable<String>> {
        self.tenants
            .lock()
            .expect("no panic while the tenant back-off table is held")
    }

    fn address_table(&self) -> std::sync::MutexGuard<'_, BackoffTable<Option<IpAddr>>> {
        self.addresses
            .lock()
            .expect("no panic while the address back-off table is held")
    }
}

/// The key an address is counted under: an IPv4 address (IPv4-mapped IPv6 included) as is,
/// an IPv6 address by its /64, which one client usually holds whole. `None` (no address
/// known: tests, the simulation) is one key of its own.
fn address_key(address: Option<IpAddr>) -> Option<IpAddr> {
    match address? {
        IpAddr::V4(v4) => Some(IpAddr::V4(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Some(IpAddr::V4(v4)),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Some(IpAddr::V6(prefix.into()))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(address: &str, expected: &str) {
        let key = address_key(Some(address.parse().unwrap()));
        assert_eq!(key, Some(expected.parse().unwrap()), "{address}");
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_bit_prefix() {
        check("192.0.2.1", "192.0.2.1");
        check("::ffff:192.0.2.1", "192.0.2.1");
        check("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::");
        assert_eq!(address_key(None), None);
    }

    #[test]
    fn a_refused_address_takes_back_the_tenant_charge() {
        // Goal: an attempt refused for its address does not count against its tenant.
        let limits = LoginLimits {
            failures_per_address_max: 0,
            failures_per_tenant_max: 1,
            ..LoginLimits::standard()
        };
        let guards = AuthGuards::new(&limits, 0);
        let address = Some("192.0.2.1".parse().unwrap());
        let ticket = guards.login_begin("t", address, 0).unwrap();
        guards.login_end(ticket, true, false);
        assert_eq!(guards.login_begin("t", address, 1).err(), Some(999));
        // The tenant still has its one free failure left from another address.
        let other = Some("192.0.2.2".parse().unwrap());
        assert!(guards.login_begin("t", other, 1).is_ok());
    }
}
