//! JWT issuing and verification, and the HS256 secret file.
//!
//! Asymmetric keys are real PEM files made with `openssl genpkey` (kept in
//! `tests/keys/`, test use only).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use wharf_app::tokens::{
    Claims, JwtAlgorithm, MAX_TOKEN_LEN, SECRET_FILE, SecretError, SecretSource, TokenConfig,
    TokenError, Tokens, resolve_secret,
};
use wharf_app::users::User;

const SECRET: &[u8] = b"test secret, 32 bytes or longer!!";

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs(),
    )
    .expect("time fits i64")
}

fn key(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn hs256() -> Tokens {
    Tokens::new(&TokenConfig::default(), Some(SECRET)).expect("HS256 tokens")
}

fn asymmetric_config(alg: JwtAlgorithm, prefix: &str, with_private: bool) -> TokenConfig {
    let mut config = TokenConfig::default();
    config.algorithm = alg;
    config.public_key_file = Some(key(&format!("{prefix}-public.pem")));
    if with_private {
        config.private_key_file = Some(key(&format!("{prefix}-private.pem")));
    }
    config
}

fn b64(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("JSON"))
}

/// A token with any header and claims, signed by HMAC-SHA256 with `SECRET`
/// through the library (so only what we change is wrong).
fn hs256_raw(claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .expect("encode")
}

fn assert_err(result: Result<Claims, TokenError>, expected: &str) -> TokenError {
    match result {
        Err(e) => {
            assert_eq!(e.code(), expected, "got {e:?} ({e})");
            e
        }
        Ok(claims) => panic!("expected {expected}, token verified: {claims:?}"),
    }
}

// ------------------------------------------------------------- round trips

#[test]
fn hs256_round_trip() {
    let tokens = hs256();
    assert_eq!(tokens.algorithm(), JwtAlgorithm::Hs256);
    assert!(tokens.can_issue());
    let before = now();
    let (token, exp) = tokens.issue((42, "alice", true)).expect("issue");
    let after = now();
    assert!((before + 3600..=after + 3600).contains(&exp), "exp {exp}");

    let claims = tokens.verify(&token).expect("verify");
    assert_eq!(claims.sub, "42");
    assert_eq!(claims.uid, 42);
    assert_eq!(claims.data.uid, 42);
    assert_eq!(claims.account, "alice");
    assert!(claims.admin);
    assert_eq!(claims.exp, exp);
    assert!((before..=after).contains(&claims.iat));

    // The header says HS256/JWT and the payload carries the seed's data.uid.
    let mut parts = token.split('.');
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(parts.next().expect("header"))
            .expect("base64"),
    )
    .expect("JSON");
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["typ"], "JWT");
    let payload: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(parts.next().expect("payload"))
            .expect("base64"),
    )
    .expect("JSON");
    assert_eq!(payload["data"]["uid"], 42);
}

#[test]
fn issue_for_a_stored_user() {
    let tokens = hs256();
    let user = User {
        id: 9,
        account: "bob".into(),
        created_at: 0,
    };
    let (token, _) = tokens.issue(&user).expect("issue");
    let claims = tokens.verify(&token).expect("verify");
    assert_eq!(
        (claims.uid, claims.account.as_str(), claims.admin),
        (9, "bob", false)
    );
}

fn asymmetric_round_trip(alg: JwtAlgorithm, prefix: &str) {
    let tokens = Tokens::new(&asymmetric_config(alg, prefix, true), None).expect("tokens");
    assert_eq!(tokens.algorithm(), alg);
    let (token, exp) = tokens.issue((7, "carol", false)).expect("issue");
    let claims = tokens.verify(&token).expect("verify");
    assert_eq!(
        (claims.uid, claims.account.as_str(), claims.exp),
        (7, "carol", exp)
    );

    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().expect("header"))
            .expect("base64"),
    )
    .expect("JSON");
    assert_eq!(header["alg"], alg.as_str());

    // A node with only the public key verifies but cannot issue.
    let verifier = Tokens::new(&asymmetric_config(alg, prefix, false), None).expect("verifier");
    assert!(!verifier.can_issue());
    assert_eq!(verifier.verify(&token).expect("verify").uid, 7);
    assert_eq!(
        verifier.issue((1, "x", false)).expect_err("no private key"),
        TokenError::CannotSign
    );
    assert_eq!(TokenError::CannotSign.code(), "token_cannot_sign");

    // A tampered payload fails the signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = b64(
        &json!({"sub": "1", "uid": 1, "account": "mallory", "admin": true,
        "iat": now(), "exp": now() + 3600, "data": {"uid": 1}}),
    );
    assert_err(verifier.verify(&parts.join(".")), "token_invalid_signature");

    // An HS256 token is refused by an asymmetric node (no key confusion).
    assert_err(
        verifier.verify(&hs256().issue((1, "x", false)).expect("issue").0),
        "token_wrong_algorithm",
    );
}

