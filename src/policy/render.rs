//! Verdicts as people and tools read them: the text body (one line per check), the JSON body and
//! the one-line reason for HAProxy's log. Shared by the HTTP checks, the agent and `replguard
//! check`, so all say exactly the same thing.

use super::verdict::Verdict;
use serde::Serialize;

/// The text body: one `ok|FAIL <check> <detail>` line per check. A checklist (a verdict with
/// steps) also names the fix after each failing line, then lists the steps as `#` lines.
pub fn text(verdict: &Verdict) -> String {
    let mut out = String::with_capacity(verdict.checks.len() * 40);
    let checklist = !verdict.steps.is_empty();
    for c in &verdict.checks {
        out.push_str(&c.line());
        if let (true, Some(fix)) = (checklist, &c.fix) {
            out.push_str(" -- fix: ");
            out.push_str(fix);
        }
        out.push('\n');
    }
    if checklist {
        out.push_str("#\n# Manual promotion steps (replguard runs none of them):\n");
        for step in &verdict.steps {
            out.push_str("#   ");
            out.push_str(step);
            out.push('\n');
        }
    }
    out
}

/// The JSON body: `{"instance","policy","healthy","checks":[{"name","ok","detail",..}],..}`.
pub fn json(instance: &str, verdict: &Verdict) -> String {
    #[derive(Serialize)]
    struct Body<'a> {
        instance: &'a str,
        #[serde(flatten)]
        verdict: &'a Verdict,
    }
    serde_json::to_string(&Body { instance, verdict }).expect("verdict serialises")
}

/// The reason phrase for a failing verdict: its first failing check, on one short ASCII line,
/// because HAProxy logs the status line (e.g. `503 lag 12s > 10s`), not the body.
pub fn reason(verdict: &Verdict) -> Option<String> {
    let c = verdict.first_failure()?;
    let sep = if c.name == "maintenance" { ": " } else { " " };
    let mut r: String = format!("{}{sep}{}", c.name, c.detail)
        .chars()
        .map(|ch| {
            if ch.is_ascii_graphic() || ch == ' ' {
                ch
            } else {
                '?'
            }
        })
        .collect();
    if r.len() > 120 {
        r.truncate(117);
        r.push_str("...");
    }
    Some(r)
}
