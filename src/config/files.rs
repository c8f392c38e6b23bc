//! The files a config refers to: password files (private, bounded), MySQL option files
//! (`defaults_file`), and the policies directory.

use super::*;

/// Why a file a config names was refused: which file and what is wrong with it, never its
/// contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("{}: cannot read: {why}", path.display())]
    Unreadable { path: PathBuf, why: String },
    #[error("{} is not a regular file", path.display())]
    NotRegular { path: PathBuf },
    #[error("{} is empty", path.display())]
    Empty { path: PathBuf },
    #[error("{} is {how} by group or others (mode {mode:04o}); chmod 600 it", path.display())]
    NotPrivate {
        path: PathBuf,
        /// `readable` or `writable`.
        how: &'static str,
        mode: u32,
    },
    #[error(
        "{} is larger than {MAX_SECRET_FILE} bytes: not a password or option file",
        path.display()
    )]
    TooLarge { path: PathBuf },
    #[error("{}: {error}", path.display())]
    OptionFile {
        path: PathBuf,
        error: OptionFileError,
    },
    #[error("{} is not a directory (replguard runs as {user})", path.display())]
    NotADirectory { path: PathBuf, user: String },
    #[error("cannot create {}: {why} (replguard runs as {user})", path.display())]
    CannotCreate {
        path: PathBuf,
        why: String,
        user: String,
    },
    #[error("cannot write in {}: {why} (replguard runs as {user})", path.display())]
    NotWritable {
        path: PathBuf,
        why: String,
        user: String,
    },
}

impl FileError {
    fn unreadable(path: &Path, e: std::io::Error) -> FileError {
        FileError::Unreadable {
            path: path.to_path_buf(),
            why: e.to_string(),
        }
    }
}

/// What a MySQL option file has that replguard does not read as MySQL would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionFileError {
    #[error("line {0}: !include directives are not supported; put [client] in this file")]
    Include(usize),
    #[error("line {0}: port is not a number")]
    Port(usize),
}

/// Creates `dir` (mode 0700: the state files tell hosts, positions and GTID sets) if missing,
/// and checks that this process can write in it. Errors name the directory and the user.
pub(super) fn check_state_dir(dir: &Path) -> Result<(), FileError> {
    let path = || dir.to_path_buf();
    if std::fs::metadata(dir).is_ok_and(|m| !m.is_dir()) {
        return Err(FileError::NotADirectory {
            path: path(),
            user: current_user(),
        });
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| FileError::CannotCreate {
            path: path(),
            why: e.to_string(),
            user: current_user(),
        })?;
    let probe = dir.join(format!(".replguard-write-test-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| FileError::NotWritable {
            path: path(),
            why: e.to_string(),
            user: current_user(),
        })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// `name (uid N)` of the effective user, read from `/proc/self/status` and `/etc/passwd`
/// (no libc call needed); `uid N` or `an unknown user` where those do not say.
pub fn current_user() -> String {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        });
    let Some(uid) = uid else {
        return "an unknown user".to_string();
    };
    let name = std::fs::read_to_string("/etc/passwd").ok().and_then(|p| {
        p.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)? == uid).then(|| name.to_string())
        })
    });
    match name {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// Reads a password file: private to its owner, not empty, one trailing newline ignored.
pub(super) fn read_password_file(p: &Path) -> Result<Secret, FileError> {
    check_private(p)?;
    let text = std::fs::read_to_string(p).map_err(|e| FileError::unreadable(p, e))?;
    let password = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(FileError::Empty {
            path: p.to_path_buf(),
        });
    }
    Ok(Secret::new(password.to_string()))
}

