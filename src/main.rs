//! The `replguard` binary: parse the command line, set up logging, load the config, then run
//! the command (`replguard::cli`). Exit codes: 0 ok/healthy, 1 unhealthy or runtime failure, 2
//! usage or configuration error, 3 maintenance not confirmed.

#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use replguard::cli::{self, Cli, Command, Failure};
use replguard::config::Config;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::logs::init(cli.log_format.into());
    run(cli.command).unwrap_or_else(Failure::report)
}

fn run(command: Command) -> Result<ExitCode, Failure> {
    let Some(path) = command.config_path().cloned() else {
        return match command {
            Command::Generate { what } => cli::generate(what),
            _ => Err(Failure::Usage("--config FILE is required".into())),
        };
    };
    if let Command::Maintenance {
        switch,
        instance,
        reason,
        ..
    } = &command
    {
        // Only the config and the maintenance file: never the database password.
        let config =
            Config::load_without_secrets(&path).map_err(|e| Failure::Usage(e.to_string()))?;
        return cli::maintenance(&config, instance.as_deref(), *switch, reason);
    }
    let config = Config::load(&path).map_err(|e| Failure::Usage(e.to_string()))?;
    if let Command::Validate { .. } = command {
        return Ok(cli::validate(&config));
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    runtime.block_on(async {
        match command {
            Command::Serve { .. } => cli::serve(config).await,
            Command::Check {
                instance,
                policy,
                format,
                ..
            } => cli::check(&config, instance.as_deref(), policy.as_deref(), format).await,
            Command::Checklist {
                instance, format, ..
            } => cli::check(&config, instance.as_deref(), Some("promotion"), format).await,
            Command::Lease { action, .. } => cli::lease(&config, &action).await,
            Command::Validate { .. } | Command::Maintenance { .. } | Command::Generate { .. } => {
                unreachable!("answered before the runtime starts")
            }
        }
    })
}
