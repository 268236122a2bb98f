//! JSON Web Tokens: issuing at login, verifying at the WebSocket handshake.
//!
//! HS256 with a shared secret by default (see [`resolve_secret`]); RS256,
//! ES256 or EdDSA with PEM key files as options. Verification pins the one
//! configured algorithm (`alg: none` and every other algorithm are refused
//! before any cryptography runs), requires `exp`, honours `nbf` with the
//! configured leeway, checks `iss`/`aud` when configured, and refuses tokens
//! over 8 KiB before parsing them.
//!
//! ```
//! use wharf_app::tokens::{TokenConfig, Tokens};
//! let tokens = Tokens::new(&TokenConfig::default(), Some(b"a secret of at least 32 bytes....")).unwrap();
//! let (token, _exp) = tokens.issue((7, "alice", false)).unwrap();
//! let claims = tokens.verify(&token).unwrap();
//! assert_eq!((claims.uid, claims.data.uid, claims.account.as_str()), (7, 7, "alice"));
//! ```

mod secret;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub use self::secret::{
    GENERATED_SECRET_BYTES, SECRET_FILE, SecretError, SecretSource, resolve_secret,
};
use crate::users::User;

/// Tokens longer than this many bytes are refused before parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// A signing algorithm wharf supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 and a shared secret.
    #[default]
    #[serde(rename = "HS256", alias = "hs256")]
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RSA key pair).
    #[serde(rename = "RS256", alias = "rs256")]
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    #[serde(rename = "ES256", alias = "es256")]
    Es256,
    /// Ed25519.
    #[serde(rename = "EdDSA", alias = "eddsa", alias = "EDDSA")]
    EdDsa,
}

impl JwtAlgorithm {
    /// The JOSE name, as in a token header's `alg` (`"HS256"`, `"EdDSA"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Es256 => "ES256",
            JwtAlgorithm::EdDsa => "EdDSA",
        }
    }

    /// Whether this algorithm uses a shared secret (rather than key files).
    pub fn is_symmetric(self) -> bool {
        matches!(self, JwtAlgorithm::Hs256)
    }

    fn jwt(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Es256 => Algorithm::ES256,
            JwtAlgorithm::EdDsa => Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JwtAlgorithm {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            JwtAlgorithm::Hs256,
            JwtAlgorithm::Rs256,
            JwtAlgorithm::Es256,
            JwtAlgorithm::EdDsa,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            SecretError::Config(format!(
                "unknown algorithm {s:?}: expected HS256, RS256, ES256 or EdDSA"
            ))
        })
    }
}

/// The `[jwt]` table of the configuration file.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TokenConfig {
    /// Signing algorithm: `"HS256"` (shared secret), `"RS256"`, `"ES256"` or
    /// `"EdDSA"` (key files). Default: `"HS256"`.
    pub algorithm: JwtAlgorithm,
    /// HS256 shared secret; `JWT_SECRET` in the environment may override it.
    /// Without either, one is generated into `<data_dir>/jwt.secret`. Default: none.
    pub secret: Option<String>,
    /// PEM private key to sign RS256/ES256/EdDSA tokens: PKCS#8 (`BEGIN PRIVATE
    /// KEY`, as `openssl genpkey` writes it; RSA also takes PKCS#1; convert a
    /// SEC1 `BEGIN EC PRIVATE KEY` with `openssl pkcs8 -topk8 -nocrypt`).
    /// Without it this node verifies but cannot issue. Default: none.
    pub private_key_file: Option<PathBuf>,
    /// PEM public key (SubjectPublicKeyInfo) to verify RS256/ES256/EdDSA
    /// tokens; required for those algorithms. Default: none.
    pub public_key_file: Option<PathBuf>,
    /// Lifetime of issued tokens, in seconds. Default: 3600.
    pub ttl_secs: u64,
    /// Clock skew tolerated when checking `exp` and `nbf`, in seconds. Default: 30.
    pub leeway_secs: u64,
    /// Put into `iss` of issued tokens and required in verified ones. Default:
    /// none (`iss` not checked).
    pub issuer: Option<String>,
    /// Put into `aud` of issued tokens and required in verified ones. Default:
    /// none (tokens that carry an `aud` are refused).
    pub audience: Option<String>,
    /// The `rooms` claim of tokens issued at login: room patterns their holder may
    /// subscribe to over the rooms protocol (docs/protocol.md, "Permissions"); `*` is any
    /// run of characters, `{uid}` the user's id. Default: `["demo:*", "user:{uid}"]`.
    pub rooms: Vec<String>,
    /// The `publish` claim of tokens issued at login: room patterns their holder may
    /// publish to. Default: `["demo:*"]`.
    pub publish: Vec<String>,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            algorithm: JwtAlgorithm::Hs256,
            secret: None,
            private_key_file: None,
            public_key_file: None,
            ttl_secs: 3600,
            leeway_secs: 30,
            issuer: None,
            audience: None,
            rooms: vec!["demo:*".to_owned(), "user:{uid}".to_owned()],
            publish: vec!["demo:*".to_owned()],
        }
    }
}

