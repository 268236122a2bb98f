//! The raw door's opening handshake on arbitrary bytes: the head parser
//! (`crates/wharf/src/handshake.rs`) and the one handshake decision both doors share
//! (`server/accept.rs` `accept`), through `wharf::fuzzing::handshake` (feature `fuzzing`):
//! the first byte picks the limits, the rest is what the client sent. The invariants are
//! asserted there, next to the code they hold for.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wharf::fuzzing::handshake(data));
