//! The data directory's small files: the node's fixed facts, the secrets (admin
//! credentials and the token key), and the tenant list. Each is JSON, replaced
//! atomically (write a temporary file, fsync it, rename, fsync the directory).
//!
//! Everything the server creates is private to its user (and the `sluice` CLI run by it
//! with `--data-dir`): the data directory and its subdirectories get mode [`DIR_MODE`]
//! (0700) and every file [`FILE_MODE`] (0600), set explicitly (on creation and again
//! with `chmod`) rather than left to the umask. The partitions' own files are created
//! by `sluice_shard::DmaStorage` with the same modes.
//!
//! Layout: `node.json`, `secrets.json`, `tenants.json`, `server.json` (the address the
//! running server listens on, for the CLI), and `partitions/pNNNN/` (one segment log
//! each). Tenants and the secrets are durable in partition 0's engine (replicated
//! commands); `tenants.json` and `secrets.json` are this node's copies of them, written
//! whenever the node learns a change, for the CLI's `--data-dir`. On first start the
//! secrets file is made here and then proposed to partition 0; an existing data
//! directory's `tenants.json` moves into a partition 0 that never held tenants.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sluice_node::tenants::{Quotas, Tenant};

pub const NODE_FILE: &str = "node.json";
pub const SECRETS_FILE: &str = "secrets.json";
pub const TENANTS_FILE: &str = "tenants.json";
pub const SERVER_FILE: &str = "server.json";
const FORMAT: u32 = 1;
/// Mode of every file the server creates in the data directory (the partitions' files
/// too: `sluice_shard::storage::FILE_MODE` is the same).
pub const FILE_MODE: u32 = 0o600;
/// Mode of the data directory and every directory in it
/// (`sluice_shard::storage::DIR_MODE` is the same).
pub const DIR_MODE: u32 = 0o700;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeFacts {
    pub format: u32,
    pub partitions: u32,
}

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Secrets {
    pub admin_ak: String,
    pub admin_sk: String,
    /// Hex of the 32-byte key that signs Keystone tokens.
    pub token_key: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets {{ admin_ak: {:?}, .. }}", self.admin_ak)
    }
}

impl Secrets {
    pub fn token_key_bytes(&self) -> [u8; 32] {
        let bytes = hex::decode(&self.token_key).expect("validated on load");
        bytes.try_into().expect("validated on load")
    }
}

/// Where the running server listens, for the CLI: written after the port is bound and
/// before it accepts connections, removed when the server stops.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerFile {
    pub http: String,
    pub pid: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredTenant {
    project_id: String,
    name: String,
    ak: String,
    sk: String,
    password_hash: Option<String>,
    queues_max: u32,
    groups_per_queue_max: u32,
    created_ms: u64,
}

pub fn partition_dir(data_dir: &Path, partition: u32) -> PathBuf {
    data_dir.join("partitions").join(format!("p{partition:04}"))
}

/// Random credentials and ids, from the operating system's generator.
pub fn random_alnum(length: usize, upper_only: bool) -> String {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const MIXED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let alphabet = if upper_only { UPPER } else { MIXED };
    let mut rng = rand::rngs::OsRng;
    (0..length)
        .map(|_| {
            // Rejection sampling keeps the choice uniform.
            loop {
                let byte = (rng.next_u32() & 0xff) as usize;
                if byte < 256 - 256 % alphabet.len() {
                    return char::from(alphabet[byte % alphabet.len()]);
                }
            }
        })
        .collect()
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Writes `bytes` to `path` atomically and durably, with mode [`FILE_MODE`] on the new
/// file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("files live in the data directory");
    let tmp = path.with_extension("tmp");
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        // A temporary file left by a crash keeps its old mode through `open`: set it.
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, String> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Creates `dir` (and missing parents) with mode [`DIR_MODE`], and sets that mode on it
/// explicitly: the umask, or an older and wider mode, must not leave it open.
pub fn create_private_dir(dir: &Path) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
        .map_err(|e| format!("cannot set the mode of {}: {e}", dir.display()))
}

