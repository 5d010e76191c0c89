//! The `tessera` command: parses the CLI, loads settings, starts telemetry and calls the library.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tessera::{Application, Settings};

/// Tessera: Redis-backed sessions with short-lived JWT access tokens and instant revocation.
///
/// Settings come from an optional TOML file and TESSERA_* environment variables (the
/// environment wins); `tessera config check` prints the effective settings. See README.md.
#[derive(Parser)]
#[command(name = "tessera", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the public and admin listeners.
    Serve {
        /// TOML settings file (environment variables override it).
        #[arg(long, short, env = "TESSERA_CONFIG_FILE")]
        config: Option<PathBuf>,
    },
    /// Inspect settings.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Key management.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the settings and print them with secrets redacted.
    Check {
        #[arg(long, short, env = "TESSERA_CONFIG_FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new random key-encryption key (base64url) for TESSERA_KEK or `<keys_dir>/kek`.
    GenerateKek,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(config),
        Command::Config {
            command: ConfigCommand::Check { config },
        } => Settings::load(config.as_deref()).map(|s| println!("{}", s.redacted())),
        Command::Keys {
            command: KeysCommand::GenerateKek,
        } => tessera::token::Kek::generate_text().map(|k| println!("{k}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tessera: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    tessera::telemetry::init(&settings.log_format, &settings.log);
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings.clone()).await?;
        if app.kek_created() {
            tracing::warn!(
                keys_dir = %settings.keys_dir.display(),
                "created a new key-encryption key file; every node must share it (or TESSERA_KEK)"
            );
        }
        tracing::info!(
            public = %format!("{}:{}", ip(&settings.public_addr), app.public_port()),
            admin = %format!("{}:{}", ip(&settings.admin_addr), app.admin_port()),
            region = %settings.region,
            "tessera listening"
        );
        app.run_until_stopped().await
    })
}

fn ip(addr: &str) -> String {
    addr.rsplit_once(':')
        .map(|(h, _)| h.to_owned())
        .unwrap_or_default()
}
