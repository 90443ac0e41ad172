//! SASL: PLAIN and SCRAM-SHA-256/512 (RFC 5802, RFC 7677), with the tenant's AK as the
//! user name and its SK as the password.
//!
//! SCRAM needs the salted password on the server. Sluice keeps each SK (it signs DMS
//! requests with it), so the salted password is derived at each exchange: the salt is a
//! hash of the AK (stable, so a client may cache its salted password), the iteration
//! count [`SCRAM_ITERATIONS`]. An unknown AK goes through the same exchange with a salt
//! of the same shape and fails at the proof, so the first message does not tell which
//! AKs exist.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use sluice_node::tenants::Tenant;
use subtle::ConstantTimeEq;

/// The SCRAM iteration count (RFC 7677's minimum for SHA-256).
pub const SCRAM_ITERATIONS: u32 = 4096;
/// Bytes of one SASL message a client may send.
pub const SASL_MESSAGE_BYTES_MAX: usize = 4096;

/// The mechanisms a SaslHandshake may pick, in the order they are advertised.
pub const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    pub fn parse(name: &str) -> Option<Mechanism> {
        match name {
            "PLAIN" => Some(Mechanism::Plain),
            "SCRAM-SHA-256" => Some(Mechanism::ScramSha256),
            "SCRAM-SHA-512" => Some(Mechanism::ScramSha512),
            _ => None,
        }
    }
}

/// Where a connection's SASL exchange stands.
#[derive(Debug, Default)]
pub enum SaslState {
    /// No handshake yet.
    #[default]
    Start,
    /// A handshake chose this mechanism; the first SaslAuthenticate is next.
    Chosen(Mechanism),
    /// SCRAM: the server's first message was sent; the client's final one is next.
    ScramSent(Box<ScramPending>),
    /// Authenticated (the session holds the tenant).
    Done,
    /// A failed authentication: every later request closes the connection.
    Failed,
}

#[derive(Debug)]
pub struct ScramPending {
    mechanism: Mechanism,
    ak: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    gs2_header: String,
}

impl ScramPending {
    /// The user name (AK) the client-first message named.
    pub fn ak(&self) -> &str {
        &self.ak
    }
}

/// The outcome of one SaslAuthenticate.
pub enum Step {
    /// Authenticated as this tenant; answer these bytes.
    Done(Box<Tenant>, Vec<u8>),
    /// Answer these bytes and wait for the next message.
    Continue(Vec<u8>),
    /// Refused, with the reason for the client.
    Refused(String),
}

/// PLAIN: `[authzid] NUL authcid NUL password`, authcid the AK, password the SK.
pub fn plain(message: &[u8], find: impl Fn(&str) -> Option<Tenant>) -> Step {
    let mut parts = message.split(|byte| *byte == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Step::Refused("malformed PLAIN message".to_string());
    };
    let (Ok(authzid), Ok(user)) = (std::str::from_utf8(authzid), std::str::from_utf8(user)) else {
        return Step::Refused("malformed PLAIN message".to_string());
    };
    if !authzid.is_empty() && authzid != user {
        return Step::Refused("an authorization id other than the user".to_string());
    }
    match find(user) {
        Some(tenant) if bool::from(tenant.sk.as_bytes().ct_eq(password)) => {
            Step::Done(Box::new(tenant), Vec::new())
        }
        _ => Step::Refused("Authentication failed: invalid user name or password".to_string()),
    }
}

/// SCRAM's client-first message: remembers what the final step needs and answers the
/// server-first message.
pub fn scram_first(
    mechanism: Mechanism,
    message: &[u8],
    server_nonce: &str,
) -> Result<(ScramPending, Vec<u8>), String> {
    let text = std::str::from_utf8(message).map_err(|_| "SCRAM message is not UTF-8")?;
    // gs2-header: "n,," or "y,," (no channel binding), optionally "n,a=authzid,".
    let mut fields = text.splitn(3, ',');
    let (Some(binding), Some(authzid), Some(bare)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err("malformed SCRAM client-first message".to_string());
    };
    if binding != "n" && binding != "y" {
        return Err("SCRAM channel binding is not supported".to_string());
    }
    let mut user = None;
    let mut client_nonce = None;
    for attribute in bare.split(',') {
        if let Some(value) = attribute.strip_prefix("n=") {
            user = Some(unescape_name(value)?);
        } else if let Some(value) = attribute.strip_prefix("r=") {
            client_nonce = Some(value);
        } else if attribute.starts_with("m=") {
            return Err("SCRAM extensions are not supported".to_string());
        }
    }
    let (Some(user), Some(client_nonce)) = (user, client_nonce) else {
        return Err("SCRAM client-first message without user or nonce".to_string());
    };
    if let Some(authzid) = authzid.strip_prefix("a=") {
        if unescape_name(authzid)? != user {
            return Err("an authorization id other than the user".to_string());
        }
    }
    if client_nonce.is_empty()
        || !client_nonce
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b',')
    {
        return Err("malformed SCRAM nonce".to_string());
    }
    let nonce = format!("{client_nonce}{server_nonce}");
    let salt = salt_of(&user);
    let server_first = format!("r={nonce},s={},i={SCRAM_ITERATIONS}", BASE64.encode(salt));
    let pending = ScramPending {
        mechanism,
        ak: user,
        client_first_bare: bare.to_string(),
        server_first: server_first.clone(),
        nonce,
        gs2_header: format!("{binding},{authzid},"),
    };
    Ok((pending, server_first.into_bytes()))
}

