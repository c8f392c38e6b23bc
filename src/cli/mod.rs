//! The command line: its arguments (clap) and what each subcommand does once the binary has
//! loaded the config: `serve`, `validate`, `check`/`checklist` (one poll, one verdict),
//! `maintenance` (the switch file and the daemon's confirmation), `generate` (man page,
//! completions). Exit codes: 0 ok/healthy, 1 unhealthy or runtime failure, 2 usage or
//! configuration error, 3 maintenance not confirmed by the daemon.

mod check;
mod lease;
pub mod logs;
mod maintenance;

use crate::config::Config;
use crate::policy::render;
use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// `replguard --version`: the version and the git commit built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("REPLGUARD_GIT_COMMIT"),
    ")"
);

/// The command line.
#[derive(Parser)]
#[command(
    version = VERSION,
    about = "Replication-aware HAProxy health checks for MySQL and MariaDB"
)]
pub struct Cli {
    /// How log lines are written to stderr: `text` for people, `json` (one object per line)
    /// for log shippers, `journald` (syslog priorities, for the systemd unit).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
    /// For systemd's journal: each line starts with its syslog priority (`<3>` error, `<4>`
    /// warn, `<6>` info, `<7>` debug) so `journalctl -p warning` filters; no timestamp (the
    /// journal adds one) and no colour.
    Journald,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon: poll every instance and answer HTTP checks from memory.
    Serve {
        /// The configuration file (TOML), e.g. /etc/replguard/replguard.toml.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a config file as `serve` would (policies, password and TLS files, paths, ports),
    /// without connecting to MySQL or binding: exit 0 when valid, 2 with the same message as
    /// `serve` otherwise.
    Validate {
        /// The configuration file (TOML), e.g. /etc/replguard/replguard.toml.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Poll one instance once and print the verdict HTTP would give: exit 0 healthy, 1 not (or a
    /// runtime failure), 2 on a usage or configuration error.
    Check {
        /// The configuration file (TOML), e.g. /etc/replguard/replguard.toml.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Instance name; may be omitted when only one is configured.
        #[arg(long)]
        instance: Option<String>,
        /// Policy to evaluate; defaults to the instance's configured policy.
        #[arg(long)]
        policy: Option<String>,
        /// `text` (one line per check) or `json` (the HTTP check's JSON body).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Take an instance out (`on`: every policy fails with the reason, the agent says drain) or
    /// put it back (`off`), by writing or removing its maintenance file; needs no database
    /// password. Then asks the running daemon (`/status` on `listen`) for up to two intervals:
    /// exit 0 when it confirms, 3 when it has not seen the change, 2 on a usage error.
    Maintenance {
        /// `on` writes the maintenance file, `off` removes it.
        #[arg(value_enum)]
        switch: Switch,
        /// The configuration file (TOML), e.g. /etc/replguard/replguard.toml.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Instance name; may be omitted when only one is configured.
        #[arg(long)]
        instance: Option<String>,
        /// Why; shown as `503 maintenance: <reason>` and in the agent's log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Print the manual-promotion checklist for a replica: every check with its evidence and
    /// fix, then the steps: exit 0 only when every required check passes, 1 otherwise, 2 on a
    /// usage or configuration error. Same as `check --policy promotion`.
    Checklist {
        /// The configuration file (TOML), e.g. /etc/replguard/replguard.toml.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Instance name; may be omitted when only one is configured.
        #[arg(long)]
        instance: Option<String>,
        /// `text` (one line per check) or `json` (the HTTP check's JSON body).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// The writer lease in etcd (`[coordination]`): `status` shows what etcd holds for each
    /// writer group; `handover --group G` is the planned switchover (the holder stops answering
    /// 200, waits handover_delay and releases with its position; another instance takes over
    /// once it passes): exit 0 when done, 3 when not seen in time, 1 when etcd fails, 2 on a
    /// usage error; `waive --group G` lets the holder answer without the released position it
    /// can never apply.
    Lease {
        #[command(subcommand)]
        action: LeaseAction,
        /// The configuration file (TOML), e.g. /etc/replguard/replguard.toml.
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
    },
    /// Write the man page (`replguard.1`) or a shell's completions to stdout (for packaging).
    #[command(hide = true)]
    Generate {
        /// `man`, `bash`, `zsh` or `fish`.
        #[arg(value_enum)]
        what: Generated,
    },
}

#[derive(Subcommand)]
pub enum LeaseAction {
    /// Who holds each writer group's lease, pending handovers, the last released position.
    Status {
        /// Only this writer group.
        #[arg(long)]
        group: Option<String>,
    },
    /// Move the writes off the current holder of `--group`.
    Handover {
        #[arg(long)]
        group: String,
        /// How long the instance moved off neither takes the lease back nor asks for it.
        #[arg(long, default_value = "10m", value_parser = lease::parse_hold)]
        hold: std::time::Duration,
    },
    /// Let the holder of `--group` answer without applying the position the previous holder
    /// released at, when it never can (a server re-cloned, a cluster bootstrapped anew). The
    /// writes the previous holder took after that position may be missing on the new writer.
    Waive {
        #[arg(long)]
        group: String,
        /// Waive only if the released position is still this one (as `lease status` shows).
        #[arg(long)]
        position: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Generated {
    Man,
    Bash,
    Zsh,
    Fish,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Why a command failed, printed once by the binary: a usage or configuration error (exit 2)
/// or a failure at run time (exit 1).
#[derive(Debug)]
pub enum Failure {
    Usage(String),
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Runtime(e)
    }
}

impl From<check::CheckError> for Failure {
    fn from(e: check::CheckError) -> Failure {
        Failure::Usage(e.to_string())
    }
}

impl Failure {
    /// Prints the failure once and gives its exit code.
    pub fn report(self) -> ExitCode {
        match self {
            Failure::Usage(message) => {
                eprintln!("replguard: {message}");
                ExitCode::from(2)
            }
            Failure::Runtime(e) => {
                eprintln!("replguard: {e:#}");
                ExitCode::from(1)
            }
        }
    }
}

impl From<LogFormat> for logs::Format {
    fn from(f: LogFormat) -> logs::Format {
        match f {
            LogFormat::Text => logs::Format::Text,
            LogFormat::Json => logs::Format::Json,
            LogFormat::Journald => logs::Format::Journald,
        }
    }
}

impl Command {
    /// The config file the command reads; `None` for `generate`.
    pub fn config_path(&self) -> Option<&PathBuf> {
        match self {
            Command::Serve { config }
            | Command::Validate { config }
            | Command::Check { config, .. }
            | Command::Checklist { config, .. }
            | Command::Maintenance { config, .. } => Some(config),
            Command::Lease { config, .. } => config.as_ref(),
            Command::Generate { .. } => None,
        }
    }
}

/// `replguard validate`: everything a config can get wrong was checked by loading it.
pub fn validate(config: &Config) -> ExitCode {
    println!(
        "{}: valid ({} instance(s), HTTP on {}{})",
        config.path.display(),
        config.instances.len(),
        config.listen,
        config
            .agent_listen
            .map(|a| format!(", agent on {a}"))
            .unwrap_or_default()
    );
    ExitCode::SUCCESS
}

/// `replguard serve`: binds both listeners (a port in use is a configuration error), then
/// serves until SIGTERM or SIGINT, reloading on SIGHUP.
pub async fn serve(mut config: Config) -> Result<ExitCode, Failure> {
    crate::serve::listen::admission::fit_config(&mut config)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    // A port in use or not ours to bind is a configuration error (exit 2), like a bad key.
    let listener = crate::serve::listen::admission::bind(config.listen).map_err(|e| {
        Failure::Usage(format!(
            "{}: listen: cannot listen on {}: {e}",
            config.path.display(),
            config.listen
        ))
    })?;
    let agent = match config.agent_listen {
        Some(addr) => Some(crate::serve::listen::admission::bind(addr).map_err(|e| {
            Failure::Usage(format!(
                "{}: agent_listen: cannot listen on {addr}: {e}",
                config.path.display()
            ))
        })?),
        None => None,
    };
    let (shutdown, reload_rx) = crate::serve::signals::watch();
    tracing::info!(
        listen = %config.listen,
        instances = config.instances.len(),
        interval = %humantime::format_duration(config.interval),
        "serving"
    );
    crate::serve::serve_reloading(config, listener, agent, shutdown, Some(reload_rx))
        .await
        .map_err(anyhow::Error::from)?;
    Ok(ExitCode::SUCCESS)
}

/// The man page or completions, generated from the command line definitions themselves.
pub fn generate(what: Generated) -> Result<ExitCode, Failure> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut out = std::io::stdout();
    let shell = match what {
        Generated::Man => {
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .context("cannot write the man page")?;
            return Ok(ExitCode::SUCCESS);
        }
        Generated::Bash => clap_complete::Shell::Bash,
        Generated::Zsh => clap_complete::Shell::Zsh,
        Generated::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "replguard", &mut out);
    Ok(ExitCode::SUCCESS)
}

/// Sets the maintenance switch, then waits (two intervals at most) for the running daemon to
/// show it: exit 0 when it confirms, 3 when it has not seen it.
pub fn maintenance(
    config: &Config,
    instance: Option<&str>,
    switch: Switch,
    reason: &str,
) -> Result<ExitCode, Failure> {
    use maintenance::Seen;
    let reason = match switch {
        Switch::On => Some(reason),
        Switch::Off => None,
    };
    let switched = maintenance::switch(config, instance, reason).map_err(|e| {
        if e.is_usage() {
            Failure::Usage(e.to_string())
        } else {
            Failure::Runtime(e.into())
        }
    })?;
    let name = &switched.instance;
    let done = match (&switched.reason, switched.was_off) {
        (Some(_), _) => format!("maintenance on ({})", switched.file.display()),
        (None, false) => "maintenance off".to_string(),
        (None, true) => "was not in maintenance".to_string(),
    };
    match maintenance::confirm(config, &switched) {
        Seen::Confirmed => {
            println!("{name}: {done}; daemon confirms");
            Ok(ExitCode::SUCCESS)
        }
        Seen::NotSeen(why) => {
            println!(
                "{name}: {done}: written, but the daemon at {} has not seen it: {why}",
                maintenance::daemon_addr(config)
            );
            Ok(ExitCode::from(3))
        }
    }
}

/// `replguard check` and `checklist`: one poll, the verdict printed, exit 0 only when healthy.
pub async fn check(
    config: &Config,
    instance: Option<&str>,
    policy: Option<&str>,
    format: Format,
) -> Result<ExitCode, Failure> {
    let outcome = check::once(config, instance, policy).await?;
    let verdict = &outcome.verdict;
    match format {
        Format::Text => print!("{}", render::text(verdict)),
        Format::Json => println!("{}", render::json(&outcome.instance, verdict)),
    }
    Ok(if verdict.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `replguard lease status` / `handover` / `waive`.
pub async fn lease(config: &Config, action: &LeaseAction) -> Result<ExitCode, Failure> {
    let failed = |e: lease::LeaseError| {
        if e.is_usage() {
            Failure::Usage(e.to_string())
        } else {
            Failure::Runtime(e.into())
        }
    };
    match action {
        LeaseAction::Status { group } => {
            print!(
                "{}",
                lease::status(config, group.as_deref())
                    .await
                    .map_err(failed)?
            );
            Ok(ExitCode::SUCCESS)
        }
        LeaseAction::Handover { group, hold } => {
            let (from, to) = lease::handover(config, group, *hold)
                .await
                .map_err(failed)?;
            match to {
                Some(h) => {
                    println!(
                        "{group}: the writes moved from {from} to {} (guard {}); {from} stays off for {}",
                        h.instance,
                        h.guard,
                        crate::units::fmt_duration(*hold)
                    );
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    println!(
                        "{group}: asked {from} to hand over, but no other instance holds the lease yet \
                         (does one pass its policy?); see replguard lease status"
                    );
                    Ok(ExitCode::from(3))
                }
            }
        }
        LeaseAction::Waive { group, position } => {
            let r = lease::waive(config, group, position.as_deref())
                .await
                .map_err(failed)?;
            println!(
                "{group}: waived {} released by {} (guard {}): the holder answers without it; \
                 writes {} took after that position may be missing on the new writer",
                r.position, r.instance, r.guard, r.instance
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
