//! Token rejections at the handshake over real sockets: each refused before the upgrade
//! with its status and JSON code.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use wharf_app::tokens::{Claims, TokenConfig, Tokens};

use common::{TestApp, handshake, start, start_with_tokens};

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("fits")
}

async fn refused(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let (response, ws) = handshake(app.ws, path, headers).await;
    assert!(ws.is_none(), "upgraded: {}", response.head);
    (response.status, response.json())
}

async fn refused_bearer(app: &TestApp, token: &str) -> (u16, String) {
    let header = format!("Bearer {token}");
    let (status, body) = refused(app, "/wss/demo", &[("Authorization", &header)]).await;
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn missing_token_is_401_token_missing() {
    let app = start("").await;
    let (status, body) = refused(&app, "/wss/demo", &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token_missing"))
    );
    assert_eq!(body["code"], 401);
}

#[tokio::test]
async fn bad_tokens_are_401_with_their_codes() {
    let app = start("").await;
    // Expired (beyond the 30 s leeway).
    let expired = app
        .tokens
        .sign(&Claims::new(
            (1, "alice", false),
            now() - 7200,
            now() - 3600,
        ))
        .expect("sign");
    assert_eq!(
        refused_bearer(&app, &expired).await,
        (401, "token_expired".into())
    );
    // Signed with another secret.
    let other = Tokens::new(
        &TokenConfig::default(),
        Some(b"another secret, also 32 bytes long"),
    )
    .expect("tokens");
    let (forged, _) = other.issue((1, "alice", false)).expect("issue");
    assert_eq!(
        refused_bearer(&app, &forged).await,
        (401, "token_invalid_signature".into())
    );
    // alg: none.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(
        serde_json::json!({"sub":"1","uid":1,"account":"alice","iat":now(),"exp":now()+600,"data":{"uid":1}})
            .to_string(),
    );
    let none = format!("{header}.{payload}.");
    assert_eq!(
        refused_bearer(&app, &none).await,
        (401, "token_wrong_algorithm".into())
    );
    // Garbage.
    assert_eq!(
        refused_bearer(&app, "not-a-token").await,
        (401, "token_malformed".into())
    );
    // Over 8 KiB (the request head stays under the server's 16 KiB limit).
    let huge = "a".repeat(9 * 1024);
    assert_eq!(
        refused_bearer(&app, &huge).await,
        (401, "token_too_large".into())
    );
}

#[tokio::test]
async fn claims_that_do_not_hold_are_401_with_their_codes() {
    let app = start("").await;
    // Not valid before five minutes from now (beyond the 30 s leeway).
    let mut early = Claims::new((1, "alice", false), now(), now() + 3600);
    early.nbf = Some(now() + 300);
    let early = app.tokens.sign(&early).expect("sign");
    assert_eq!(
        refused_bearer(&app, &early).await,
        (401, "token_not_yet_valid".into())
    );
    // No `exp`: signed with the app's own secret, so only the missing claim is wrong.
    let endless = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "1", "uid": 1, "account": "alice", "iat": now()}),
        &jsonwebtoken::EncodingKey::from_secret(common::SECRET),
    )
    .expect("encode");
    assert_eq!(
        refused_bearer(&app, &endless).await,
        (401, "token_missing_claim".into())
    );
    // The same claims with an `exp` pass: the refusal above was the claim, nothing else.
    let fine = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "1", "uid": 1, "account": "alice", "iat": now(), "exp": now() + 600}),
        &jsonwebtoken::EncodingKey::from_secret(common::SECRET),
    )
    .expect("encode");
    let header = format!("Bearer {fine}");
    let (response, ws) = handshake(app.ws, "/wss/demo", &[("Authorization", &header)]).await;
    assert_eq!(response.status, 101, "{}", response.body);
    drop(ws);
}

#[tokio::test]
async fn issuer_and_audience_are_checked_at_the_handshake() {
    let mut config = TokenConfig::default();
    config.issuer = Some("wharf-test".into());
    config.audience = Some("ws".into());
    let app = start_with_tokens("", &config).await;
    let mut claims = Claims::new((1, "alice", false), now(), now() + 600);
    claims.iss = Some("someone-else".into());
    claims.aud = Some("ws".into());
    let token = app.tokens.sign(&claims).expect("sign");
    assert_eq!(
        refused_bearer(&app, &token).await,
        (401, "token_invalid_issuer".into())
    );
    claims.iss = Some("wharf-test".into());
    claims.aud = Some("http".into());
    let token = app.tokens.sign(&claims).expect("sign");
    assert_eq!(
        refused_bearer(&app, &token).await,
        (401, "token_invalid_audience".into())
    );
    // Without them: the claim is missing.
    claims.iss = None;
    claims.aud = None;
    let token = app.tokens.sign(&claims).expect("sign");
    assert_eq!(
        refused_bearer(&app, &token).await,
        (401, "token_missing_claim".into())
    );
    // Both right: upgraded.
    let (token, _) = app.tokens.issue((1, "alice", false)).expect("issue");
    let header = format!("Bearer {token}");
    let (response, ws) = handshake(app.ws, "/wss/demo", &[("Authorization", &header)]).await;
    assert_eq!(response.status, 101, "{}", response.body);
    drop(ws);
}

#[tokio::test]
async fn query_token_only_when_enabled() {
    let app = start("").await;
    let (token, _) = app.tokens.issue((1, "alice", false)).expect("issue");
    let path = format!("/wss/demo?token={token}");
    let (status, body) = refused(&app, &path, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token_missing"))
    );
    assert!(body["msg"].as_str().unwrap_or_default().contains("query"));

    let open = start("[auth]\nquery_token = true\n").await;
    let (token, _) = open.tokens.issue((1, "alice", false)).expect("issue");
    let (response, ws) = handshake(open.ws, &format!("/wss/demo?token={token}"), &[]).await;
    assert_eq!(response.status, 101, "{}", response.body);
    assert!(ws.is_some());
}

#[tokio::test]
async fn route_outside_the_whitelist_is_403() {
    let app = start("[auth]\nroutes = [\"/wss/other\"]\n").await;
    let (token, _) = app.tokens.issue((1, "alice", false)).expect("issue");
    let header = format!("Bearer {token}");
    let (status, body) = refused(&app, "/wss/demo", &[("Authorization", &header)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("route_forbidden"))
    );
}
