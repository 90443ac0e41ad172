//! Secret material the server makes: password hashes with fresh random salts.

use rand::RngCore;

/// A memory-hard hash (argon2id, parameters in docs/auth.md) under a random salt.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    sluice_http::auth::hash_password(password, &salt)
}
