//! The server's opening-handshake parser and validation (`crates/wharf/src/handshake.rs`)
//! on arbitrary bytes, through `wharf::fuzzing::handshake` (feature `fuzzing`): the first
//! byte picks the limits, the rest is what the client sent. The invariants are asserted
//! there, next to the code they hold for.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wharf::fuzzing::handshake(data));
