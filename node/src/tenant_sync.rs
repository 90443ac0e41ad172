//! The tenant directory, the admin secret and the queue directory follow partition 0.
//!
//! Partition 0's engine holds every tenant's record, the node's admin secret and the
//! queue directory (queues and groups, their ids) as replicated commands
//! (`sluice_core::engine::Engine::put_tenant`, `set_admin_secret`, `create_queue`, ...).
//! The shard that owns partition 0 (shard 0, the metadata shard) republishes the node's
//! directories from partition 0's applied state: after each change it makes or forwards
//! (read from partition 0's leader), and whenever this node's replica of partition 0
//! applied something new for another reason (a follower applying the leader's writes) —
//! [`NodeShard::follow_metadata`]. A queue or tenant created through any node is so
//! usable through every node once its replica of partition 0 applied it, plus at most
//! `FOLLOW_WAKE_MS_MAX` (normally at once, woken by the apply). At start
//! ([`NodeShard::start_tenants`]) it moves a host's stored list into a partition 0 that
//! never held tenants, once, and proposes the host's admin secret if partition 0 has
//! none.

use std::sync::Arc;

use sluice_core::engine::types::EngineError;

use crate::requests::{self, TenantRecords};
use crate::tenants::{encode_tenant, Tenant, TenantDirectory};
use crate::{Host, NodeError, NodeShard};

/// Longest a follower's directory may lag a change it missed a wake-up for.
const FOLLOW_WAKE_MS_MAX: u64 = 1_000;
/// Pause after each pass of the follower, so a busy partition 0 (every send there moves
/// its applied index) costs at most one directory rebuild per this many milliseconds.
const FOLLOW_PASS_MS_MIN: u64 = 50;

/// Whether `error` only says this replica does not lead partition 0 (another node will
/// make the change; this one learns it when it applies it).
fn not_leader(error: &NodeError) -> bool {
    matches!(error, NodeError::Engine(EngineError::NotLeader { .. }))
}

impl<H: Host> NodeShard<H> {
    /// Has shard 0 republish the tenants from partition 0's leader (it publishes them
    /// and keeps the host's copy), from any shard; a failure leaves them as they were.
    pub(crate) async fn refresh_tenants_on_shard_0(&self) {
        if self.index() == 0 {
            let _ = self.refresh_tenants().await;
            return;
        }
        let (done, finished) = async_channel::bounded(1);
        let job: crate::Job<H> = Box::new(move |shard: std::rc::Rc<NodeShard<H>>| {
            Box::pin(async move {
                let _ = shard.refresh_tenants().await;
                let _ = done.try_send(());
            })
        });
        if self.host().forward(0, job).await.is_ok() {
            let _ = finished.recv().await;
        }
    }

    /// Writes `tenant` (new or changed) into partition 0, then republishes the directory.
    pub(crate) async fn put_tenant(&self, tenant: &Tenant) -> Result<(), NodeError> {
        let call = requests::PutTenant {
            partition: 0,
            name: tenant.name.clone(),
            record: encode_tenant(tenant),
        };
        let written = self.call(call).await;
        self.refresh_tenants().await?;
        written
    }

    /// Removes the tenant `name` from partition 0, then republishes the directory.
    pub(crate) async fn remove_tenant(&self, name: &str) -> Result<(), NodeError> {
        let call = requests::RemoveTenant {
            partition: 0,
            name: name.to_string(),
        };
        let removed = self.call(call).await;
        self.refresh_tenants().await?;
        removed
    }

    /// Shard 0 at start, after the queue repair: migrates the host's stored tenants into
    /// a partition 0 that never held any (an existing data directory's list), proposes
    /// the host's admin secret when partition 0 has none, and publishes the directory
    /// from partition 0. A replica that does not lead partition 0 skips both writes.
    pub async fn start_tenants(&self) -> Result<(), NodeError> {
        // This replica's own records and writes only: a node never pushes its local
        // files into a partition 0 another node leads.
        let records = self
            .call_local(requests::ReadTenants { partition: 0 })
            .await?;
        if records.changes == 0 {
            let stored = self.directories().tenants.load_full();
            for tenant in stored.all() {
                let call = requests::PutTenant {
                    partition: 0,
                    name: tenant.name.clone(),
                    record: encode_tenant(tenant),
                };
                match self.call_local(call).await {
                    Err(error) if not_leader(&error) => break,
                    written => written?,
                }
            }
        }
        if let (None, Some(secret)) = (&records.admin_secret, self.host().admin_secret()) {
            match self
                .call_local(requests::SetAdminSecret {
                    partition: 0,
                    secret,
                })
                .await
            {
                Err(error) if not_leader(&error) => {}
                written => drop(written?),
            }
        }
        self.tenants_published.set(None);
        self.refresh_tenants().await
    }

