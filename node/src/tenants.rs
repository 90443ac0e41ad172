//! Tenants and their credentials: the read-mostly directory every request authenticates
//! against, and how a new tenant's credentials are drawn. The metadata shard changes it
//! and publishes a new `Arc<TenantDirectory>` after the host stored it
//! ([`crate::Directories`]); this module holds and indexes it.

use std::collections::HashMap;

/// Per-tenant limits. Defaults follow docs/dms-api.md where clients depend on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

#[derive(Clone, PartialEq, Eq)]
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

#[derive(Clone, Debug, PartialEq, Eq)]
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
