//! Which request paths are checks: `/`, `/mysqlchk/`, `/check/{policy}` and `/{policy}`,
//! read as warp's `path!` would match them. Shared by the HTTP routes and the access gate
//! (`auth_exempt = ["checks"]`); pure.

use crate::policy::file::FIXED;

/// What a check path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckPath<'a> {
    /// `/` or `/mysqlchk/`: the instance's configured policy.
    Own,
    /// `/check/{policy}` or `/{policy}`: a policy by name, known or not.
    Named(&'a str),
}

/// True for every check path (`/`, `/mysqlchk/`, `/check/{policy}`, `/{policy}`): what
/// `auth_exempt = ["checks"]` leaves open.
pub fn is_check_path(path: &str) -> bool {
    check_path(path).is_some()
}

/// Reads a request path as a check, matching segments as warp's `path!` does (one trailing
/// slash allowed). `None`: not a check (a fixed endpoint, or another shape).
pub fn check_path(path: &str) -> Option<CheckPath<'_>> {
    let rest = path.strip_prefix('/')?;
    if rest.is_empty() {
        return Some(CheckPath::Own);
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    match rest.split_once('/') {
        None if rest == "mysqlchk" => Some(CheckPath::Own),
        None if rest.is_empty() || FIXED.contains(&rest) => None,
        None => Some(CheckPath::Named(rest)),
        Some(("check", name)) if !name.is_empty() && !name.contains('/') => {
            Some(CheckPath::Named(name))
        }
        Some(_) => None,
    }
}