#[test]
fn rs256_round_trip() {
    asymmetric_round_trip(JwtAlgorithm::Rs256, "rs256");
}

#[test]
fn es256_round_trip() {
    asymmetric_round_trip(JwtAlgorithm::Es256, "es256");
}

#[test]
fn eddsa_round_trip() {
    asymmetric_round_trip(JwtAlgorithm::EdDsa, "eddsa");
}

#[test]
fn key_setup_errors() {
    // Halves of two different key pairs.
    let mut config = asymmetric_config(JwtAlgorithm::EdDsa, "eddsa", true);
    config.public_key_file = Some(key("eddsa-other-public.pem"));
    assert!(matches!(
        Tokens::new(&config, None),
        Err(SecretError::KeyMismatch)
    ));

    // No public key.
    let mut config = TokenConfig::default();
    config.algorithm = JwtAlgorithm::Rs256;
    assert!(matches!(
        Tokens::new(&config, None),
        Err(SecretError::MissingKeyFile {
            field: "public_key_file",
            ..
        })
    ));

    // A key of the wrong type (Ed25519 key for ES256).
    let config = {
        let mut c = asymmetric_config(JwtAlgorithm::Es256, "eddsa", false);
        c.algorithm = JwtAlgorithm::Es256;
        c
    };
    assert!(matches!(
        Tokens::new(&config, None),
        Err(SecretError::InvalidKey { .. }) | Err(SecretError::Config(_))
    ));

    // A missing file.
    let mut config = asymmetric_config(JwtAlgorithm::Rs256, "rs256", false);
    config.public_key_file = Some(key("no-such-file.pem"));
    assert!(matches!(
        Tokens::new(&config, None),
        Err(SecretError::Io { .. })
    ));

    // HS256 without a secret, or with key files.
    assert!(matches!(
        Tokens::new(&TokenConfig::default(), None),
        Err(SecretError::MissingSecret)
    ));
    let mut config = TokenConfig::default();
    config.public_key_file = Some(key("rs256-public.pem"));
    assert!(matches!(
        Tokens::new(&config, Some(SECRET)),
        Err(SecretError::Config(_))
    ));
}

// ------------------------------------------------------------- rejections

#[test]
fn expired() {
    let tokens = hs256();
    let t = now();
    // Expired two minutes ago: beyond the 30 s leeway.
    let token = tokens
        .sign(&Claims::new((1, "a", false), t - 3600, t - 120))
        .expect("sign");
    let e = assert_err(tokens.verify(&token), "token_expired");
    assert_eq!(e, TokenError::Expired);
    // Expired 5 s ago: within the leeway.
    let token = tokens
        .sign(&Claims::new((1, "a", false), t - 3600, t - 5))
        .expect("sign");
    tokens.verify(&token).expect("within leeway");
    // With no leeway it is refused.
    let mut config = TokenConfig::default();
    config.leeway_secs = 0;
    let strict = Tokens::new(&config, Some(SECRET)).expect("tokens");
    assert_err(strict.verify(&token), "token_expired");
}

#[test]
fn not_yet_valid() {
    let tokens = hs256();
    let t = now();
    let mut claims = Claims::new((1, "a", false), t, t + 3600);
    claims.nbf = Some(t + 300);
    let e = assert_err(
        tokens.verify(&tokens.sign(&claims).expect("sign")),
        "token_not_yet_valid",
    );
    assert_eq!(e, TokenError::NotYetValid);
    // nbf 10 s ahead (a skewed clock) is within the 30 s leeway.
    claims.nbf = Some(t + 10);
    let verified = tokens
        .verify(&tokens.sign(&claims).expect("sign"))
        .expect("within leeway");
    assert_eq!(verified.nbf, Some(t + 10));
}

#[test]
fn missing_exp() {
    let token = hs256_raw(&json!({"sub": "1", "uid": 1, "account": "a", "iat": now()}));
    let e = assert_err(hs256().verify(&token), "token_missing_claim");
    assert_eq!(e, TokenError::MissingClaim("exp".into()));
}