/// SCRAM's client-final message: checks the proof against the tenant's SK.
pub fn scram_final(
    pending: &ScramPending,
    message: &[u8],
    find: impl Fn(&str) -> Option<Tenant>,
) -> Step {
    let refused = |why: &str| Step::Refused(why.to_string());
    let Ok(text) = std::str::from_utf8(message) else {
        return refused("SCRAM message is not UTF-8");
    };
    let Some((without_proof, proof)) = text.rsplit_once(",p=") else {
        return refused("SCRAM client-final message without proof");
    };
    let mut binding = None;
    let mut nonce = None;
    for attribute in without_proof.split(',') {
        if let Some(value) = attribute.strip_prefix("c=") {
            binding = Some(value);
        } else if let Some(value) = attribute.strip_prefix("r=") {
            nonce = Some(value);
        }
    }
    if binding != Some(BASE64.encode(&pending.gs2_header).as_str()) {
        return refused("SCRAM channel binding does not match");
    }
    if nonce != Some(pending.nonce.as_str()) {
        return refused("SCRAM nonce does not match");
    }
    let Ok(proof) = BASE64.decode(proof) else {
        return refused("SCRAM proof is not base64");
    };
    let auth_message = format!(
        "{},{},{without_proof}",
        pending.client_first_bare, pending.server_first
    );
    let failed = "Authentication failed during authentication due to invalid credentials with \
                  SASL mechanism";
    let Some(tenant) = find(&pending.ak) else {
        return refused(failed);
    };
    let salt = salt_of(&pending.ak);
    let verified = match pending.mechanism {
        Mechanism::ScramSha256 => {
            verify::<Hmac<Sha256>, Sha256>(&tenant.sk, &salt, &auth_message, &proof)
        }
        Mechanism::ScramSha512 => {
            verify::<Hmac<Sha512>, Sha512>(&tenant.sk, &salt, &auth_message, &proof)
        }
        Mechanism::Plain => None,
    };
    match verified {
        Some(server_signature) => Step::Done(
            Box::new(tenant),
            format!("v={}", BASE64.encode(server_signature)).into_bytes(),
        ),
        None => refused(failed),
    }
}

/// The SCRAM salt of a user name: stable, so clients may cache their salted password.
fn salt_of(user: &str) -> [u8; 16] {
    let digest = Sha256::digest(format!("sluice-scram-salt:{user}").as_bytes());
    digest[..16].try_into().expect("16 of 32 bytes")
}

/// RFC 5802 names escape ',' as "=2C" and '=' as "=3D".
fn unescape_name(name: &str) -> Result<String, String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err("malformed SCRAM user name".to_string()),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks a SCRAM client proof; answers the server signature when it holds.
fn verify<M, D>(password: &str, salt: &[u8], auth_message: &str, proof: &[u8]) -> Option<Vec<u8>>
where
    M: Mac + hmac::digest::KeyInit + Clone,
    D: Digest,
{
    let salted = hi::<M>(password.as_bytes(), salt, SCRAM_ITERATIONS);
    let client_key = mac::<M>(&salted, b"Client Key");
    let stored_key = D::digest(&client_key);
    let client_signature = mac::<M>(&stored_key, auth_message.as_bytes());
    if proof.len() != client_signature.len() {
        return None;
    }
    let recovered: Vec<u8> = proof
        .iter()
        .zip(&client_signature)
        .map(|(a, b)| a ^ b)
        .collect();
    if !bool::from(
        D::digest(&recovered)
            .as_slice()
            .ct_eq(stored_key.as_slice()),
    ) {
        return None;
    }
    let server_key = mac::<M>(&salted, b"Server Key");
    Some(mac::<M>(&server_key, auth_message.as_bytes()))
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 5802's Hi(): PBKDF2 with the HMAC as its function, one block.
fn hi<M: Mac + hmac::digest::KeyInit + Clone>(
    password: &[u8],
    salt: &[u8],
    rounds: u32,
) -> Vec<u8> {
    let keyed = <M as hmac::digest::KeyInit>::new_from_slice(password).expect("HMAC takes any key");
    let mut first = keyed.clone();
    first.update(salt);
    first.update(&1u32.to_be_bytes());
    let mut u = first.finalize().into_bytes().to_vec();
    let mut out = u.clone();
    for _ in 1..rounds {
        let mut next = keyed.clone();
        next.update(&u);
        u = next.finalize().into_bytes().to_vec();
        for (o, x) in out.iter_mut().zip(&u) {
            *o ^= x;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example: user "user", password "pencil".
    #[test]
    fn rfc_7677_proof_verifies() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
                    r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                    s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
                    c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = BASE64
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        let server = verify::<Hmac<Sha256>, Sha256>("pencil", &salt, auth, &proof)
            .expect("the RFC's proof holds");
        assert_eq!(
            BASE64.encode(server),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let mut wrong = proof.clone();
        wrong[0] ^= 1;
        assert!(verify::<Hmac<Sha256>, Sha256>("pencil", &salt, auth, &wrong).is_none());
        assert!(verify::<Hmac<Sha256>, Sha256>("pencils", &salt, auth, &proof).is_none());
    }

    #[test]
    fn names_unescape() {
        assert_eq!(unescape_name("a=2Cb=3Dc").unwrap(), "a,b=c");
        assert!(unescape_name("a=2").is_err());
        assert!(unescape_name("a=41").is_err());
    }
}
