//! The `replguard` binary: parse the command line, load the config, then serve or check once.
//! Exit codes: 0 ok/healthy, 1 unhealthy or runtime failure, 2 usage or configuration error.

#![forbid(unsafe_code)]

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use replguard::config::Config;
use replguard::{report, serve};
use std::path::PathBuf;
use std::process::ExitCode;

/// `replguard --version`: the version and the git commit built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("REPLGUARD_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    version = VERSION,
    about = "Replication-aware HAProxy health checks for MySQL and MariaDB"
)]
struct Cli {
    /// How log lines are written to stderr: `text` for people, `json` (one object per line)
    /// for log shippers, `journald` (syslog priorities, for the systemd unit).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
    /// For systemd's journal: each line starts with its syslog priority (`<3>` error, `<4>`
    /// warn, `<6>` info, `<7>` debug) so `journalctl -p warning` filters; no timestamp (the
    /// journal adds one) and no colour.
    Journald,
}

#[derive(Subcommand)]
enum Command {
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
    /// Write the man page (`replguard.1`) or a shell's completions to stdout (for packaging).
    #[command(hide = true)]
    Generate {
        /// `man`, `bash`, `zsh` or `fish`.
        #[arg(value_enum)]
        what: Generated,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Generated {
    Man,
    Bash,
    Zsh,
    Fish,
}

#[derive(Clone, Copy, ValueEnum)]
enum Switch {
    On,
    Off,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Why a command failed, printed once by `main`: a usage or configuration error (exit 2) or a
/// failure at run time (exit 1).
enum Failure {
    Usage(String),
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Runtime(e)
    }
}

impl From<replguard::check::CheckError> for Failure {
    fn from(e: replguard::check::CheckError) -> Failure {
        Failure::Usage(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    replguard::logs::init(match cli.log_format {
        LogFormat::Text => replguard::logs::Format::Text,
        LogFormat::Json => replguard::logs::Format::Json,
        LogFormat::Journald => replguard::logs::Format::Journald,
    });
    match run(cli.command) {
        Ok(code) => code,
        Err(Failure::Usage(message)) => {
            eprintln!("replguard: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("replguard: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<ExitCode, Failure> {
    if let Command::Generate { what } = command {
        return generate(what);
    }
    let config_path = match &command {
        Command::Serve { config }
        | Command::Validate { config }
        | Command::Check { config, .. }
        | Command::Checklist { config, .. }
        | Command::Maintenance { config, .. } => config.clone(),
        Command::Generate { .. } => unreachable!("answered above"),
    };
    if let Command::Maintenance {
        switch,
        instance,
        reason,
        ..
    } = &command
    {
        // Only the config and the maintenance file: never the database password.
        let config = Config::load_without_secrets(&config_path)
            .map_err(|e| Failure::Usage(e.to_string()))?;
        return run_maintenance(&config, instance.as_deref(), *switch, reason);
    }
    let config = Config::load(&config_path).map_err(|e| Failure::Usage(e.to_string()))?;
    if let Command::Validate { .. } = command {
        // Everything a config can get wrong was checked by the load above.
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
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    runtime.block_on(async {
        match command {
            Command::Serve { .. } => run_serve(config).await,
            Command::Validate { .. } => unreachable!("answered before the runtime starts"),
            Command::Check {
                instance,
                policy,
                format,
                ..
            } => run_check(&config, instance.as_deref(), policy.as_deref(), format).await,
            Command::Checklist {
                instance, format, ..
            } => run_check(&config, instance.as_deref(), Some("promotion"), format).await,
            Command::Maintenance { .. } | Command::Generate { .. } => {
                unreachable!("answered before the runtime starts")
            }
        }
    })
}

async fn run_serve(mut config: Config) -> Result<ExitCode, Failure> {
    replguard::admission::fit_config(&mut config).map_err(|e| Failure::Usage(e.to_string()))?;
    // A port in use or not ours to bind is a configuration error (exit 2), like a bad key.
    let listener = replguard::admission::bind(config.listen).map_err(|e| {
        Failure::Usage(format!(
            "{}: listen: cannot listen on {}: {e}",
            config.path.display(),
            config.listen
        ))
    })?;
    let agent = match config.agent_listen {
        Some(addr) => Some(replguard::admission::bind(addr).map_err(|e| {
            Failure::Usage(format!(
                "{}: agent_listen: cannot listen on {addr}: {e}",
                config.path.display()
            ))
        })?),
        None => None,
    };
    let (shutdown, reload_rx) = replguard::signals::watch();
    tracing::info!(
        listen = %config.listen,
        instances = config.instances.len(),
        interval = %humantime::format_duration(config.interval),
        "serving"
    );
    serve::serve_reloading(config, listener, agent, shutdown, Some(reload_rx))
        .await
        .map_err(anyhow::Error::from)?;
    Ok(ExitCode::SUCCESS)
}

/// The man page or completions, generated from the command line definitions themselves.
fn generate(what: Generated) -> Result<ExitCode, Failure> {
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
fn run_maintenance(
    config: &Config,
    instance: Option<&str>,
    switch: Switch,
    reason: &str,
) -> Result<ExitCode, Failure> {
    use replguard::maintenance::{self, MaintenanceError, Seen};
    let reason = match switch {
        Switch::On => Some(reason),
        Switch::Off => None,
    };
    let switched = maintenance::switch(config, instance, reason).map_err(|e| match e {
        MaintenanceError::Usage(m) => Failure::Usage(m),
        MaintenanceError::Io(m) => Failure::Runtime(anyhow::anyhow!(m)),
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

async fn run_check(
    config: &Config,
    instance: Option<&str>,
    policy: Option<&str>,
    format: Format,
) -> Result<ExitCode, Failure> {
    let outcome = replguard::check::once(config, instance, policy).await?;
    let verdict = &outcome.verdict;
    match format {
        Format::Text => print!("{}", report::text(verdict)),
        Format::Json => println!("{}", report::json(&outcome.instance, verdict)),
    }
    Ok(if verdict.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
