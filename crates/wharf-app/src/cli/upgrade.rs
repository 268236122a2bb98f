//! `wharf upgrade`: asks the `wharf serve` of this data directory for a live handover to a
//! new process (the binary it was started from, with its arguments), through the control
//! socket (`wharf.sock` in `WHARF_DATA_DIR`). Same as `kill -USR2 <pid>`, but it waits and
//! says how it ended.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::{fail, load};
use crate::control;

/// Runs `wharf upgrade`: prints the successor's pid and exits 0, or says why not and exits 1.
pub async fn run(config_path: Option<&Path>) -> ExitCode {
    let config = match load(config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let path = control::socket_path(&config.data_dir());
    // The server answers once the successor has confirmed or the handover has failed, which
    // takes at most its `[handover] timeout` (plus the successor's start).
    let timeout = config.server.handover.timeout + Duration::from_secs(30);
    match control::client::upgrade(&path, timeout).await {
        Ok(pid) => {
            println!("upgraded: the successor (pid {pid}) serves; the old process drains");
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("upgrade refused: {e}")),
    }
}