impl fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenConfig")
            .field("algorithm", &self.algorithm)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("private_key_file", &self.private_key_file)
            .field("public_key_file", &self.public_key_file)
            .field("ttl_secs", &self.ttl_secs)
            .field("leeway_secs", &self.leeway_secs)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("rooms", &self.rooms)
            .field("publish", &self.publish)
            .finish()
    }
}

/// The seed's claim shape: it reads `$jwt['data']['uid']`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClaimsData {
    /// The user id (same as [`Claims::uid`]).
    pub uid: i64,
}

/// The claims wharf issues and accepts.
///
/// Verification is lenient about who issued the token: `uid` falls back to
/// `data.uid` and then to a numeric `sub`; `sub` defaults to the uid as text,
/// `account` to `""` (look it up with
/// [`UserStore::account_by_id`](crate::users::UserStore::account_by_id)),
/// `iat` to 0. `exp` is always required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: the user id as a string.
    pub sub: String,
    /// The user id.
    pub uid: i64,
    /// The account name.
    pub account: String,
    /// Whether the holder may use the admin endpoints.
    #[serde(default)]
    pub admin: bool,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    /// Not valid before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The seed's shape: `data.uid`.
    pub data: ClaimsData,
    /// Room patterns the holder may subscribe to (see [`Grants`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rooms: Vec<String>,
    /// Room patterns the holder may publish to (see [`Grants`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
}

/// What a token lets its holder do with rooms over the rooms protocol: the `rooms` and
/// `publish` claims, each a list of room patterns (`*` for any run of characters, `{uid}`
/// for the holder's user id). See docs/protocol.md, "Permissions".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Patterns of the rooms it may subscribe to (and read the history and presence of).
    pub rooms: Vec<String>,
    /// Patterns of the rooms it may publish to.
    pub publish: Vec<String>,
}

impl Claims {
    /// Claims for `subject`, issued at `iat`, expiring at `exp` (Unix seconds).
    pub fn new(subject: impl Into<Subject>, iat: i64, exp: i64) -> Claims {
        let Subject {
            uid,
            account,
            admin,
        } = subject.into();
        Claims {
            sub: uid.to_string(),
            uid,
            account,
            admin,
            iat,
            exp,
            nbf: None,
            iss: None,
            aud: None,
            data: ClaimsData { uid },
            rooms: Vec::new(),
            publish: Vec::new(),
        }
    }

    /// The same claims with `grants` as their `rooms` and `publish` claims.
    pub fn with_grants(mut self, grants: Grants) -> Claims {
        self.rooms = grants.rooms;
        self.publish = grants.publish;
        self
    }
}

/// Whom a token is issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// User id.
    pub uid: i64,
    /// Account name.
    pub account: String,
    /// Admin rights.
    pub admin: bool,
}

impl From<&User> for Subject {
    /// A stored user, without admin rights.
    fn from(user: &User) -> Self {
        Subject {
            uid: user.id,
            account: user.account.clone(),
            admin: false,
        }
    }
}

impl From<(i64, &str, bool)> for Subject {
    fn from((uid, account, admin): (i64, &str, bool)) -> Self {
        Subject {
            uid,
            account: account.to_owned(),
            admin,
        }
    }
}

impl From<(i64, String, bool)> for Subject {
    fn from((uid, account, admin): (i64, String, bool)) -> Self {
        Subject {
            uid,
            account,
            admin,
        }
    }
}

