//! Password hashes for the Keystone-compatible identity: argon2id in PHC string form.
//!
//! Parameters (OWASP's argon2id minimum): m = 19456 KiB, t = 2 passes, p = 1 lane, 32-byte
//! output. One hash takes about 20-40 ms on one core, which bounds password guessing per core
//! and keeps token issuing cheap enough; tokens, not passwords, authenticate each request.
//! The salt is passed in (no global RNG here); callers draw 16 random bytes per user.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

pub const ARGON2_MEMORY_KIB: u32 = 19_456;
pub const ARGON2_ITERATIONS: u32 = 2;
pub const ARGON2_LANES: u32 = 1;
/// Stored hashes asking for more memory or passes than this are refused rather than run:
/// a tampered store must not turn a login into a denial of service.
const ARGON2_MEMORY_KIB_MAX: u32 = 4 * ARGON2_MEMORY_KIB;
const ARGON2_ITERATIONS_MAX: u32 = 8;
const ARGON2_LANES_MAX: u32 = 4;
/// Longest password accepted (a Keystone login, a tenant's creation), in bytes.
pub const PASSWORD_BYTES_MAX: usize = 1024;
/// Longest PHC string `verify_password` parses.
pub const PHC_BYTES_MAX: usize = 256;

/// A hash checked when a login names no known user (or one without a password), so that
/// case costs one verification like the others and timing does not tell them apart. It is
/// the hash of a fixed sentence under a fixed salt, with the standard parameters (a test
/// checks both), made once with `hash_password` rather than at every start.
pub const UNKNOWN_USER_PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$CzBVep/E6Q4zWH2ix+wRNg$P1mwf54IlJqNFKaB+Uusu7YwaQMmghct9Nx5aoJXToI";

/// A password check could not be queued: every verifier is busy and the queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifierBusy;

fn argon2_params(memory_kib: u32, iterations: u32, lanes: u32) -> Argon2<'static> {
    let params =
        Params::new(memory_kib, iterations, lanes, Some(32)).expect("argon2 parameters in range");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) of `password`.
pub fn hash_password(password: &str, salt: &[u8; 16]) -> String {
    let salt = SaltString::encode_b64(salt).expect("16 bytes is a valid salt length");
    argon2_params(ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_LANES)
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2id hashes any password with valid parameters")
        .to_string()
}

/// Whether `password` matches `phc`. A malformed or over-expensive PHC string, or an overlong
/// password, is `false`. The comparison inside `argon2` is constant time.
pub fn verify_password(password: &str, phc: &str) -> bool {
    if password.len() > PASSWORD_BYTES_MAX || phc.len() > PHC_BYTES_MAX {
        return false;
    }
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    if hash.algorithm.as_str() != "argon2id" {
        return false;
    }
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > ARGON2_MEMORY_KIB_MAX
        || params.t_cost() > ARGON2_ITERATIONS_MAX
        || params.p_cost() > ARGON2_LANES_MAX
    {
        return false;
    }
    argon2_params(params.m_cost(), params.t_cost(), params.p_cost())
        .verify_password(password.as_bytes(), &hash)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks whether `password` verifies against `phc`.
    fn check(password: &str, phc: &str, expected: bool) {
        assert_eq!(
            verify_password(password, phc),
            expected,
            "{password:?} vs {phc:?}"
        );
    }

    #[test]
    fn hashes_verify_only_their_password() {
        let phc = hash_password("correct horse", &[1; 16]);
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        check("correct horse", &phc, true);
        check("correct horsE", &phc, false);
        check("", &phc, false);
        assert_ne!(
            phc,
            hash_password("correct horse", &[2; 16]),
            "salt is used"
        );
        assert_eq!(
            phc,
            hash_password("correct horse", &[1; 16]),
            "deterministic"
        );
    }

    #[test]
    fn malformed_or_expensive_hashes_are_refused() {
        check("x", "", false);
        check("x", "$argon2id$", false);
        check("x", "plaintext", false);
        let phc = hash_password("x", &[3; 16]);
        check("x", &phc.replace("m=19456", "m=4000000"), false);
        check("x", &phc.replace("t=2", "t=100"), false);
        check("x", &phc.replace("argon2id", "argon2i"), false);
        check(&"x".repeat(PASSWORD_BYTES_MAX + 1), &phc, false);
    }

    #[test]
    fn the_unknown_user_hash_costs_what_a_real_one_costs() {
        // Goal: a login for an unknown user runs a verification of the same cost. Method:
        // the constant has the standard parameters and is a genuine hash of its sentence.
        let parameters =
            format!("$argon2id$v=19$m={ARGON2_MEMORY_KIB},t={ARGON2_ITERATIONS},p={ARGON2_LANES}$");
        assert!(
            UNKNOWN_USER_PHC.starts_with(&parameters),
            "{UNKNOWN_USER_PHC}"
        );
        let sentence = "sluice: no such user; this password is never checked";
        check(sentence, UNKNOWN_USER_PHC, true);
        check("", UNKNOWN_USER_PHC, false);
    }
}