#[test]
fn wrong_signature() {
    let other = Tokens::new(
        &TokenConfig::default(),
        Some(b"another secret, also 32 bytes long"),
    )
    .expect("tokens");
    let (token, _) = other.issue((1, "a", false)).expect("issue");
    let e = assert_err(hs256().verify(&token), "token_invalid_signature");
    assert_eq!(e, TokenError::InvalidSignature);

    // Our own token with one signature character changed.
    let (token, _) = hs256().issue((1, "a", false)).expect("issue");
    let (rest, sig) = token.rsplit_once('.').expect("three parts");
    let flipped = if sig.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{rest}.{flipped}{}", &sig[1..]);
    assert_err(hs256().verify(&forged), "token_invalid_signature");
    // No signature at all.
    assert_err(
        hs256().verify(&format!("{rest}.")),
        "token_invalid_signature",
    );
}

#[test]
fn alg_none_is_refused() {
    let header = b64(&json!({"alg": "none", "typ": "JWT"}));
    let payload = b64(
        &json!({"sub": "1", "uid": 1, "account": "root", "admin": true,
        "iat": now(), "exp": now() + 3600, "data": {"uid": 1}}),
    );
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}.c2ln"),
    ] {
        let e = assert_err(hs256().verify(&token), "token_wrong_algorithm");
        match e {
            TokenError::WrongAlgorithm { found, expected } => {
                assert_eq!(found, "none");
                assert_eq!(expected, JwtAlgorithm::Hs256);
            }
            other => panic!("{other:?}"),
        }
    }
    // Case games do not help either.
    let header = b64(&json!({"alg": "None"}));
    assert_err(
        hs256().verify(&format!("{header}.{payload}.")),
        "token_wrong_algorithm",
    );
}

