//! Password logins (the Keystone password method) and the admission of signed token
//! requests: what the node decides before an adapter issues a token.
//!
//! A login is refused before its password is checked when the tenant it names or the
//! client's address is backing off (`crate::guards`); otherwise the host checks the
//! password off the shard's thread ([`crate::Host::verify_password`]) and the outcome is
//! charged or refunded. Every failure gets one answer, and an unknown user costs a check
//! like a known one, so neither the answer nor its timing tells which part was wrong.

use std::net::IpAddr;

use crate::guards::{AuthEvent, AuthGuards};
use crate::password::{VerifierBusy, UNKNOWN_USER_PHC};
use crate::replay::ReplayRefusal;
use crate::tenants::Tenant;
use crate::{Host, NodeShard};

/// When every verifier is busy, the client is told to come back after this.
pub const VERIFIER_BUSY_RETRY_MS: u64 = 1_000;

/// A user or project as a Keystone request names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginName<'a> {
    Name(&'a str),
    Id(&'a str),
}

/// One password login: the user (a tenant, by name or project id), the project it
/// scopes to (the same tenant), the password, and the client's address if known.
#[derive(Clone, Copy, Debug)]
pub struct LoginRequest<'a> {
    pub user: LoginName<'a>,
    pub project: LoginName<'a>,
    pub password: &'a str,
    pub address: Option<IpAddr>,
}

/// Why a login gave no tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginError {
    /// The user, the password or the project is wrong (one answer for all three).
    Refused,
    /// The tenant or the address is backing off after failed logins.
    Throttled { retry_after_ms: u64 },
    /// No password verifier could take the check.
    Busy { retry_after_ms: u64 },
}

impl<H: Host> NodeShard<H> {
    pub(crate) async fn login_run(&self, request: LoginRequest<'_>) -> Result<Tenant, LoginError> {
        let tenants = self.directories().tenants.load_full();
        let user = match request.user {
            LoginName::Name(name) => tenants.by_name(name),
            LoginName::Id(id) => tenants.by_project(id),
        };
        // A known tenant is counted under its project id whichever way it was named; an
        // unknown name under itself ('?' keeps it apart from the hex project ids).
        let tenant_key = match (user, request.user) {
            (Some(tenant), _) => tenant.project_id.clone(),
            (None, LoginName::Name(text) | LoginName::Id(text)) => format!("?{text}"),
        };
        let guards: &AuthGuards = self.guards();
        let now_ms = self.host().now_ms();
        let ticket = match guards.login_begin(&tenant_key, request.address, now_ms) {
            Ok(ticket) => ticket,
            Err(retry_after_ms) => {
                self.host().auth_event(AuthEvent::LoginThrottled);
                return Err(LoginError::Throttled { retry_after_ms });
            }
        };
        let phc = user
            .and_then(|tenant| tenant.password_hash.clone())
            .unwrap_or_else(|| UNKNOWN_USER_PHC.to_string());
        let checked = self
            .host()
            .verify_password(request.password.to_string(), phc)
            .await;
        let password_ok = match checked {
            Ok(matched) => matched,
            Err(VerifierBusy) => {
                guards.login_end(ticket, false, false);
                self.host().auth_event(AuthEvent::LoginBusy);
                return Err(LoginError::Busy {
                    retry_after_ms: VERIFIER_BUSY_RETRY_MS,
                });
            }
        };
        let found = user.filter(|tenant| {
            let has_password = tenant.password_hash.is_some();
            let project_matches = match request.project {
                LoginName::Name(name) => tenant.name == name,
                LoginName::Id(id) => tenant.project_id == id,
            };
            password_ok && has_password && project_matches
        });
        guards.login_end(ticket, true, found.is_some());
        match found {
            Some(tenant) => {
                self.host().auth_event(AuthEvent::LoginSucceeded);
                Ok(tenant.clone())
            }
            None => {
                self.host().auth_event(AuthEvent::LoginFailed);
                Err(LoginError::Refused)
            }
        }
    }

    pub(crate) fn admit_token_request_run(
        &self,
        signature: [u8; 32],
        dated_unix_s: i64,
        window_s: i64,
    ) -> Result<(), ReplayRefusal> {
        let now_wall_ms = self.host().wall_ms();
        let admitted =
            self.guards()
                .admit_token_request(signature, dated_unix_s, window_s, now_wall_ms);
        if matches!(
            admitted,
            Err(ReplayRefusal::Seen | ReplayRefusal::BeforeStart)
        ) {
            self.host().auth_event(AuthEvent::TokenRequestReplayed);
        }
        admitted
    }
}
