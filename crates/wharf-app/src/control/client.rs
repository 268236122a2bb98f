//! The client side of the control socket, for `wharf upgrade`.

use std::io;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;

use super::{Greeting, MAGIC, MAX_LINE, Reply, Request, VERSION, my_uid};

/// How long the server has to greet.
const GREETING_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the `wharf serve` behind `path` to hand over to a new process, waiting at most
/// `timeout` for the answer. Returns the successor's pid, or a sentence saying why not:
/// no socket, a stale one (nobody behind it), a foreign one (another user's, not a socket,
/// not a wharf, another protocol version), or the server's refusal.
pub async fn upgrade(path: &Path, timeout: Duration) -> Result<u32, String> {
    let shown = path.display();
    let meta = std::fs::symlink_metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!(
            "no control socket at {shown}: is `wharf serve` running with this data directory \
             (WHARF_DATA_DIR)?"
        ),
        _ => format!("cannot inspect {shown}: {e}"),
    })?;
    if !meta.file_type().is_socket() {
        return Err(format!("{shown} is not a socket: not ours, refusing"));
    }
    if meta.uid() != my_uid() {
        return Err(format!(
            "{shown} is owned by uid {}, not by you (uid {}): not ours, refusing",
            meta.uid(),
            my_uid()
        ));
    }
    let mut stream = UnixStream::connect(path)
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionRefused => format!(
                "{shown} is stale: no process is behind it (did wharf serve crash?); a new \
             `wharf serve` replaces it"
            ),
            _ => format!("cannot connect to {shown}: {e}"),
        })?;
    let mut reader = BufReader::new((&mut stream).take(MAX_LINE as u64));
    let line = read_line(&mut reader, GREETING_TIMEOUT)
        .await
        .map_err(|e| format!("{shown}: no greeting: {e}; not a wharf control socket, refusing"))?;
    let greeting: Greeting = serde_json::from_str(&line)
        .ok()
        .filter(|g: &Greeting| g.magic == MAGIC)
        .ok_or_else(|| format!("{shown} is not a wharf control socket, refusing"))?;
    if greeting.version != VERSION {
        return Err(format!(
            "{shown} speaks control protocol v{}, this wharf v{VERSION}: run the `wharf upgrade` \
             of the serving version",
            greeting.version
        ));
    }
    drop(reader);
    let mut request = serde_json::to_vec(&Request {
        command: "upgrade".into(),
    })
    .map_err(|e| e.to_string())?;
    request.push(b'\n');
    stream
        .write_all(&request)
        .await
        .map_err(|e| format!("{shown}: {e}"))?;
    let mut reader = BufReader::new((&mut stream).take(MAX_LINE as u64));
    let line = read_line(&mut reader, timeout)
        .await
        .map_err(|e| format!("wharf serve (pid {}) did not answer: {e}", greeting.pid))?;
    let reply: Reply = serde_json::from_str(&line).map_err(|e| format!("bad reply: {e}"))?;
    match (reply.ok, reply.successor) {
        (true, Some(pid)) => Ok(pid),
        _ => Err(reply.error.unwrap_or_else(|| "refused".to_owned())),
    }
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    timeout: Duration,
) -> Result<String, String> {
    let mut line = String::new();
    match tokio::time::timeout(timeout, reader.read_line(&mut line)).await {
        Err(_) => Err(format!("nothing within {timeout:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(0)) => Err("the connection closed".to_owned()),
        Ok(Ok(_)) => Ok(line.trim().to_owned()),
    }
}
