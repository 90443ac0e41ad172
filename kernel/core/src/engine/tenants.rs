//! Partition 0's tenants and the node's admin secret: records opaque to the engine, kept
//! in the state and replicated like every other command, so every replica of partition 0
//! holds the same set. The node layer decides what a record means
//! (`sluice-node`'s `tenants.rs`).

use super::command::Command;
use super::types::EngineError;
use super::{validate_name, Engine, Entry};
use crate::limits::{ADMIN_SECRET_BYTES_MAX, TENANTS_MAX, TENANT_RECORD_BYTES_MAX};
use crate::storage::Storage;

impl<S: Storage + Clone> Engine<S> {
    /// Adds or replaces the tenant `name` (the queue-name rule) with `record` (at most
    /// `TENANT_RECORD_BYTES_MAX` bytes) durably, on every replica once committed. A new
    /// name past `TENANTS_MAX` tenants is refused (`InvalidConfig("tenants")`).
    pub async fn put_tenant(
        &self,
        name: &str,
        record: Vec<u8>,
        now: u64,
    ) -> Result<(), EngineError> {
        validate_name(name)?;
        if record.len() > TENANT_RECORD_BYTES_MAX {
            return Err(EngineError::InvalidConfig("tenant record"));
        }
        {
            let state = self.state.borrow();
            if state.tenants.len() >= TENANTS_MAX && !state.tenants.contains_key(name) {
                return Err(EngineError::InvalidConfig("tenants"));
            }
        }
        let command = Command::PutTenant {
            name: name.to_string(),
            record,
        };
        self.commit(vec![Entry::plain(command)], now).await
    }

    /// Removes the tenant `name` durably; a name the engine does not hold is
    /// `InvalidName`.
    pub async fn delete_tenant(&self, name: &str, now: u64) -> Result<(), EngineError> {
        if !self.state.borrow().tenants.contains_key(name) {
            return Err(EngineError::InvalidName);
        }
        let command = Command::DeleteTenant {
            name: name.to_string(),
        };
        self.commit(vec![Entry::plain(command)], now).await
    }

    /// Every tenant, by name, with its record.
    pub fn tenants(&self) -> Vec<(String, Vec<u8>)> {
        let state = self.state.borrow();
        state
            .tenants
            .iter()
            .map(|(name, record)| (name.clone(), record.clone()))
            .collect()
    }

    /// How many tenant and admin-secret changes were ever applied: it moves exactly when
    /// [`Engine::tenants`] or [`Engine::admin_secret`] change, on every replica alike
    /// (leader writes and a follower's applies), and survives restarts.
    pub fn tenant_changes(&self) -> u64 {
        self.state.borrow().tenant_changes
    }

    /// Proposes `secret` (at most `ADMIN_SECRET_BYTES_MAX` bytes) as the node's admin
    /// secret and answers the one that holds once committed: the first ever applied wins,
    /// so two nodes racing to create one agree on the same.
    pub async fn set_admin_secret(
        &self,
        secret: Vec<u8>,
        now: u64,
    ) -> Result<Vec<u8>, EngineError> {
        if secret.len() > ADMIN_SECRET_BYTES_MAX {
            return Err(EngineError::InvalidConfig("admin secret"));
        }
        if let Some(held) = self.admin_secret() {
            return Ok(held);
        }
        let command = Command::SetAdminSecret { secret };
        self.commit(vec![Entry::plain(command)], now).await?;
        Ok(self
            .admin_secret()
            .expect("set by the commit or an earlier one"))
    }

    /// The node's admin secret, once one was committed.
    pub fn admin_secret(&self) -> Option<Vec<u8>> {
        self.state.borrow().admin_secret.clone()
    }
}
