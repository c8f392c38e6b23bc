//! Feeds arbitrary bytes as an `agent-send` line: never a panic, and a line of digits that fits
//! a port names a port.
//!
//! ```text
//! RUSTC_BOOTSTRAP=1 cargo fuzz run agent_line -- -max_total_time=30
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;
use replguard::Selector;

fuzz_target!(|data: &[u8]| {
    let line = &data[..data.len().min(replguard::AGENT_MAX_LINE as usize)];
    let selector = replguard::parse_agent_line(line);
    if let Selector::Port(p) = selector {
        let text = String::from_utf8_lossy(line);
        assert_eq!(text.trim().parse::<u16>().ok(), Some(p));
    }
});