/// Opens the data directory, creating it and its node and secrets files on first
/// start. Returns the facts, the secrets, and whether this was the first start.
pub fn open_or_init(
    data_dir: &Path,
    partitions_wanted: u32,
) -> Result<(NodeFacts, Secrets, bool), String> {
    create_private_dir(data_dir)?;
    create_private_dir(&data_dir.join("partitions"))?;
    let node_path = data_dir.join(NODE_FILE);
    let secrets_path = data_dir.join(SECRETS_FILE);
    let first_start = !node_path.exists();
    let facts = match read_json::<NodeFacts>(&node_path)? {
        Some(facts) => {
            if facts.format != FORMAT {
                return Err(format!(
                    "{}: format {} is not supported (this build reads {FORMAT})",
                    node_path.display(),
                    facts.format
                ));
            }
            if !(1..=1024).contains(&facts.partitions) {
                return Err(format!("{}: bad partition count", node_path.display()));
            }
            facts
        }
        None => {
            let facts = NodeFacts {
                format: FORMAT,
                partitions: partitions_wanted,
            };
            let text = serde_json::to_vec_pretty(&facts).expect("plain data");
            write_atomic(&node_path, &text).map_err(|e| e.to_string())?;
            facts
        }
    };
    let secrets = match read_json::<Secrets>(&secrets_path)? {
        Some(secrets) => {
            let key_ok = hex::decode(&secrets.token_key).is_ok_and(|k| k.len() == 32);
            if !key_ok {
                return Err(format!(
                    "{}: token_key is not 32 hex bytes",
                    secrets_path.display()
                ));
            }
            secrets
        }
        None => {
            let secrets = Secrets {
                admin_ak: format!("ADMIN{}", random_alnum(15, true)),
                admin_sk: random_alnum(40, false),
                token_key: random_hex(32),
            };
            let text = serde_json::to_vec_pretty(&secrets).expect("plain data");
            write_atomic(&secrets_path, &text).map_err(|e| e.to_string())?;
            secrets
        }
    };
    Ok((facts, secrets, first_start))
}

impl Secrets {
    /// The record partition 0 replicates (`sluice_core`'s `SetAdminSecret`): this JSON.
    pub fn to_record(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain data")
    }

    /// The secrets of a partition 0 record; `None` unless well-formed with a 32-byte key.
    pub fn from_record(record: &[u8]) -> Option<Secrets> {
        let secrets: Secrets = serde_json::from_slice(record).ok()?;
        let key_ok = hex::decode(&secrets.token_key).is_ok_and(|k| k.len() == 32);
        key_ok.then_some(secrets)
    }
}

/// Writes `secrets` as the data directory's secrets file (the admin credentials the CLI's
/// `--data-dir` signs with), replacing what it held.
pub fn store_secrets(data_dir: &Path, secrets: &Secrets) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(secrets).expect("plain data");
    write_atomic(&data_dir.join(SECRETS_FILE), &text)
}

/// Whether the data directory has a tenants file (written at first start, and after every
/// tenant change as the local copy of partition 0's list).
pub fn has_tenants_file(data_dir: &Path) -> bool {
    data_dir.join(TENANTS_FILE).exists()
}

pub fn load_secrets(data_dir: &Path) -> Result<Secrets, String> {
    let path = data_dir.join(SECRETS_FILE);
    read_json(&path)?.ok_or_else(|| {
        format!(
            "{} not found: is {} a Sluice data directory (has the server run once)?",
            path.display(),
            data_dir.display()
        )
    })
}

pub fn load_tenants(data_dir: &Path) -> Result<Vec<Tenant>, String> {
    let stored: Vec<StoredTenant> = read_json(&data_dir.join(TENANTS_FILE))?.unwrap_or_default();
    Ok(stored
        .into_iter()
        .map(|t| Tenant {
            project_id: t.project_id,
            name: t.name,
            ak: t.ak,
            sk: t.sk,
            password_hash: t.password_hash,
            quotas: Quotas {
                queues_max: t.queues_max,
                groups_per_queue_max: t.groups_per_queue_max,
            },
            created_ms: t.created_ms,
        })
        .collect())
}

