//! `wharf_app::tokens::Tokens::verify` on arbitrary text.
//!
//! Input: one byte that picks the verifier (HS256 with a fixed secret; HS256 that also
//! requires an issuer and an audience; EdDSA; ES256, the last two with fixed public keys
//! whose private halves were thrown away), then the token (lossy UTF-8).
//!
//! Invariants: never panics; a token is accepted only if its signature verifies with the
//! key on its own (so never one the fuzzer made up, but the committed seed signed with the
//! fixed secret is) and it has not expired.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey};
use libfuzzer_sys::fuzz_target;
use wharf_app::tokens::{JwtAlgorithm, TokenConfig, Tokens};

/// The HS256 secret the committed seed tokens are signed with.
const SECRET: &[u8] = b"wharf-fuzz-secret-0123456789abcdef";

const ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA0+vNLaA/BW7LeDNR27LNIZx2e//4UBfGi+NZcBMPhm4=
-----END PUBLIC KEY-----
";

const P256_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEwgLT5XlRLDNW4LrLN01Nt1wIyiPN
kZxCiqKixTzV/SxvxCvT2u4XrjGRCeQCtSloz4LYOgog+e36nhuxxuWOVw==
-----END PUBLIC KEY-----
";

struct Verifier {
    tokens: Tokens,
    key: DecodingKey,
    algorithm: Algorithm,
}

fn verifiers() -> &'static [Verifier; 4] {
    static VERIFIERS: OnceLock<[Verifier; 4]> = OnceLock::new();
    VERIFIERS.get_or_init(|| {
        let hs256 = TokenConfig::default();
        let mut strict = TokenConfig::default();
        strict.issuer = Some("wharf".into());
        strict.audience = Some("fuzz".into());
        let hmac = || DecodingKey::from_secret(SECRET);
        [
            Verifier {
                tokens: Tokens::new(&hs256, Some(SECRET)).expect("HS256 verifier"),
                key: hmac(),
                algorithm: Algorithm::HS256,
            },
            Verifier {
                tokens: Tokens::new(&strict, Some(SECRET)).expect("strict HS256 verifier"),
                key: hmac(),
                algorithm: Algorithm::HS256,
            },
            public_key_verifier(JwtAlgorithm::EdDsa, ED25519_PUBLIC),
            public_key_verifier(JwtAlgorithm::Es256, P256_PUBLIC),
        ]
    })
}

/// `Tokens` only reads public keys from files: write it once per process.
fn public_key_verifier(algorithm: JwtAlgorithm, pem: &str) -> Verifier {
    let path: PathBuf = std::env::temp_dir().join(format!(
        "wharf-fuzz-{}-{}.pem",
        std::process::id(),
        algorithm.as_str()
    ));
    std::fs::write(&path, pem).expect("write the public key");
    let mut config = TokenConfig::default();
    config.algorithm = algorithm;
    config.public_key_file = Some(path.clone());
    let tokens = Tokens::new(&config, None).expect("public-key verifier");
    let _ = std::fs::remove_file(&path);
    let (key, jwt) = match algorithm {
        JwtAlgorithm::EdDsa => (DecodingKey::from_ed_pem(pem.as_bytes()), Algorithm::EdDSA),
        _ => (DecodingKey::from_ec_pem(pem.as_bytes()), Algorithm::ES256),
    };
    Verifier {
        tokens,
        key: key.expect("public key"),
        algorithm: jwt,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, token)) = data.split_first() else {
        return;
    };
    let verifier = &verifiers()[usize::from(pick % 4)];
    let token = String::from_utf8_lossy(token);
    let Ok(claims) = verifier.tokens.verify(&token) else {
        return;
    };
    let (message, signature) = token.rsplit_once('.').expect("an accepted token has dots");
    let signed = jsonwebtoken::crypto::verify(
        signature,
        message.as_bytes(),
        &verifier.key,
        verifier.algorithm,
    );
    assert_eq!(
        signed.ok(),
        Some(true),
        "accepted a token with a bad signature"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    assert!(
        claims.exp.saturating_add(30) >= now,
        "accepted an expired token"
    );
});