/// Refuses a credentials file that others may read or write (a writable one lets them swap
/// the password, and so the server the guard trusts), or that is not a regular file.
pub(super) fn check_private(path: &Path) -> Result<(), FileError> {
    let meta = std::fs::metadata(path).map_err(|e| FileError::unreadable(path, e))?;
    if !meta.is_file() {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    let shared = |how| FileError::NotPrivate {
        path: path.to_path_buf(),
        how,
        mode,
    };
    if mode & 0o044 != 0 {
        return Err(shared("readable"));
    }
    if mode & 0o022 != 0 {
        return Err(shared("writable"));
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// The largest config file read.
pub(super) const MAX_CONFIG_FILE: u64 = 1024 * 1024;

/// The largest password or option file read (they hold a few lines).
pub(super) const MAX_SECRET_FILE: u64 = 64 * 1024;

/// The `[client]` options replguard takes from a MySQL option file.
#[derive(Debug, Default, PartialEq)]
pub(super) struct ClientOptions {
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    pub(super) host: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) socket: Option<String>,
    pub(super) ssl_mode: Option<String>,
    pub(super) ssl_ca: Option<String>,
    pub(super) ssl_cert: Option<String>,
    pub(super) ssl_key: Option<String>,
}

pub(super) fn read_option_file(path: &Path) -> Result<ClientOptions, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError::unreadable(path, e))?;
    let opts = parse_option_file(&text).map_err(|error| FileError::OptionFile {
        path: path.to_path_buf(),
        error,
    })?;
    if opts.password.is_some() {
        check_private(path)?;
    }
    Ok(opts)
}

/// Parses the `[client]` group of a MySQL option file as `mysql --defaults-file` reads it:
/// `key=value` or bare keys, `#`/`;` comments, optional quotes, `-` and `_` alike in names.
/// Later values win, as in MySQL. `!include` is refused rather than half-supported.
pub(super) fn parse_option_file(text: &str) -> Result<ClientOptions, OptionFileError> {
    let mut opts = ClientOptions::default();
    let mut in_client = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('!') {
            return Err(OptionFileError::Include(n + 1));
        }
        if let Some(group) = line.strip_prefix('[') {
            in_client = group.trim_end_matches(']').trim() == "client";
            continue;
        }
        if !in_client {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim(), unquote(v.trim())),
            None => (line, String::new()),
        };
        match key.replace('-', "_").as_str() {
            "user" => opts.user = Some(value),
            "password" => opts.password = Some(value),
            "host" => opts.host = Some(value),
            "socket" => opts.socket = Some(value),
            "ssl_mode" => opts.ssl_mode = Some(value),
            "ssl_ca" => opts.ssl_ca = Some(value),
            "ssl_cert" => opts.ssl_cert = Some(value),
            "ssl_key" => opts.ssl_key = Some(value),
            "port" => opts.port = Some(value.parse().map_err(|_| OptionFileError::Port(n + 1))?),
            _ => {} // other client options (charset, ...) do not concern the guard
        }
    }
    Ok(opts)
}

pub(super) fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_string();
        }
    }
    // An unquoted value ends at a comment.
    match v.find(" #") {
        Some(i) => v[..i].trim_end().to_string(),
        None => v.to_string(),
    }
}

pub(super) fn load_policy_dir(dir: &Path, set: &mut PolicySet) -> Result<(), ConfigError> {
    let fail = |file: &Path, line, message: String| ConfigError {
        file: file.to_path_buf(),
        line,
        key: String::new(),
        message,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| {
        fail(
            Path::new(""),
            None,
            format!("policies_dir {}: {e}", dir.display()),
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for file in files {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| fail(&file, None, "policy file name is not UTF-8".into()))?
            .to_string();
        // These paths are endpoints of their own: /check/{name} would work, /{name} would not.
        if crate::policy::file::RESERVED.contains(&name.as_str()) {
            return Err(fail(
                &file,
                None,
                format!("{name:?} is an endpoint name; call the policy something else"),
            ));
        }
        let text = std::fs::read_to_string(&file)
            .map_err(|e| fail(&file, None, format!("cannot read: {e}")))?;
        let policy = Policy::parse(&name, &text).map_err(|e| fail(&file, e.line, e.message))?;
        set.insert(policy);
    }
    Ok(())
}