#[test]
fn other_algorithm_is_refused() {
    let claims = json!({"sub": "1", "uid": 1, "account": "a", "iat": now(), "exp": now() + 3600,
        "data": {"uid": 1}});
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let token = jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("encode");
        match assert_err(hs256().verify(&token), "token_wrong_algorithm") {
            TokenError::WrongAlgorithm { found, .. } => assert_eq!(found, format!("{alg:?}")),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn garbage_is_malformed() {
    let tokens = hs256();
    let valid_header = b64(&json!({"alg": "HS256", "typ": "JWT"}));
    for garbage in [
        String::new(),
        "garbage".to_owned(),
        "a.b".to_owned(),
        "a.b.c.d".to_owned(),
        "...".to_owned(),
        "!!!.???.***".to_owned(),
        format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(b"not json")),
        format!("{valid_header}.!!!.sig"),
        format!("{valid_header}.{}.", URL_SAFE_NO_PAD.encode(b"[1,2")),
        "Bearer abc.def.ghi".to_owned(),
    ] {
        let e = assert_err(tokens.verify(&garbage), "token_malformed");
        assert!(matches!(e, TokenError::Malformed(_)), "{garbage:?}: {e:?}");
    }
    // Well signed, but the claims have the wrong types.
    let token = hs256_raw(&json!({"uid": "one", "exp": now() + 60}));
    assert_err(tokens.verify(&token), "token_malformed");
    let token = hs256_raw(&json!({"uid": 1, "exp": "later"}));
    assert_err(tokens.verify(&token), "token_malformed");
}

#[test]
fn oversized_is_refused_before_parsing() {
    let tokens = hs256();
    let huge = "a".repeat(MAX_TOKEN_LEN + 1);
    match assert_err(tokens.verify(&huge), "token_too_large") {
        TokenError::TooLarge { len } => assert_eq!(len, MAX_TOKEN_LEN + 1),
        other => panic!("{other:?}"),
    }
    // A real, validly signed token that is too big is refused too.
    let t = now();
    let mut claims = Claims::new((1, "a".repeat(9000).as_str(), false), t, t + 60);
    claims.iss = None;
    let big = tokens.sign(&claims).expect("sign");
    assert!(big.len() > MAX_TOKEN_LEN);
    assert_err(tokens.verify(&big), "token_too_large");
}

#[test]
fn seed_shaped_claims() {
    // The seed's tokens carry only data.uid (and exp).
    let token = hs256_raw(&json!({"exp": now() + 60, "data": {"uid": 12}}));
    let claims = hs256().verify(&token).expect("verify");
    assert_eq!(
        (claims.uid, claims.data.uid, claims.sub.as_str()),
        (12, 12, "12")
    );
    assert_eq!(claims.account, "");
    assert!(!claims.admin);
    // Without any user id the token is refused.
    let token = hs256_raw(&json!({"exp": now() + 60, "data": {}}));
    assert_err(hs256().verify(&token), "token_missing_claim");
}

#[test]
fn issuer_and_audience() {
    let mut config = TokenConfig::default();
    config.issuer = Some("wharf-test".into());
    config.audience = Some("ws".into());
    let tokens = Tokens::new(&config, Some(SECRET)).expect("tokens");
    let (token, _) = tokens.issue((3, "dan", false)).expect("issue");
    let claims = tokens.verify(&token).expect("verify");
    assert_eq!(claims.iss.as_deref(), Some("wharf-test"));
    assert_eq!(claims.aud.as_deref(), Some("ws"));

    // A plain token (no iss/aud) is refused by the strict node...
    let (plain, _) = hs256().issue((3, "dan", false)).expect("issue");
    assert_err(tokens.verify(&plain), "token_missing_claim");
    // ... and a token with an audience is refused by a node without one.
    assert_err(hs256().verify(&token), "token_invalid_audience");

    let t = now();
    let mut claims = Claims::new((3, "dan", false), t, t + 60);
    claims.aud = Some("ws".into());
    claims.iss = Some("someone-else".into());
    assert_err(
        tokens.verify(&tokens.sign(&claims).expect("sign")),
        "token_invalid_issuer",
    );
    claims.iss = Some("wharf-test".into());
    claims.aud = Some("http".into());
    assert_err(
        tokens.verify(&tokens.sign(&claims).expect("sign")),
        "token_invalid_audience",
    );
}

#[test]
fn error_codes_are_stable() {
    let cases = [
        (TokenError::Missing, "token_missing"),
        (TokenError::TooLarge { len: 1 }, "token_too_large"),
        (TokenError::Malformed(String::new()), "token_malformed"),
        (
            TokenError::WrongAlgorithm {
                found: "none".into(),
                expected: JwtAlgorithm::Hs256,
            },
            "token_wrong_algorithm",
        ),
        (TokenError::InvalidSignature, "token_invalid_signature"),
        (TokenError::Expired, "token_expired"),
        (TokenError::NotYetValid, "token_not_yet_valid"),
        (
            TokenError::MissingClaim("exp".into()),
            "token_missing_claim",
        ),
        (TokenError::InvalidIssuer, "token_invalid_issuer"),
        (TokenError::InvalidAudience, "token_invalid_audience"),
        (TokenError::CannotSign, "token_cannot_sign"),
        (TokenError::Internal(String::new()), "token_internal"),
    ];
    for (error, code) in cases {
        assert_eq!(error.code(), code);
        assert!(!error.to_string().is_empty());
    }
    assert!(TokenError::Expired.is_client_error());
    assert!(!TokenError::Internal(String::new()).is_client_error());
}

// ------------------------------------------------------------------ config

#[test]
fn config_from_toml() {
    #[derive(serde::Deserialize)]
    struct File {
        jwt: TokenConfig,
    }
    let empty: File = toml::from_str("[jwt]\n").expect("empty table");
    assert_eq!(empty.jwt, TokenConfig::default());
    assert_eq!(empty.jwt.algorithm, JwtAlgorithm::Hs256);
    assert_eq!(empty.jwt.ttl_secs, 3600);
    assert_eq!(empty.jwt.leeway_secs, 30);
    assert_eq!(empty.jwt.secret, None);

    let full: File = toml::from_str(
        r#"
        [jwt]
        algorithm = "EdDSA"
        private_key_file = "keys/private.pem"
        public_key_file = "keys/public.pem"
        ttl_secs = 60
        leeway_secs = 5
        issuer = "me"
        audience = "you"
        "#,
    )
    .expect("full table");
    assert_eq!(full.jwt.algorithm, JwtAlgorithm::EdDsa);
    assert_eq!(
        full.jwt.public_key_file,
        Some(PathBuf::from("keys/public.pem"))
    );
    assert_eq!((full.jwt.ttl_secs, full.jwt.leeway_secs), (60, 5));
    assert_eq!(full.jwt.issuer.as_deref(), Some("me"));

    let with_secret: File = toml::from_str("[jwt]\nsecret = \"hunter2hunter2\"\n").expect("secret");
    assert!(!format!("{:?}", with_secret.jwt).contains("hunter2"));

    assert!(toml::from_str::<File>("[jwt]\nalgorithm = \"HS384\"\n").is_err());
    assert_eq!(
        "eddsa".parse::<JwtAlgorithm>().expect("parse"),
        JwtAlgorithm::EdDsa
    );
    assert!("none".parse::<JwtAlgorithm>().is_err());
}

// ------------------------------------------------------------------ secret

#[test]
fn secret_file_generated_once_with_mode_0600() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let (first, source) = resolve_secret(None, &data_dir).expect("generate");
    let path = data_dir.join(SECRET_FILE);
    assert_eq!(source, SecretSource::Generated(path.clone()));
    assert_eq!(first.len(), 64, "32 random bytes as hex");
    assert!(first.iter().all(u8::is_ascii_hexdigit));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");
    }
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(&data_dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(SECRET_FILE)]);

    let (second, source) = resolve_secret(None, &data_dir).expect("load");
    assert_eq!(source, SecretSource::Loaded(path.clone()));
    assert_eq!(second, first);

    // Tokens from the first start verify after a restart.
    let t1 = Tokens::new(&TokenConfig::default(), Some(&first)).expect("tokens");
    let t2 = Tokens::new(&TokenConfig::default(), Some(&second)).expect("tokens");
    let (token, _) = t1.issue((1, "a", false)).expect("issue");
    t2.verify(&token).expect("verify after restart");

    // The file's text is the key: JWT_SECRET=$(cat jwt.secret) gives the same key.
    let text = std::fs::read_to_string(&path).expect("read");
    let (configured, _) = resolve_secret(Some(text.trim()), &data_dir).expect("configured");
    assert_eq!(configured, first);
}