    /// Republishes the tenant directory from partition 0 (its leader's replica when
    /// another node leads) if its tenants or admin secret changed since this shard last
    /// did; hands a (new) admin secret to the host.
    pub async fn refresh_tenants(&self) -> Result<(), NodeError> {
        let records = self.call(requests::ReadTenants { partition: 0 }).await?;
        self.publish_tenants(records);
        Ok(())
    }

    /// Publishes `records` unless the directory already reflects as many changes
    /// (`tenant_changes` counts applied commands, so it compares across replicas).
    fn publish_tenants(&self, records: TenantRecords) {
        if self
            .tenants_published
            .get()
            .is_some_and(|published| published >= records.changes)
        {
            return;
        }
        // In a cluster, a replica of partition 0 that applied no tenant command yet (a
        // node just restarted, before it caught up or learned the leader) knows less than
        // the local copy this node started with: keeping that copy avoids answering
        // valid credentials 401 until the replica catches up.
        if records.changes == 0
            && self.host().replicated()
            && !self.directories().tenants.load().all().is_empty()
        {
            return;
        }
        let (directory, skipped) = TenantDirectory::from_records(&records.tenants);
        if skipped > 0 {
            self.host().log(&format!(
                "partition 0 holds {skipped} tenant records that do not decode or clash; \
                 left out"
            ));
        }
        if let Err(error) = self.host().store_tenants(directory.all()) {
            self.host().log(&format!(
                "cannot keep the local copy of the tenants: {error}"
            ));
        }
        if let Some(secret) = &records.admin_secret {
            if let Err(error) = self.host().learn_admin_secret(secret) {
                self.host()
                    .log(&format!("cannot keep the admin secret: {error}"));
            }
        }
        self.directories().tenants.store(Arc::new(directory));
        self.tenants_published.set(Some(records.changes));
    }

    /// Republishes both directories from this node's replica of partition 0 when it
    /// applied something they do not reflect; a no-op elsewhere than on the shard that
    /// owns partition 0.
    pub async fn refresh_metadata_if_changed(&self) -> Result<(), NodeError> {
        if !self.owns(0) {
            return Ok(());
        }
        let engine = self.host().engine(0)?;
        if self.tenants_published.get() != Some(engine.tenant_changes()) {
            let records = self
                .call_local(requests::ReadTenants { partition: 0 })
                .await?;
            self.publish_tenants(records);
        }
        let since = self.directories().queues.load().applied;
        if engine.directory_changed_at() > since {
            let call = requests::ReadDirectoryChanges {
                partition: 0,
                since,
            };
            let read = self.call_local(call).await?;
            let published = read.changes.is_some_and(|(changed, deleted)| {
                self.publish_directory_changes(since, read.applied, &changed, &deleted)
            });
            if !published {
                let call = requests::ReadDirectory { partition: 0 };
                let (applied, infos, _) = self.call_local(call).await?;
                self.publish_directory(applied, infos);
            }
        }
        Ok(())
    }

    /// Runs on the shard that owns partition 0 until the host stops: republishes the
    /// directories whenever this node's replica of partition 0 applied a change,
    /// wherever it came from (this node's metadata shard, or the leader's writes applied
    /// by this replica). The first time it finds this node leading partition 0 it runs
    /// [`NodeShard::start_tenants`]'s writes (which skip what partition 0 already holds).
    /// Wakes on partition 0's changes (at most once per
    /// `FOLLOW_PASS_MS_MIN`), and at least every `FOLLOW_WAKE_MS_MAX` milliseconds.
    pub async fn follow_metadata(&self) {
        assert!(
            self.owns(0),
            "the owner of partition 0 follows its metadata"
        );
        // Runs for the life of the shard; each pass waits for a change or the wake-up.
        let mut seeded = false;
        while !self.host().stopping() {
            let seen = self.host().engine(0).map(|engine| engine.change_count());
            if !seeded && self.leads(0) {
                // A fresh cluster's start-up ran before any election: the first node to
                // lead partition 0 writes its tenants and admin secret then.
                match self.start_tenants().await {
                    Ok(()) => seeded = true,
                    Err(error) => self
                        .host()
                        .log(&format!("cannot seed the tenants: {error}")),
                }
            }
            if let Err(error) = self.refresh_metadata_if_changed().await {
                self.host()
                    .log(&format!("cannot republish the directories: {error}"));
            }
            self.host().sleep_ms(FOLLOW_PASS_MS_MIN).await;
            let sleep = self.host().sleep_ms(FOLLOW_WAKE_MS_MAX);
            match (seen, self.host().engine(0)) {
                (Ok(seen), Ok(engine)) => {
                    futures_lite::future::or(engine.changed(seen), sleep).await
                }
                _ => sleep.await,
            }
        }
    }
}
