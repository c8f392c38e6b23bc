//! Feeds arbitrary text to the config file's format check (TOML, known keys, value types).
//! It must never panic, and its message must never quote the input's secrets: nothing of a
//! line it refuses is echoed unless it is a key replguard knows.
//!
//! ```text
//! RUSTC_BOOTSTRAP=1 cargo fuzz run config_toml -- -max_total_time=30
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = replguard::config::Config::check_syntax(text);
});
