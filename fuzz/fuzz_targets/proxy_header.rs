//! The PROXY protocol header parser (`crates/wharf/src/server/proxy_protocol.rs`) on
//! arbitrary bytes, through `wharf::fuzzing::proxy_header` (feature `fuzzing`), which grows
//! the input the way the connection reader does and asserts the parser's bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wharf::fuzzing::proxy_header(data));