/// Why a token was not issued or not accepted. [`TokenError::code`] gives a
/// stable machine code for JSON error bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The request carried no token (never returned by [`Tokens::verify`];
    /// for callers). Caller: answer 401.
    #[error("no token")]
    Missing,
    /// The token is longer than 8 KiB. Caller: answer 401 (or 431); do not log the token.
    #[error("token too large ({len} bytes, at most {MAX_TOKEN_LEN})")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
    },
    /// Not a JWT: wrong shape, bad base64, bad JSON, claims of the wrong type.
    /// Caller: answer 401.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header names another algorithm than the configured one (including `none`).
    /// Caller: answer 401; the client uses a token from another issuer.
    #[error("token algorithm {found:?} is not the configured {expected}")]
    WrongAlgorithm {
        /// The header's `alg`.
        found: String,
        /// The configured algorithm.
        expected: JwtAlgorithm,
    },
    /// The signature does not match. Caller: answer 401.
    #[error("invalid token signature")]
    InvalidSignature,
    /// `exp` is past (beyond the leeway). Caller: answer 401; the client logs in again.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway). Caller: answer 401; check clocks.
    #[error("token not valid yet")]
    NotYetValid,
    /// A required claim is absent (`exp`, `uid`, or configured `iss`/`aud`).
    /// Caller: answer 401.
    #[error("token lacks the {0:?} claim")]
    MissingClaim(String),
    /// `iss` is not the configured issuer. Caller: answer 401.
    #[error("token issuer not accepted")]
    InvalidIssuer,
    /// `aud` is not the configured audience (or present when none is configured).
    /// Caller: answer 401.
    #[error("token audience not accepted")]
    InvalidAudience,
    /// This node has no private key, so it cannot issue tokens.
    /// Caller: answer 503 / tell the operator to set `[jwt] private_key_file`.
    #[error("cannot issue tokens: no private key configured")]
    CannotSign,
    /// The crypto library failed unexpectedly. Caller: log it, answer 500.
    #[error("token processing failed: {0}")]
    Internal(String),
}

impl TokenError {
    /// Stable machine code, e.g. `"token_expired"`.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Missing => "token_missing",
            TokenError::TooLarge { .. } => "token_too_large",
            TokenError::Malformed(_) => "token_malformed",
            TokenError::WrongAlgorithm { .. } => "token_wrong_algorithm",
            TokenError::InvalidSignature => "token_invalid_signature",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::MissingClaim(_) => "token_missing_claim",
            TokenError::InvalidIssuer => "token_invalid_issuer",
            TokenError::InvalidAudience => "token_invalid_audience",
            TokenError::CannotSign => "token_cannot_sign",
            TokenError::Internal(_) => "token_internal",
        }
    }

    /// `true` when the client is at fault (answer 401), `false` for
    /// [`TokenError::CannotSign`] and [`TokenError::Internal`] (server side).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, TokenError::CannotSign | TokenError::Internal(_))
    }
}

/// Issues and verifies tokens with one configured algorithm and key.
#[derive(Clone)]
pub struct Tokens {
    algorithm: JwtAlgorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: u64,
    issuer: Option<String>,
    audience: Option<String>,
    grants: Grants,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("algorithm", &self.algorithm)
            .field("can_issue", &self.encoding.is_some())
            .field("ttl_secs", &self.ttl_secs)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Builds from `config`. HS256 uses `secret` (resolve it with
    /// [`resolve_secret`]); the other algorithms read the key files and ignore
    /// `secret`. A configured key pair is checked to match.
    pub fn new(config: &TokenConfig, secret: Option<&[u8]>) -> Result<Tokens, SecretError> {
        let alg = config.algorithm;
        let (encoding, decoding) = if alg.is_symmetric() {
            if config.private_key_file.is_some() || config.public_key_file.is_some() {
                return Err(SecretError::Config(format!(
                    "key files are set but algorithm is {alg}; set algorithm to RS256, ES256 or EdDSA, or remove them"
                )));
            }
            let secret = secret.ok_or(SecretError::MissingSecret)?;
            if secret.is_empty() {
                return Err(SecretError::EmptySecret);
            }
            (
                Some(EncodingKey::from_secret(secret)),
                DecodingKey::from_secret(secret),
            )
        } else {
            let public = config
                .public_key_file
                .as_deref()
                .ok_or(SecretError::MissingKeyFile {
                    algorithm: alg,
                    field: "public_key_file",
                })?;
            let decoding = load_key(public, alg, decoding_key)?;
            let encoding = match config.private_key_file.as_deref() {
                Some(private) => Some(load_key(private, alg, encoding_key)?),
                None => None,
            };
            (encoding, decoding)
        };
        if let Some(encoding) = &encoding {
            // Catches mismatched pairs and keys of the wrong curve at start-up.
            let probe = jsonwebtoken::crypto::sign(b"wharf key check", encoding, alg.jwt())
                .map_err(|e| SecretError::Config(format!("cannot sign with the {alg} key: {e}")))?;
            let ok = jsonwebtoken::crypto::verify(&probe, b"wharf key check", &decoding, alg.jwt())
                .map_err(|e| {
                    SecretError::Config(format!("cannot verify with the {alg} key: {e}"))
                })?;
            if !ok {
                return Err(SecretError::KeyMismatch);
            }
        }

        let mut validation = Validation::new(alg.jwt());
        validation.leeway = config.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        let mut required = vec!["exp"];
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        if let Some(aud) = &config.audience {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);

        Ok(Tokens {
            algorithm: alg,
            encoding,
            decoding,
            validation,
            ttl_secs: config.ttl_secs,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            grants: Grants {
                rooms: config.rooms.clone(),
                publish: config.publish.clone(),
            },
        })
    }

    /// Builds from `config`, resolving the HS256 secret first:
    /// `configured_secret` (e.g. `JWT_SECRET`) wins over `config.secret`, and
    /// without either the secret file in `data_dir` is used (see
    /// [`resolve_secret`]). Returns where the secret came from (`None` for
    /// key-file algorithms), so the caller can log a generated one.
    pub fn from_config(
        config: &TokenConfig,
        configured_secret: Option<&str>,
        data_dir: &Path,
    ) -> Result<(Tokens, Option<SecretSource>), SecretError> {
        if !config.algorithm.is_symmetric() {
            return Ok((Tokens::new(config, None)?, None));
        }
        let configured = configured_secret.or(config.secret.as_deref());
        let (secret, source) = resolve_secret(configured, data_dir)?;
        Ok((Tokens::new(config, Some(&secret))?, Some(source)))
    }

    /// The pinned algorithm.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.algorithm
    }