#[test]
fn configured_secret_wins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (secret, source) = resolve_secret(Some("from-the-config"), dir.path()).expect("resolve");
    assert_eq!(secret, b"from-the-config");
    assert_eq!(source, SecretSource::Configured);
    assert!(
        !dir.path().join(SECRET_FILE).exists(),
        "file must not be touched"
    );

    // Even when a file exists, the configured secret wins and the file stays as it was.
    let (generated, _) = resolve_secret(None, dir.path()).expect("generate");
    let (secret, source) = resolve_secret(Some("from-the-env"), dir.path()).expect("resolve");
    assert_eq!(
        (secret.as_slice(), source),
        (&b"from-the-env"[..], SecretSource::Configured)
    );
    let (again, _) = resolve_secret(None, dir.path()).expect("load");
    assert_eq!(again, generated);

    assert!(matches!(
        resolve_secret(Some(""), dir.path()),
        Err(SecretError::EmptySecret)
    ));
}

#[test]
fn weak_secret_file_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join(SECRET_FILE), "short\n").expect("write");
    assert!(matches!(
        resolve_secret(None, dir.path()),
        Err(SecretError::WeakSecretFile { .. })
    ));
}

#[test]
fn from_config_resolves_the_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = TokenConfig::default();
    let (tokens, source) = Tokens::from_config(&config, None, dir.path()).expect("generated");
    assert!(matches!(source, Some(SecretSource::Generated(_))));
    let (token, _) = tokens.issue((1, "a", false)).expect("issue");
    let (reloaded, source) = Tokens::from_config(&config, None, dir.path()).expect("loaded");
    assert!(matches!(source, Some(SecretSource::Loaded(_))));
    reloaded.verify(&token).expect("same secret");

    // The caller's secret (JWT_SECRET) beats the config's, which beats the file.
    let mut config = TokenConfig::default();
    config.secret = Some("config-secret".into());
    let (from_config, source) = Tokens::from_config(&config, None, dir.path()).expect("config");
    assert_eq!(source, Some(SecretSource::Configured));
    assert_err(from_config.verify(&token), "token_invalid_signature");
    let (from_env, _) = Tokens::from_config(&config, Some("env-secret"), dir.path()).expect("env");
    let (env_token, _) = from_env.issue((1, "a", false)).expect("issue");
    assert_err(from_config.verify(&env_token), "token_invalid_signature");
    let env_only = Tokens::new(&TokenConfig::default(), Some(b"env-secret")).expect("tokens");
    env_only.verify(&env_token).expect("env secret used");

    // Key-file algorithms never create a secret file.
    let empty = tempfile::tempdir().expect("temp dir");
    let config = asymmetric_config(JwtAlgorithm::Es256, "es256", true);
    let (_, source) = Tokens::from_config(&config, None, empty.path()).expect("es256");
    assert_eq!(source, None);
    assert!(!empty.path().join(SECRET_FILE).exists());
}
