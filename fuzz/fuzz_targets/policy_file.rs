//! Feeds arbitrary text to the policy file parser: never a panic; a policy that parses with
//! lag checks has a `max_lag`.
//!
//! ```text
//! RUSTC_BOOTSTRAP=1 cargo fuzz run policy_file -- -max_total_time=30
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;
use replguard::{Body, Policy, Rule};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = Policy::parse("fuzz", text) {
        if let Body::Checks {
            rules, thresholds, ..
        } = &policy.body
        {
            assert!(!rules.is_empty());
            if rules
                .iter()
                .any(|r| matches!(r, Rule::Lag | Rule::Source | Rule::Peer))
            {
                assert!(thresholds.max_lag.is_some());
            }
        }
    }
});