    /// Lifetime of issued tokens, in seconds.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// Whether this node can issue tokens (HS256, or a private key is configured).
    pub fn can_issue(&self) -> bool {
        self.encoding.is_some()
    }

    /// Issues a token for `subject` (a [`&User`](User) or `(uid, account, admin)`),
    /// valid from now for the configured lifetime, with the configured grants (`[jwt]
    /// rooms` and `publish`). Returns the token and its `exp` (Unix seconds).
    pub fn issue(&self, subject: impl Into<Subject>) -> Result<(String, i64), TokenError> {
        self.issue_with(subject, self.grants.clone())
    }

    /// As [`issue`](Self::issue), with `grants` instead of the configured ones.
    ///
    /// ```
    /// use wharf_app::tokens::{Grants, TokenConfig, Tokens};
    /// let tokens = Tokens::new(&TokenConfig::default(), Some(b"a secret of at least 32 bytes....")).unwrap();
    /// let grants = Grants { rooms: vec!["news".into()], publish: vec![] };
    /// let (token, _exp) = tokens.issue_with((7, "alice", false), grants).unwrap();
    /// assert_eq!(tokens.verify(&token).unwrap().rooms, ["news"]);
    /// ```
    pub fn issue_with(
        &self,
        subject: impl Into<Subject>,
        grants: Grants,
    ) -> Result<(String, i64), TokenError> {
        let now = unix_now();
        let exp = now.saturating_add(i64::try_from(self.ttl_secs).unwrap_or(i64::MAX));
        let mut claims = Claims::new(subject, now, exp).with_grants(grants);
        claims.iss.clone_from(&self.issuer);
        claims.aud.clone_from(&self.audience);
        Ok((self.sign(&claims)?, exp))
    }

    /// Signs arbitrary `claims` as they are (for tools and tests; use
    /// [`issue`](Self::issue) for logins).
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        let key = self.encoding.as_ref().ok_or(TokenError::CannotSign)?;
        jsonwebtoken::encode(&Header::new(self.algorithm.jwt()), claims, key)
            .map_err(|e| TokenError::Internal(e.to_string()))
    }

    /// Verifies `token` (the bare token, without `Bearer `) and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge { len: token.len() });
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed(
                "expected three dot-separated parts".into(),
            ));
        };
        // Pin the algorithm on the raw header, so that `none` and unknown
        // names are reported as what they are.
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|e| TokenError::Malformed(format!("header: {e}")))?;
        let header: HeaderProbe = serde_json::from_slice(&header)
            .map_err(|e| TokenError::Malformed(format!("header: {e}")))?;
        if header.alg != self.algorithm.as_str() {
            return Err(TokenError::WrongAlgorithm {
                found: header.alg,
                expected: self.algorithm,
            });
        }

        // Garbage is reported as such even though its signature is wrong too.
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|e| TokenError::Malformed(format!("payload: {e}")))?;
        let payload: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&payload)
            .map_err(|e| TokenError::Malformed(format!("payload: {e}")))?;
        for claim in ["exp", "nbf", "iat"] {
            if payload.get(claim).is_some_and(|v| !v.is_u64()) {
                return Err(TokenError::Malformed(format!(
                    "claim {claim:?} is not a non-negative integer"
                )));
            }
        }

        let data =
            jsonwebtoken::decode::<serde_json::Value>(token, &self.decoding, &self.validation)
                .map_err(|e| self.map_error(e))?;
        let raw: RawClaims = serde_json::from_value(data.claims)
            .map_err(|e| TokenError::Malformed(format!("claims: {e}")))?;
        raw.into_claims()
    }

    fn map_error(&self, e: jsonwebtoken::errors::Error) -> TokenError {
        match e.into_kind() {
            ErrorKind::InvalidSignature => TokenError::InvalidSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm {
                found: "?".into(),
                expected: self.algorithm,
            },
            ErrorKind::InvalidIssuer => TokenError::InvalidIssuer,
            ErrorKind::InvalidAudience => TokenError::InvalidAudience,
            ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim),
            ErrorKind::InvalidClaimFormat(claim) => {
                TokenError::Malformed(format!("claim {claim:?} has the wrong type"))
            }
            ErrorKind::InvalidToken => TokenError::Malformed("not a JWT".into()),
            ErrorKind::Base64(e) => TokenError::Malformed(format!("base64: {e}")),
            ErrorKind::Json(e) => TokenError::Malformed(format!("JSON: {e}")),
            ErrorKind::Utf8(e) => TokenError::Malformed(format!("UTF-8: {e}")),
            other => TokenError::Internal(format!("{other:?}")),
        }
    }
}

