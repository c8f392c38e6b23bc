//! Feeds arbitrary text as a state file: never a panic; what parses is of the current format.
//!
//! ```text
//! RUSTC_BOOTSTRAP=1 cargo fuzz run state_file -- -max_total_time=30
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = replguard::parse_state_file(std::path::Path::new("fuzz.json"), text) {
        // What parses can be written back and read again unchanged.
        let again = serde_json::to_string(&p).unwrap();
        assert_eq!(
            replguard::parse_state_file(std::path::Path::new("fuzz.json"), &again).unwrap(),
            p
        );
    }
});
