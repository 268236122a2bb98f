//! The CLI entry point, called in-process against wharf.

#![allow(missing_docs)]

mod common;

use std::process::ExitCode;

use common::{TestResult, Wharf, bounded};
use wharf_client::cli::{ClientArgs, ConnectionArgs, run};

fn args(url: String) -> ClientArgs {
    ClientArgs {
        connection: ConnectionArgs {
            url,
            timeout: 5.0,
            ..ConnectionArgs::default()
        },
        send: vec!["hello".into()],
        expect: Some(1),
        json: true,
        ..ClientArgs::default()
    }
}

#[tokio::test]
async fn send_expect_json_exits_zero() -> TestResult {
    let server = Wharf::start(0).await?;
    let code = bounded(run(args(server.url("/echo")))).await;
    assert_eq!(code, ExitCode::SUCCESS);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn refused_exits_three() -> TestResult {
    let server = Wharf::start(0).await?;
    let code = bounded(run(args(server.url("/nope")))).await;
    assert_eq!(code, ExitCode::from(3));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn usage_and_network_errors() -> TestResult {
    let server = Wharf::start(0).await?;
    let mut bad_header = args(server.url("/echo"));
    bad_header.connection.headers = vec!["no colon".into()];
    assert_eq!(bounded(run(bad_header)).await, ExitCode::from(2));
    let bad_url = args("http://127.0.0.1/".into());
    assert_eq!(bounded(run(bad_url)).await, ExitCode::from(2));
    let addr = server.addr;
    server.stop().await;
    let down = args(format!("ws://{addr}/echo"));
    assert_eq!(bounded(run(down)).await, ExitCode::from(1));
    Ok(())
}