#[derive(Deserialize)]
struct HeaderProbe {
    alg: String,
}

#[derive(Deserialize)]
struct RawData {
    uid: Option<i64>,
}

/// What verification accepts before the fallbacks of [`Claims`] are applied.
#[derive(Deserialize)]
struct RawClaims {
    sub: Option<serde_json::Value>,
    uid: Option<i64>,
    account: Option<String>,
    #[serde(default)]
    admin: bool,
    iat: Option<i64>,
    exp: i64,
    nbf: Option<i64>,
    iss: Option<String>,
    aud: Option<serde_json::Value>,
    data: Option<RawData>,
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
}

impl RawClaims {
    fn into_claims(self) -> Result<Claims, TokenError> {
        let sub = match self.sub {
            None => None,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                return Err(TokenError::Malformed(
                    "claim \"sub\" has the wrong type".into(),
                ));
            }
        };
        let uid = self
            .uid
            .or(self.data.and_then(|d| d.uid))
            .or_else(|| sub.as_deref().and_then(|s| s.parse().ok()))
            .ok_or_else(|| TokenError::MissingClaim("uid".into()))?;
        let aud = match self.aud {
            Some(serde_json::Value::String(s)) => Some(s),
            Some(serde_json::Value::Array(items)) => items
                .into_iter()
                .find_map(|v| v.as_str().map(str::to_owned)),
            _ => None,
        };
        Ok(Claims {
            sub: sub.unwrap_or_else(|| uid.to_string()),
            uid,
            account: self.account.unwrap_or_default(),
            admin: self.admin,
            iat: self.iat.unwrap_or(0),
            exp: self.exp,
            nbf: self.nbf,
            iss: self.iss,
            aud,
            data: ClaimsData { uid },
            rooms: self.rooms,
            publish: self.publish,
        })
    }
}

fn encoding_key(pem: &[u8], alg: JwtAlgorithm) -> jsonwebtoken::errors::Result<EncodingKey> {
    match alg {
        JwtAlgorithm::Rs256 => EncodingKey::from_rsa_pem(pem),
        JwtAlgorithm::Es256 => EncodingKey::from_ec_pem(pem),
        JwtAlgorithm::EdDsa => EncodingKey::from_ed_pem(pem),
        JwtAlgorithm::Hs256 => Ok(EncodingKey::from_secret(pem)),
    }
}

fn decoding_key(pem: &[u8], alg: JwtAlgorithm) -> jsonwebtoken::errors::Result<DecodingKey> {
    match alg {
        JwtAlgorithm::Rs256 => DecodingKey::from_rsa_pem(pem),
        JwtAlgorithm::Es256 => DecodingKey::from_ec_pem(pem),
        JwtAlgorithm::EdDsa => DecodingKey::from_ed_pem(pem),
        JwtAlgorithm::Hs256 => Ok(DecodingKey::from_secret(pem)),
    }
}

fn load_key<K>(
    path: &Path,
    alg: JwtAlgorithm,
    parse: fn(&[u8], JwtAlgorithm) -> jsonwebtoken::errors::Result<K>,
) -> Result<K, SecretError> {
    let pem = std::fs::read(path).map_err(|source| SecretError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&pem, alg).map_err(|e| SecretError::InvalidKey {
        path: path.to_path_buf(),
        algorithm: alg,
        reason: e.to_string(),
    })
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
