//! A successor that dies with the connections: it says it is healthy, receives the old
//! process's open connections, and exits before registering them. The old process must
//! kill it, take every connection back and serve on, with nothing lost (docs/operations.md,
//! "Failure modes").
//!
//! Run as the successor (with `WHARF_HANDOVER` set) by the check's own binary: the example
//! itself, or the test binary's ignored `dying_successor` test.

use std::time::Duration;

use wharf::handover::Inherited;

/// The exit status of a successor that died with the connections.
pub const STATUS: u8 = 3;

/// Takes the listening sockets and the connections, then returns [`STATUS`] (1 when it got
/// none) for the process to exit with, without touching them. Blocking; `None` when this
/// process was not started as a successor.
pub fn die_with_connections() -> Option<u8> {
    let inherited = match Inherited::from_env(Duration::from_secs(30)) {
        Ok(Some(inherited)) => inherited,
        Ok(None) => return None,
        Err(e) => {
            eprintln!("handover-check: the dying successor got no sockets: {e}");
            return Some(1);
        }
    };
    match inherited.confirm() {
        Ok(arrivals) => {
            eprintln!(
                "handover-check: this successor dies with the {} connections it was sent",
                arrivals.len()
            );
            Some(STATUS)
        }
        Err(e) => {
            eprintln!("handover-check: the dying successor got no connections: {e}");
            Some(1)
        }
    }
}
