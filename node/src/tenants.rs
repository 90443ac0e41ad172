//! Tenants and their credentials: the read-mostly directory every request authenticates
//! against, how a new tenant's credentials are drawn, and a tenant's record as partition
//! 0's engine keeps it ([`encode_tenant`], opaque to the engine). The metadata shard
//! writes tenants through partition 0 and republishes a new `Arc<TenantDirectory>` from
//! partition 0's applied tenants ([`crate::Directories`]); this module holds and indexes
//! it.

use std::collections::HashMap;

use sluice_core::engine::codec::{Reader, Writer};

/// The layout of [`encode_tenant`]'s records.
const RECORD_VERSION: u8 = 1;

/// Per-tenant limits. Defaults follow docs/dms-api.md where clients depend on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Quotas {
    pub queues_max: u32,
    pub groups_per_queue_max: u32,
}

impl Quotas {
    /// docs/dms-api.md §4: 30 queues per project, 3 groups per queue.
    pub fn dms_default() -> Quotas {
        Quotas {
            queues_max: 30,
            groups_per_queue_max: 3,
        }
    }
}

#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tenant {
    /// 32 lowercase hex characters; the `{project_id}` of every API path.
    pub project_id: String,
    /// Unique; also the Keystone project and user name.
    pub name: String,
    /// Access key id: 20 upper-case letters and digits.
    pub ak: String,
    /// Secret key: 40 letters and digits. Never logged.
    pub sk: String,
    /// PHC string of a memory-hard hash (argon2id), for Keystone password logins.
    pub password_hash: Option<String>,
    pub quotas: Quotas,
    pub created_ms: u64,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("project_id", &self.project_id)
            .field("name", &self.name)
            .field("ak", &self.ak)
            .field("sk", &"<redacted>")
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .field("quotas", &self.quotas)
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TenantError {
    Exists,
    NotFound,
    InvalidName,
    /// A password longer than [`crate::password::PASSWORD_BYTES_MAX`].
    InvalidPassword,
    /// The tenant list could not be stored (the host's I/O error, as text).
    Storage(String),
    /// The node could not make the change (deleting the tenant's queues, reaching the
    /// metadata shard).
    Node(crate::NodeError),
}

impl std::fmt::Display for TenantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TenantError::Exists => write!(f, "a tenant with this name already exists"),
            TenantError::NotFound => write!(f, "no such tenant"),
            TenantError::InvalidName => {
                write!(f, "tenant names are 1-64 characters of A-Z a-z 0-9 _ -")
            }
            TenantError::InvalidPassword => write!(
                f,
                "passwords are at most {} bytes",
                crate::password::PASSWORD_BYTES_MAX
            ),
            TenantError::Storage(detail) => write!(f, "cannot store the tenant: {detail}"),
            TenantError::Node(error) => write!(f, "cannot change the tenant: {error}"),
        }
    }
}

/// Tenant names follow the queue-name rule: 1-64 of `[A-Za-z0-9_-]`.
pub fn valid_tenant_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Project ids: 32 lower-case hex digits; access keys: 20 upper-case letters and digits;
/// secret keys: 40 letters and digits.
const PROJECT_ID_CHARS: &[u8] = b"0123456789abcdef";
const AK_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const SK_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `length` characters of `alphabet`, uniformly drawn from `fill`'s bytes (rejection
/// sampling: bytes past the largest multiple of the alphabet's size are drawn again).
fn random_string(alphabet: &[u8], length: usize, fill: &mut impl FnMut(&mut [u8])) -> String {
    let limit = 256 - 256 % alphabet.len();
    let mut out = String::with_capacity(length);
    let mut byte = [0u8; 1];
    // Bounded in expectation: each draw is accepted with probability above 1/2.
    while out.len() < length {
        fill(&mut byte);
        let value = usize::from(byte[0]);
        if value < limit {
            out.push(char::from(alphabet[value % alphabet.len()]));
        }
    }
    out
}

/// A tenant with fresh credentials drawn from `fill` (the caller checks they are unused).
pub fn new_tenant(
    name: &str,
    password_hash: Option<String>,
    quotas: Quotas,
    now_ms: u64,
    mut fill: impl FnMut(&mut [u8]),
) -> Tenant {
    Tenant {
        project_id: random_string(PROJECT_ID_CHARS, 32, &mut fill),
        name: name.to_string(),
        ak: random_string(AK_CHARS, 20, &mut fill),
        sk: random_string(SK_CHARS, 40, &mut fill),
        password_hash,
        quotas,
        created_ms: now_ms,
    }
}

/// A tenant as partition 0 keeps it: a version byte, then its fields. Well under
/// `sluice_core::limits::TENANT_RECORD_BYTES_MAX` for any tenant [`new_tenant`] draws.
pub fn encode_tenant(tenant: &Tenant) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(RECORD_VERSION)
        .str(&tenant.project_id)
        .str(&tenant.name)
        .str(&tenant.ak)
        .str(&tenant.sk);
    match &tenant.password_hash {
        None => w.u8(0),
        Some(hash) => w.u8(1).str(hash),
    };
    w.u32(tenant.quotas.queues_max)
        .u32(tenant.quotas.groups_per_queue_max)
        .u64(tenant.created_ms);
    w.bytes
}

