//! SASL mechanisms of the `kafka` emitter, client side: `PLAIN` (RFC 4616), `SCRAM-SHA-256` /
//! `SCRAM-SHA-512` (RFC 5802 / 7677, as Kafka's own client speaks them: no SASLprep, no channel
//! binding) and `OAUTHBEARER` (RFC 7628), which carries the MSK IAM token
//! ([`super::msk_iam`]).
//!
//! Passwords, salted passwords, proofs and tokens are never logged or put in an error text.

use authtrail_core::secret::Secret;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

/// Highest SCRAM iteration count accepted from a broker (each costs two HMACs at cold start).
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// Why a SASL exchange failed on the client's side (the broker's refusals are error codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslError(pub String);

/// The initial response of `PLAIN`: empty authorization id, user, password.
pub fn plain(username: &str, password: &Secret) -> Vec<u8> {
    let mut out = Vec::with_capacity(username.len() + password.expose().len() + 2);
    out.push(0);
    out.extend_from_slice(username.as_bytes());
    out.push(0);
    out.extend_from_slice(password.expose().as_bytes());
    out
}

/// The initial response of `OAUTHBEARER` carrying `token` (no authorization id).
pub fn oauthbearer(token: &Secret) -> Vec<u8> {
    format!("n,,\x01auth=Bearer {}\x01\x01", token.expose()).into_bytes()
}

/// The SCRAM hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// `SCRAM-SHA-256`.
    Sha256,
    /// `SCRAM-SHA-512`.
    Sha512,
}

impl ScramHash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Result<Vec<u8>, SaslError> {
        let bad = |_| SaslError("HMAC key rejected".into());
        Ok(match self {
            ScramHash::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).map_err(bad)?;
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha512 => {
                let mut m = Hmac::<Sha512>::new_from_slice(key).map_err(bad)?;
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        })
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
            ScramHash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// PBKDF2 with this hash's HMAC (RFC 5802's `Hi`).
    fn salted_password(
        self,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Result<Vec<u8>, SaslError> {
        let mut first = salt.to_vec();
        first.extend_from_slice(&1u32.to_be_bytes());
        let mut u = self.hmac(password, &first)?;
        let mut out = u.clone();
        for _ in 1..iterations {
            u = self.hmac(password, &u)?;
            out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
        }
        Ok(out)
    }
}

/// `name` with `=` and `,` escaped as SCRAM's `saslname` wants.
fn sasl_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// A SCRAM client exchange: [`Scram::client_first`], [`Scram::client_final`] with the server's
/// first message, then [`Scram::verify_server_final`] with its last.
pub struct Scram {
    hash: ScramHash,
    password: Secret,
    client_first_bare: String,
    nonce: String,
    server_signature: Option<Vec<u8>>,
}

impl std::fmt::Debug for Scram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scram({:?})", self.hash)
    }
}

impl Scram {
    /// An exchange for `username` with `password` and the client nonce `nonce` (printable
    /// ASCII without `,`).
    pub fn new(hash: ScramHash, username: &str, password: &Secret, nonce: String) -> Self {
        Self {
            hash,
            password: password.clone(),
            client_first_bare: format!("n={},r={nonce}", sasl_name(username)),
            nonce,
            server_signature: None,
        }
    }

    /// A random client nonce (24 bytes from the system's secure random source, base64).
    pub fn random_nonce() -> Result<String, SaslError> {
        let mut bytes = [0u8; 24];
        rustls::crypto::aws_lc_rs::default_provider()
            .secure_random
            .fill(&mut bytes)
            .map_err(|_| SaslError("no secure random source for the SCRAM nonce".into()))?;
        Ok(STANDARD.encode(bytes))
    }

