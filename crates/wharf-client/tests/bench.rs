//! `wharf bench` against an in-process wharf echo server, over loopback sockets.

#![allow(missing_docs)]

mod common;

use std::process::ExitCode;
use std::time::Duration;

use common::tls::TestPki;
use common::{TestResult, Wharf};
use wharf_client::ClientConfig;
use wharf_client::bench::{
    BenchArgs, BenchMode, ConnectArgs, ConnectOptions, EchoArgs, EchoOptions, connect, echo, run,
};
use wharf_client::cli::ConnectionArgs;

/// A bench run is bounded by itself; this is the test's own, wider bound.
async fn bounded<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("bench run timed out")
}

fn keys(value: &serde_json::Value) -> Vec<&str> {
    value
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_counts_messages_without_errors() -> TestResult {
    let server = Wharf::start(0).await?;
    let options = EchoOptions::default()
        .with_connections(4)
        .with_size(32)
        .with_duration(Duration::from_millis(800));
    let report = bounded(echo(
        &server.url("/echo"),
        &ClientConfig::default(),
        &options,
    ))
    .await;
    assert_eq!(report.errors.total(), 0, "{report}");
    assert_eq!(report.opened, 4);
    assert!(report.messages > 0, "{report}");
    assert_eq!(report.latency.count(), report.messages);
    assert!(report.messages_per_sec() > 0.0);

    let json = report.to_json();
    let mut want = [
        "mode",
        "url",
        "connections",
        "opened",
        "size",
        "pipeline",
        "binary",
        "duration_secs",
        "messages",
        "messages_per_sec",
        "mb_per_sec",
        "latency_us",
        "errors",
    ];
    want.sort_unstable();
    assert_eq!(keys(&json), want);
    assert_eq!(json["mode"], "echo");
    assert_eq!(json["messages"], report.messages);
    assert_eq!(json["errors"]["total"], 0);
    for q in ["count", "p50", "p99", "p99_9", "max", "mean"] {
        assert!(json["latency_us"][q].is_number(), "{q}: {json}");
    }
    assert!(json["latency_us"]["p50"].as_f64() <= json["latency_us"]["p99_9"].as_f64());
    let table = report.to_string();
    assert!(
        table.contains("messages") && table.contains("p99.9"),
        "{table}"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_binary_echo() -> TestResult {
    let server = Wharf::start(0).await?;
    let options = EchoOptions::default()
        .with_connections(3)
        .with_size(1000)
        .with_pipeline(16)
        .with_binary(true)
        .with_warmup(Duration::from_millis(200))
        .with_duration(Duration::from_millis(800));
    let report = bounded(echo(
        &server.url("/echo"),
        &ClientConfig::default(),
        &options,
    ))
    .await;
    assert_eq!(report.errors.total(), 0, "{report}");
    assert!(report.messages > 0, "{report}");
    assert_eq!(report.to_json()["pipeline"], 16);
    assert!(report.mb_per_sec() > 0.0);
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_opens_holds_and_closes_50() -> TestResult {
    let server = Wharf::start(0).await?;
    let options = ConnectOptions::default()
        .with_connections(50)
        .with_rate(Some(500.0))
        .with_hold(Duration::from_millis(300));
    let report = bounded(connect(
        &server.url("/echo"),
        &ClientConfig::default(),
        &options,
    ))
    .await;
    assert_eq!(report.errors.total(), 0, "{report}");
    assert_eq!(
        (report.opened, report.alive, report.closed_cleanly),
        (50, 50, 50)
    );
    assert_eq!(report.handshake.count(), 50);
    // 50 at 500/s: the ramp takes about 0.1 s.
    assert!(report.ramp >= Duration::from_millis(90), "{report}");
    assert!(report.handshakes_per_sec() > 0.0);
    let json = report.to_json();
    let mut want = [
        "mode",
        "url",
        "connections",
        "opened",
        "ramp_secs",
        "handshakes_per_sec",
        "hold_secs",
        "alive",
        "closed_cleanly",
        "handshake_us",
        "errors",
    ];
    want.sort_unstable();
    assert_eq!(keys(&json), want);
    assert_eq!(json["mode"], "connect");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn refused_url_reports_errors_and_exits_one() -> TestResult {
    let server = Wharf::start(0).await?;
    let url = server.url("/nope");
    let options = EchoOptions::default()
        .with_connections(3)
        .with_duration(Duration::from_millis(200));
    let report = bounded(echo(&url, &ClientConfig::default(), &options)).await;
    assert_eq!((report.opened, report.messages), (0, 0));
    assert_eq!(report.errors.get("refused_404"), 3, "{report}");
    assert_eq!(report.to_json()["errors"]["by_kind"]["refused_404"], 3);

    let connection = ConnectionArgs {
        url: url.clone(),
        timeout: 5.0,
        ..ConnectionArgs::default()
    };
    let echo_args = BenchArgs {
        mode: BenchMode::Echo(EchoArgs {
            connection: connection.clone(),
            connections: 2,
            size: 32,
            duration: 0.2,
            pipeline: 1,
            warmup: 0.0,
            binary: false,
            json: true,
        }),
    };
    assert_eq!(bounded(run(echo_args)).await, ExitCode::from(1));
    let connect_args = BenchArgs {
        mode: BenchMode::Connect(ConnectArgs {
            connection,
            connections: 5,
            rate: None,
            concurrency: 2,
            hold: 0.0,
            json: true,
        }),
    };
    assert_eq!(bounded(run(connect_args)).await, ExitCode::from(1));

    // A port nobody listens on: network errors.
    let addr = server.addr;
    server.stop().await;
    let down = bounded(echo(
        &format!("ws://{addr}/echo"),
        &ClientConfig::default(),
        &options,
    ))
    .await;
    assert_eq!(down.errors.get("network"), 3, "{down}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_over_wss() -> TestResult {
    let pki = TestPki::generate()?;
    let server = Wharf::start(0).await?;
    let tls = pki.proxy(server.addr).await?;
    let config = ClientConfig::default()
        .with_ca_file(&pki.ca_pem)
        .with_server_name("localhost");
    let options = EchoOptions::default()
        .with_connections(2)
        .with_pipeline(4)
        .with_duration(Duration::from_millis(500));
    let report = bounded(echo(&format!("wss://{tls}/echo"), &config, &options)).await;
    assert_eq!(report.errors.total(), 0, "{report}");
    assert!(report.messages > 0, "{report}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn usage_errors_exit_two() {
    let connection = ConnectionArgs {
        url: "ws://127.0.0.1:1/echo".into(),
        ..ConnectionArgs::default()
    };
    let args = BenchArgs {
        mode: BenchMode::Echo(EchoArgs {
            connection,
            connections: 0,
            size: 32,
            duration: 1.0,
            pipeline: 1,
            warmup: 0.0,
            binary: false,
            json: true,
        }),
    };
    assert_eq!(bounded(run(args)).await, ExitCode::from(2));
}

/// Accepts the upgrade, then never answers: the run must still end, with timeouts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_does_not_hang_the_run() -> TestResult {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let key = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                let reply = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                    wharf_proto::accept_key(key.as_bytes())
                );
                let _ = tcp.write_all(reply.as_bytes()).await;
                // Read and drop everything, answer nothing.
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
            });
        }
    });
    let options = EchoOptions::default()
        .with_connections(2)
        .with_pipeline(4)
        .with_duration(Duration::from_millis(300));
    let config = ClientConfig::default().with_close_timeout(Duration::from_millis(500));
    let started = std::time::Instant::now();
    let report = bounded(echo(&format!("ws://{addr}/"), &config, &options)).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.messages, 0);
    assert_eq!(report.errors.get("timeout"), 2, "{report}");
    Ok(())
}