/// The tenant of an [`encode_tenant`] record; `None` for anything else (never panics).
pub fn decode_tenant(record: &[u8]) -> Option<Tenant> {
    let mut r = Reader::new(record);
    if r.u8().ok()? != RECORD_VERSION {
        return None;
    }
    let mut text = || r.str().ok().map(str::to_string);
    let (project_id, name, ak, sk) = (text()?, text()?, text()?, text()?);
    let password_hash = match r.u8().ok()? {
        0 => None,
        1 => Some(r.str().ok()?.to_string()),
        _ => return None,
    };
    let quotas = Quotas {
        queues_max: r.u32().ok()?,
        groups_per_queue_max: r.u32().ok()?,
    };
    let created_ms = r.u64().ok()?;
    r.is_empty().then_some(Tenant {
        project_id,
        name,
        ak,
        sk,
        password_hash,
        quotas,
        created_ms,
    })
}

/// An immutable, indexed set of tenants.
#[derive(Clone, Debug, Default)]
pub struct TenantDirectory {
    tenants: Vec<Tenant>,
    by_ak: HashMap<String, usize>,
    by_project: HashMap<String, usize>,
    by_name: HashMap<String, usize>,
}

impl TenantDirectory {
    pub fn new(tenants: Vec<Tenant>) -> TenantDirectory {
        let mut directory = TenantDirectory {
            tenants,
            ..TenantDirectory::default()
        };
        for (index, tenant) in directory.tenants.iter().enumerate() {
            let fresh_ak = directory.by_ak.insert(tenant.ak.clone(), index).is_none();
            assert!(fresh_ak, "access keys are unique");
            let fresh_project = directory
                .by_project
                .insert(tenant.project_id.clone(), index)
                .is_none();
            assert!(fresh_project, "project ids are unique");
            let fresh_name = directory
                .by_name
                .insert(tenant.name.clone(), index)
                .is_none();
            assert!(fresh_name, "tenant names are unique");
        }
        directory
    }

    /// The directory of partition 0's tenant records, and how many were left out: a
    /// record that does not decode, or whose name, access key or project id an earlier
    /// one holds (only a forged log has either; none panics).
    pub fn from_records(records: &[(String, Vec<u8>)]) -> (TenantDirectory, usize) {
        let mut kept: Vec<Tenant> = Vec::with_capacity(records.len());
        let mut seen = TenantDirectory::default();
        for (name, record) in records {
            let Some(tenant) = decode_tenant(record).filter(|t| &t.name == name) else {
                continue;
            };
            let clash = seen.by_ak.contains_key(&tenant.ak)
                || seen.by_project.contains_key(&tenant.project_id)
                || seen.by_name.contains_key(&tenant.name);
            if clash {
                continue;
            }
            let index = kept.len();
            seen.by_ak.insert(tenant.ak.clone(), index);
            seen.by_project.insert(tenant.project_id.clone(), index);
            seen.by_name.insert(tenant.name.clone(), index);
            kept.push(tenant);
        }
        let skipped = records.len() - kept.len();
        (TenantDirectory::new(kept), skipped)
    }

    pub fn all(&self) -> &[Tenant] {
        &self.tenants
    }

    pub fn by_ak(&self, ak: &str) -> Option<&Tenant> {
        self.by_ak.get(ak).map(|i| &self.tenants[*i])
    }

    pub fn by_project(&self, project_id: &str) -> Option<&Tenant> {
        self.by_project.get(project_id).map(|i| &self.tenants[*i])
    }

    pub fn by_name(&self, name: &str) -> Option<&Tenant> {
        self.by_name.get(name).map(|i| &self.tenants[*i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, seed: u8) -> Tenant {
        let mut next = seed;
        new_tenant(
            name,
            Some("$argon2id$x".into()),
            Quotas::dms_default(),
            7,
            |bytes| {
                for byte in bytes {
                    next = next.wrapping_mul(31).wrapping_add(17);
                    *byte = next;
                }
            },
        )
    }

    #[test]
    fn a_tenant_record_roundtrips_and_anything_else_is_refused() {
        // Goal: partition 0's record of a tenant gives back the same tenant; a cut,
        // extended or foreign record decodes to nothing, without panicking.
        let original = tenant("acme", 1);
        let record = encode_tenant(&original);
        assert!(record.len() <= sluice_core::limits::TENANT_RECORD_BYTES_MAX);
        assert_eq!(decode_tenant(&record), Some(original.clone()));
        let plain = Tenant {
            password_hash: None,
            ..original
        };
        assert_eq!(decode_tenant(&encode_tenant(&plain)), Some(plain));
        for cut in 0..record.len() {
            assert_eq!(decode_tenant(&record[..cut]), None);
        }
        let mut longer = record.clone();
        longer.push(0);
        assert_eq!(decode_tenant(&longer), None);
        assert_eq!(decode_tenant(&[9, 0, 0]), None);
    }

    #[test]
    fn records_that_clash_or_do_not_decode_are_left_out_of_the_directory() {
        // Goal: a directory built from partition 0's records never panics on a forged
        // log: undecodable records, a record under another name and repeated
        // credentials are skipped and counted.
        let a = tenant("a", 1);
        let b = tenant("b", 2);
        let b_same_ak = Tenant {
            name: "c".into(),
            project_id: "f".repeat(32),
            ..b.clone()
        };
        let records = vec![
            ("a".to_string(), encode_tenant(&a)),
            ("b".to_string(), encode_tenant(&b)),
            ("c".to_string(), encode_tenant(&b_same_ak)),
            ("d".to_string(), vec![1, 2, 3]),
            ("e".to_string(), encode_tenant(&a)),
        ];
        let (directory, skipped) = TenantDirectory::from_records(&records);
        assert_eq!(skipped, 3);
        assert_eq!(directory.all(), &[a, b]);
    }
}