    /// The client's first message: `n,,n={user},r={nonce}`.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// The client's final message (with the proof) for the server's first message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, SaslError> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| SaslError("SCRAM server-first message is not UTF-8".into()))?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attr in server_first.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = STANDARD.decode(v).ok(),
                Some(("i", v)) => iterations = v.parse::<u32>().ok(),
                Some(("e", v)) => return Err(SaslError(format!("SCRAM server error: {v}"))),
                Some(("m", _)) => {
                    return Err(SaslError(
                        "SCRAM server requires an unknown extension".into(),
                    ));
                }
                _ => {}
            }
        }
        let nonce = nonce
            .filter(|n| n.starts_with(&self.nonce) && n.len() > self.nonce.len())
            .ok_or_else(|| SaslError("SCRAM server nonce does not extend the client's".into()))?;
        let salt = salt.ok_or_else(|| SaslError("SCRAM server sent no valid salt".into()))?;
        let iterations = iterations
            .filter(|i| (1..=MAX_ITERATIONS).contains(i))
            .ok_or_else(|| {
                SaslError(format!(
                    "SCRAM iteration count must be 1..={MAX_ITERATIONS}"
                ))
            })?;
        let h = self.hash;
        let salted = h.salted_password(self.password.expose().as_bytes(), &salt, iterations)?;
        let client_key = h.hmac(&salted, b"Client Key")?;
        let stored_key = h.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = h.hmac(&stored_key, auth_message.as_bytes())?;
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = h.hmac(&salted, b"Server Key")?;
        self.server_signature = Some(h.hmac(&server_key, auth_message.as_bytes())?);
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Checks the server's final message (`v={signature}`): the broker knew the password.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), SaslError> {
        let text = String::from_utf8_lossy(server_final);
        if let Some(e) = text.strip_prefix("e=") {
            return Err(SaslError(format!("SCRAM server error: {e}")));
        }
        let got = text.strip_prefix("v=").and_then(|v| {
            STANDARD
                .decode(v.split(',').next().unwrap_or_default())
                .ok()
        });
        match (&self.server_signature, got) {
            (Some(want), Some(got)) if *want == got => Ok(()),
            _ => Err(SaslError(
                "SCRAM server signature does not match: not the broker that holds the credentials"
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

    fn exchange(hash: ScramHash) -> Scram {
        Scram::new(
            hash,
            "user",
            &Secret::new("pencil"),
            "rOprNGfwEbeRWgbNEkqO".into(),
        )
    }

    #[test]
    fn scram_sha_256_follows_the_rfc_7677_example_exchange() {
        let mut s = exchange(ScramHash::Sha256);
        assert_eq!(s.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let last = s.client_final(SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(last).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        s.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(s.verify_server_final(b"v=AAAA").is_err());
    }

    #[test]
    fn scram_sha_512_proof_and_server_signature_match_an_independent_implementation() {
        // Expected values computed with Python's hashlib.pbkdf2_hmac and hmac for the same
        // exchange as the RFC 7677 example.
        let mut s = exchange(ScramHash::Sha512);
        let last = String::from_utf8(s.client_final(SERVER_FIRST.as_bytes()).unwrap()).unwrap();
        assert!(
            last.ends_with(",p=gMGXRcevScNtxZ6/8lQYpGtnsNAc3mGcmNomv+xnoOMw+3R2xNJdMNnzMlTN8PPC6wdp6dybEmDYXYTxwnYPJQ=="),
            "{last}"
        );
        s.verify_server_final(
            b"v=ZQnYEgWQMFmmsM8aQMF0nDDCy/AgCzkwk8CmMZYcMg0vSVlKDanekLtifDSeVGT4+5ZxXnJq199RVG2rR7N7Zw==",
        )
        .unwrap();
    }

    #[test]
    fn a_server_nonce_that_does_not_extend_the_clients_or_a_server_error_is_refused() {
        let mut s = exchange(ScramHash::Sha256);
        let e = s
            .client_final(b"r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .unwrap_err();
        assert!(e.0.contains("nonce"), "{e:?}");
        let e = s.client_final(b"e=invalid-proof").unwrap_err();
        assert!(e.0.contains("invalid-proof"), "{e:?}");
        let e = s
            .client_final(b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0")
            .unwrap_err();
        assert!(e.0.contains("iteration"), "{e:?}");
        assert!(!format!("{s:?}").contains("pencil"));
    }

    #[test]
    fn usernames_are_escaped_and_plain_and_oauthbearer_messages_have_their_rfc_shape() {
        let s = Scram::new(
            ScramHash::Sha256,
            "a=b,c",
            &Secret::new("p"),
            "n0nce".into(),
        );
        assert_eq!(s.client_first(), b"n,,n=a=3Db=2Cc,r=n0nce");
        assert_eq!(plain("alice", &Secret::new("pw")), b"\0alice\0pw");
        assert_eq!(
            oauthbearer(&Secret::new("tok")),
            b"n,,\x01auth=Bearer tok\x01\x01"
        );
        let n1 = Scram::random_nonce().unwrap();
        let n2 = Scram::random_nonce().unwrap();
        assert_ne!(n1, n2);
        assert!(!n1.contains(','));
    }
}
