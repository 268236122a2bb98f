//! Shared by the benchmark examples (`fanout`, `rooms_fanout`): one request to the HTTP API.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 request to the API at `http` (`host:port`) with `api_key`; its JSON answer,
/// or an error naming the status when it is not 200.
pub(crate) async fn request(
    http: &str,
    api_key: &str,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<serde_json::Value> {
    let mut stream = TcpStream::connect(http).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {http}\r\nX-Api-Key: {api_key}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (status, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    anyhow::ensure!(status.contains(" 200 "), "{method} {path}: {status} {rest}");
    Ok(serde_json::from_str(rest)?)
}
