//! The config loaders on arbitrary text: `wharf::Config::from_toml_str` and the app's
//! `AppConfig::from_toml_str`, which splits off its own tables and hands the rest, written
//! back out as TOML, to the core.
//!
//! Invariants: neither panics; a file the core accepts has no app tables, so the app must
//! accept it too and end with the same server configuration (the rewrite loses nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_app::config::AppConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let core = wharf::Config::from_toml_str(text);
    let app = AppConfig::from_toml_str(text, None);
    if let Ok(core) = core {
        match app {
            Ok(app) => assert_eq!(
                format!("{:?}", app.server),
                format!("{core:?}"),
                "the app's loader changed the core config"
            ),
            Err(e) => panic!("the core accepts the file, the app refuses it: {e}"),
        }
    }
});
