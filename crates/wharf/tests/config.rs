//! Configuration and setup errors: broken files name the file and key, ports in use name the
//! server and port, routes for undeclared servers are setup errors.

mod common;

use std::io::Write;

use common::*;
use wharf::{Config, Echo, Error, Router, Server, ServerConfig, ServerKind};

fn file_with(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write");
    file
}

#[test]
fn broken_toml_names_the_file_and_key() {
    let file =
        file_with("[[server]]\nname = \"ws\"\nkind = \"websocket\"\nport = \"not a port\"\n");
    let err = Config::load(Some(file.path())).expect_err("bad port type");
    let text = err.to_string();
    assert!(text.contains(&file.path().display().to_string()), "{text}");
    assert!(text.contains("port"), "{text}");
    assert_eq!(err.file(), Some(file.path()));

    let file = file_with("[[server]]\nname = \"ws\"\nkind = \"websocket\"\nport = 1\nprot = 2\n");
    let err = Config::load(Some(file.path())).expect_err("unknown key");
    assert!(err.to_string().contains("prot"), "{err}");
    assert_eq!(err.file(), Some(file.path()));

    let file = file_with("this is [not toml\n");
    let err = Config::load(Some(file.path())).expect_err("not TOML");
    assert_eq!(err.file(), Some(file.path()));
}

#[test]
fn invalid_value_names_the_file_and_key() {
    let file = file_with(
        "[[server]]\nname = \"ws\"\nkind = \"websocket\"\nport = 1\n[server.limits]\nslow_consumer_code = 1000\n",
    );
    let err = Config::load(Some(file.path())).expect_err("bad code");
    assert_eq!(err.file(), Some(file.path()));
    assert_eq!(err.key(), Some("server[0].limits.slow_consumer_code"));
    assert!(err.to_string().contains("1000"), "{err}");

    let file = file_with(
        "[[server]]\nname = \"ws\"\nkind = \"websocket\"\nport = 1\n[server.limits]\nmax_message_size = \"lots\"\n",
    );
    let err = Config::load(Some(file.path())).expect_err("bad size");
    assert!(err.to_string().contains("max_message_size"), "{err}");
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("absent.toml");
    let err = Config::load(Some(&path)).expect_err("missing");
    assert_eq!(err.file(), Some(path.as_path()));
}

#[test]
fn sizes_and_durations_parse() {
    let config = Config::from_toml_str(
        "[[server]]\nname = \"ws\"\nkind = \"ws\"\nport = 0\nheartbeat = { interval = \"500ms\", timeout = 2 }\nlimits = { max_queue_size = \"64KiB\", idle_timeout = \"2m\" }\n",
    )
    .expect("valid");
    let ws = config.server("ws").expect("ws");
    assert_eq!(ws.limits.max_queue_size, 64 * 1024);
    assert_eq!(ws.limits.idle_timeout.as_secs(), 120);
    assert_eq!(ws.heartbeat.interval.as_millis(), 500);
    assert_eq!(ws.heartbeat.timeout.as_secs(), 2);
}

#[tokio::test]
async fn port_in_use_names_the_server_and_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let config = Config::empty().with_server(
        ServerConfig::new("busy-ws", ServerKind::Websocket, port).with_host("127.0.0.1"),
    );
    let result = within(
        "bind",
        Server::builder(config)
            .websocket("busy-ws", Router::new().route("/echo", Echo))
            .bind(),
    )
    .await;
    match result {
        Err(Error::Bind { server, addr, .. }) => {
            assert_eq!(server, "busy-ws");
            assert_eq!(addr, format!("127.0.0.1:{port}"));
        }
        Err(other) => panic!("expected Error::Bind, got {other}"),
        Ok(_) => panic!("bound a port already in use"),
    }
    let err = within(
        "bind",
        Server::builder(Config::empty().with_server(
            ServerConfig::new("busy-ws", ServerKind::Websocket, port).with_host("127.0.0.1"),
        ))
        .bind(),
    )
    .await
    .err()
    .expect("error");
    let text = err.to_string();
    assert!(
        text.contains("busy-ws") && text.contains(&port.to_string()),
        "{text}"
    );
    drop(taken);
}

async fn setup_error(builder: wharf::ServerBuilder) -> String {
    match within("bind", builder.bind()).await {
        Err(Error::Setup(message)) => message,
        Err(other) => panic!("expected Error::Setup, got {other}"),
        Ok(_) => panic!("expected a setup error"),
    }
}

#[tokio::test]
async fn setup_errors() {
    let config = || {
        Config::empty()
            .with_server(ws_server())
            .with_server(http_server())
    };
    // Routes for a server the config does not declare.
    let message =
        setup_error(Server::builder(config()).websocket("chat", Router::new().route("/x", Echo)))
            .await;
    assert!(message.contains("chat"), "{message}");
    // HTTP routes for a WebSocket server (WebSocket routes on an `http` server are fine:
    // they share its port, see tests/one_port.rs).
    let message =
        setup_error(Server::builder(config()).http("ws", wharf::axum::Router::new())).await;
    assert!(message.contains("ws"), "{message}");
    // A config route naming a handler nobody registered.
    let message = setup_error(Server::builder(
        Config::empty().with_server(ws_server().with_route("/x", "nobody")),
    ))
    .await;
    assert!(message.contains("nobody"), "{message}");
    // The same path twice.
    let message = setup_error(
        Server::builder(config())
            .websocket("ws", Router::new().route("/x", Echo).route("/x", Echo)),
    )
    .await;
    assert!(message.contains("/x"), "{message}");
}

#[test]
fn the_readme_configuration_block_parses_with_the_limits_it_lists() {
    // (Compression is listed with its defaults, off.)
    let readme = include_str!("../../../README.md");
    let start = readme.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let block = &readme[start..];
    let block = &block[..block.find("```").expect("end of the block")];
    let config = Config::from_toml_str(block).expect("the README's config is valid");
    let ws = config.server("ws").expect("ws");
    assert_eq!(ws.limits.max_connections_per_ip, 1000);
    assert_eq!(ws.limits.max_messages_per_sec, 0);
    assert_eq!(ws.compression, wharf::Compression::default());
    // The commented-out tls line is valid where it stands.
    let tls = "tls = { cert = \"cert.pem\", key = \"key.pem\" }";
    let with_tls = block.replacen(&format!("# {tls}"), tls, 1);
    assert_ne!(with_tls, block);
    let config = Config::from_toml_str(&with_tls).expect("valid with tls");
    assert!(config.server("ws").expect("ws").tls.is_some());
    // The commented-out route with origins is valid too.
    let origins =
        "route = [{ path = \"/echo\", handler = \"echo\", origins = [\"https://app.example\"] }]";
    assert!(block.contains(&format!("# {origins}")));
    let with_origins = block.replacen(
        "route = [{ path = \"/echo\", handler = \"echo\" }]",
        origins,
        1,
    );
    let config = Config::from_toml_str(&with_origins).expect("valid with origins");
    let ws = config.server("ws").expect("ws");
    assert_eq!(ws.routes[0].origins, ["https://app.example"]);
}
