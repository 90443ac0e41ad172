//! `AuthError`: why an AK/SK-signed request was refused, typed so the HTTP layer can answer
//! a precise 401 and count each cause.
//!
//! Messages never carry the secret key, the expected signature or a hash derived from the
//! secret: a client learns what was wrong with its request, not what the server computed.

/// Why `verify_signature` refused a request. Every variant maps to 401 (see docs/dms-api.md §7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// Neither `Authorization` nor `X-Auth-Token` is present.
    Missing,
    /// A part of the request is not in the form the signature scheme needs; the text names it.
    Malformed(&'static str),
    /// `Authorization` names a scheme other than `SDK-HMAC-SHA256` (for example SM3 or V11).
    UnsupportedAlgorithm,
    /// The access key is not known to the server. Its message is `SignatureMismatch`'s, so
    /// that a client cannot probe which access keys exist.
    UnknownAccessKey,
    /// `X-Sdk-Date` is absent.
    MissingDate,
    /// `X-Sdk-Date` is not `YYYYMMDDTHHMMSSZ`, or disagrees with the legacy credential scope.
    BadDate,
    /// `X-Sdk-Date` is too far from the server's clock: `skew_s` is the request's time minus
    /// the server's (negative: the request is old).
    Skew { skew_s: i64 },
    /// `SignedHeaders` does not list a header the server requires (`host`, `x-sdk-date`).
    UnsignedRequiredHeader { name: &'static str },
    /// `SignedHeaders` lists a header the request does not carry.
    SignedHeaderAbsent { name: String },
    /// `X-Sdk-Content-Sha256` carries a hash that is not the body's.
    BodyHashMismatch,
    /// The signature does not match the request.
    SignatureMismatch,
}

impl AuthError {
    /// A sentence for the 401 body. Never includes secrets or the expected signature.
    pub fn message(&self) -> String {
        match self {
            AuthError::Missing => {
                "The request carries no credentials: send an Authorization header \
                 (SDK-HMAC-SHA256) or an X-Auth-Token header."
                    .to_string()
            }
            AuthError::Malformed(what) => format!("The request is malformed: {what}."),
            AuthError::UnsupportedAlgorithm => {
                "The Authorization header names an unsupported signing algorithm; \
                 only SDK-HMAC-SHA256 is accepted."
                    .to_string()
            }
            AuthError::MissingDate => "The X-Sdk-Date header is missing.".to_string(),
            AuthError::BadDate => {
                "The X-Sdk-Date header is not a valid UTC time of the form YYYYMMDDTHHMMSSZ \
                 matching the credential scope."
                    .to_string()
            }
            AuthError::Skew { skew_s } if *skew_s < 0 => format!(
                "The request has expired: X-Sdk-Date is {} s behind the server's clock.",
                skew_s.unsigned_abs()
            ),
            AuthError::Skew { skew_s } => format!(
                "The request is not yet valid: X-Sdk-Date is {skew_s} s ahead of the \
                 server's clock."
            ),
            AuthError::UnsignedRequiredHeader { name } => {
                format!("The header {name} must be listed in SignedHeaders.")
            }
            AuthError::SignedHeaderAbsent { name } => {
                format!("The signed header {name} is not present in the request.")
            }
            AuthError::BodyHashMismatch => {
                "The X-Sdk-Content-Sha256 header does not match the request body.".to_string()
            }
            AuthError::UnknownAccessKey | AuthError::SignatureMismatch => {
                "The request signature does not match: check the access key (AK), the \
                 secret key (SK), and that the request was not changed after signing."
                    .to_string()
            }
        }
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.message())
    }
}

impl std::error::Error for AuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that the message of `error` contains `expected`.
    fn check(error: AuthError, expected: &str) {
        let message = error.message();
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        assert!(message.ends_with('.'), "{message:?} is not a sentence");
    }

    #[test]
    fn messages_are_precise_sentences() {
        check(AuthError::Missing, "X-Auth-Token");
        check(
            AuthError::Malformed("the SignedHeaders list is empty"),
            "SignedHeaders list",
        );
        check(AuthError::UnsupportedAlgorithm, "SDK-HMAC-SHA256");
        check(AuthError::UnknownAccessKey, "access key (AK)");
        check(AuthError::MissingDate, "X-Sdk-Date");
        check(AuthError::BadDate, "YYYYMMDDTHHMMSSZ");
        check(
            AuthError::Skew { skew_s: -1000 },
            "expired: X-Sdk-Date is 1000 s behind",
        );
        check(AuthError::Skew { skew_s: 1000 }, "1000 s ahead");
        check(
            AuthError::UnsignedRequiredHeader { name: "host" },
            "host must be listed",
        );
        check(
            AuthError::SignedHeaderAbsent { name: "x-a".into() },
            "x-a is not present",
        );
        check(AuthError::BodyHashMismatch, "X-Sdk-Content-Sha256");
        check(AuthError::SignatureMismatch, "does not match");
        assert_eq!(
            AuthError::UnknownAccessKey.message(),
            AuthError::SignatureMismatch.message(),
            "an unknown AK reads like a wrong signature"
        );
    }
}
