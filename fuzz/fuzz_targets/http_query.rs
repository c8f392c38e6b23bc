//! Feeds arbitrary query strings to the check parameter parser: it must never panic, and what
//! it accepts must be what it was asked (a threshold it accepts is one the text gave).
//!
//! ```text
//! RUSTC_BOOTSTRAP=1 cargo fuzz run http_query -- -max_total_time=30
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(params) = replguard::parse_params(text) {
        if params.thresholds.max_lag.is_some() {
            assert!(
                text.contains("max_lag"),
                "{text:?} gave a max_lag it does not contain"
            );
        }
    }
    let _ = replguard::is_check_path(text);
});