pub fn store_tenants(data_dir: &Path, tenants: &[Tenant]) -> std::io::Result<()> {
    let stored: Vec<StoredTenant> = tenants
        .iter()
        .map(|t| StoredTenant {
            project_id: t.project_id.clone(),
            name: t.name.clone(),
            ak: t.ak.clone(),
            sk: t.sk.clone(),
            password_hash: t.password_hash.clone(),
            queues_max: t.quotas.queues_max,
            groups_per_queue_max: t.quotas.groups_per_queue_max,
            created_ms: t.created_ms,
        })
        .collect();
    let text = serde_json::to_vec_pretty(&stored).expect("plain data");
    write_atomic(&data_dir.join(TENANTS_FILE), &text)
}

pub fn write_server_file(data_dir: &Path, server: &ServerFile) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(server).expect("plain data");
    write_atomic(&data_dir.join(SERVER_FILE), &text)
}

/// Removes `server.json` (absent is fine): the server is about to start, or has stopped.
pub fn remove_server_file(data_dir: &Path) -> std::io::Result<()> {
    match fs::remove_file(data_dir.join(SERVER_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

pub fn read_server_file(data_dir: &Path) -> Result<Option<ServerFile>, String> {
    read_json(&data_dir.join(SERVER_FILE))
}

/// A fresh tenant with new credentials.
pub fn new_tenant(
    name: &str,
    password_hash: Option<String>,
    quotas: Quotas,
    now_ms: u64,
) -> Tenant {
    sluice_node::tenants::new_tenant(name, password_hash, quotas, now_ms, |bytes| {
        rand::rngs::OsRng.fill_bytes(bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_start_creates_private_secrets_and_later_starts_keep_them() {
        let dir = tempfile::tempdir().unwrap();
        let (facts, secrets, first) = open_or_init(dir.path(), 4).unwrap();
        assert!(first);
        assert_eq!(facts.partitions, 4);
        let mode = fs::metadata(dir.path().join(SECRETS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (facts2, secrets2, first2) = open_or_init(dir.path(), 8).unwrap();
        assert!(!first2);
        assert_eq!(
            facts2.partitions, 4,
            "the partition count is fixed at creation"
        );
        assert_eq!(secrets2, secrets);
        let tenant = new_tenant("acme", None, Quotas::dms_default(), 5);
        store_tenants(dir.path(), std::slice::from_ref(&tenant)).unwrap();
        let mode = fs::metadata(dir.path().join(TENANTS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_tenants(dir.path()).unwrap(), vec![tenant]);
    }

    #[test]
    fn secrets_roundtrip_as_partition_zero_records_and_bad_records_are_refused() {
        // Goal: the record partition 0 replicates gives back the same secrets and fits
        // the engine's limit; a malformed record or a short token key gives none.
        let dir = tempfile::tempdir().unwrap();
        let (_, secrets, _) = open_or_init(dir.path(), 1).unwrap();
        let record = secrets.to_record();
        assert!(record.len() <= sluice_core::limits::ADMIN_SECRET_BYTES_MAX);
        assert_eq!(Secrets::from_record(&record), Some(secrets.clone()));
        assert_eq!(Secrets::from_record(b"{"), None);
        let short = Secrets {
            token_key: "00".into(),
            ..secrets
        };
        assert_eq!(Secrets::from_record(&short.to_record()), None);
    }

    #[test]
    fn credentials_have_the_documented_shape() {
        let tenant = new_tenant("acme", None, Quotas::dms_default(), 5);
        assert_eq!(tenant.project_id.len(), 32);
        assert!(tenant
            .project_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(tenant.ak.len(), 20);
        assert!(tenant
            .ak
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        assert_eq!(tenant.sk.len(), 40);
    }
}
