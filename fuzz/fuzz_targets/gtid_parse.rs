//! Feeds arbitrary UTF-8 to both GTID parsers. They must never panic, and whatever they accept
//! must print (`Display`) as text that parses back to the same value, in both MySQL forms.
//!
//! Run from the repository root (nightly flags are needed; `RUSTC_BOOTSTRAP=1` unlocks them on
//! a stable toolchain):
//!
//! ```text
//! RUSTC_BOOTSTRAP=1 cargo fuzz run gtid_parse -- -dict=fuzz/gtid.dict -max_total_time=120
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;
use replguard::gtid::{MariadbGtidPos, MysqlGtidSet};

fuzz_target!(|data: &[u8]| {
    // Servers print ASCII; non-UTF-8 cannot reach the parsers (`&str` API).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(set) = MysqlGtidSet::parse(text) {
        let shown = set.to_string();
        let again = MysqlGtidSet::parse(&shown)
            .unwrap_or_else(|e| panic!("display {shown:?} of {text:?} does not parse: {e}"));
        assert_eq!(
            again, set,
            "display {shown:?} of {text:?} re-parses differently"
        );
        assert_eq!(again.to_string(), shown, "display is not a fixed point");
        let multiline = format!("{set:#}");
        assert_eq!(MysqlGtidSet::parse(&multiline).ok(), Some(set.clone()));
        // Cheap algebra checks on whatever the fuzzer built: no panics, basic laws.
        assert_eq!(set.union(&set), set);
        assert!(set.subtract(&set).is_empty());
        assert!(set.contains(&set));
        assert_eq!(set.is_empty(), set.count() == 0);
    }

    if let Ok(pos) = MariadbGtidPos::parse(text) {
        let shown = pos.to_string();
        let again = MariadbGtidPos::parse(&shown)
            .unwrap_or_else(|e| panic!("display {shown:?} of {text:?} does not parse: {e}"));
        assert_eq!(
            again, pos,
            "display {shown:?} of {text:?} re-parses differently"
        );
        assert!(pos.contains(&pos));
        assert!(pos.missing(&pos).is_empty());
        assert_eq!(pos.behind_by(&pos), 0);
        assert!(pos.diverged(&pos).is_empty());
    }
});
