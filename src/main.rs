//! The `tessera` command: parses the CLI, loads settings, starts telemetry and calls the library.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tessera::{Application, Settings};

/// mimalloc instead of glibc malloc: the request path allocates many small, short-lived buffers,
/// and glibc's allocator showed up at ~10% of the worker's time in `perf` (see README, Benchmarks).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tessera: Redis-backed sessions with short-lived JWT access tokens and instant revocation.
///
/// Settings come from an optional TOML file and TESSERA_* environment variables (the
/// environment wins); `tessera config check` prints the effective settings. See README.md.
/// `println!` that ends the process quietly when its reader has gone (`tessera … | head`)
/// instead of panicking with a backtrace; other write errors are reported on stderr.
macro_rules! println {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("tessera: cannot write to standard output: {e}");
            std::process::exit(1);
        }
    }};
}

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about,
    long_about,
    after_long_help = "Examples:
  scripts/dev                                   # local development: starts Redis if needed
  tessera serve --config /etc/tessera/tessera.toml
  TESSERA_REDIS_URL=redis://10.0.0.5:6379 TESSERA_ADMIN_API_KEY=$(openssl rand -hex 32) tessera serve
  tessera config check                          # validate and print the effective settings
  printf '%s' \"$PASSWORD\" | tessera users add --file users.toml --id u-1 --username alice --totp
  tessera keys rotate                           # new signing key: published now, signs later

Common settings (file key / environment variable; all in README.md):
  public_addr / TESSERA_PUBLIC_ADDR     127.0.0.1:8080
  admin_addr  / TESSERA_ADMIN_ADDR      127.0.0.1:8081 (keep it internal)
  redis_url   / TESSERA_REDIS_URL       redis://127.0.0.1:6379 (maxmemory-policy must be noeviction)
  admin_api_key / TESSERA_ADMIN_API_KEY unset: the admin API refuses everything
  keys_dir / TESSERA_KEYS_DIR, kek / TESSERA_KEK   the key-encryption key every node must share
  users_file / TESSERA_USERS_FILE       Tessera's own login (argon2id + TOTP)"
)]
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
    /// The users file for Tessera's own login.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// List and end a user's sessions, straight on Redis (no running node needed); audited and
    /// pushed to every node like the admin API's.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
        #[arg(long, short, env = "TESSERA_CONFIG_FILE", global = true)]
        config: Option<PathBuf>,
    },
    /// Print a shell completion script: `tessera completions bash > /etc/bash_completion.d/tessera`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// The user's live sessions, one JSON object per line (as `GET /admin/users/{id}/sessions`).
    List {
        /// The user id (`sub`).
        #[arg(long)]
        user: String,
    },
    /// End one session of the user (`--session`), or all of them (and every access token).
    Revoke {
        #[arg(long)]
        user: String,
        /// A session id from `tessera sessions list`; without it, every session of the user.
        #[arg(long)]
        session: Option<String>,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Read a password from standard input, print its argon2id hash (for `password_hash`).
    HashPassword,
    /// Append a user to the users file; the password is read from standard input.
    Add {
        /// The users file (created if missing).
        #[arg(long, env = "TESSERA_USERS_FILE")]
        file: PathBuf,
        /// Stable user id (goes into sessions and tokens as `sub`).
        #[arg(long)]
        id: String,
        #[arg(long)]
        username: String,
        /// Comma-separated roles, e.g. `admin,support`.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Enrol TOTP: prints the otpauth:// URI to scan into an authenticator app.
        #[arg(long)]
        totp: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the settings, print them with secrets redacted, then connect to every
    /// region's Redis and report its version, maxmemory-policy, persistence and replicas (on
    /// stderr; stdout stays the settings' JSON). Exits 1 when a Redis cannot be reached or
    /// would be refused.
    Check {
        #[arg(long, short, env = "TESSERA_CONFIG_FILE")]
        config: Option<PathBuf>,
        /// Only validate and print the settings; connect to nothing (e.g. while building an image).
        #[arg(long)]
        offline: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new random key-encryption key (base64url) for TESSERA_KEK or `<keys_dir>/kek`.
    GenerateKek,
    /// Print a new admin API key and the SHA-256 to put in `[[admin_keys]]` (the key is shown once).
    GenerateApiKey,
    /// Rotate the signing key: published now, signing after `jwks_cache_secs`, the old key
    /// retired after the longest token lifetime plus leeway.
    Rotate {
        #[arg(long, short, env = "TESSERA_CONFIG_FILE")]
        config: Option<PathBuf>,
    },
    /// The signing keys in the key ring: kid, algorithm, state (published, signing, retired),
    /// when each signs from and retires.
    List {
        #[arg(long, short, env = "TESSERA_CONFIG_FILE")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(config),
        Command::Config {
            command: ConfigCommand::Check { config, offline },
        } => config_check(config, offline),
        Command::Keys {
            command: KeysCommand::GenerateKek,
        } => tessera::token::Kek::generate_text().map(|k| println!("{k}")),
        Command::Keys {
            command: KeysCommand::GenerateApiKey,
        } => tessera::token::Kek::generate_text().map(|key| {
            use sha2::Digest;
            println!("key:    tsr_ak_{key}");
            println!(
                "sha256: {}",
                hex::encode(sha2::Sha256::digest(format!("tsr_ak_{key}").as_bytes()))
            );
        }),
        Command::Keys {
            command: KeysCommand::Rotate { config },
        } => rotate_keys(config),
        Command::Keys {
            command: KeysCommand::List { config },
        } => list_keys(config),
        Command::Users { command } => users(command),
        Command::Sessions { command, config } => sessions(command, config),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "tessera", &mut script);
            println!("{}", String::from_utf8_lossy(&script).trim_end());
            Ok(())
        }
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
    let config_file = config.clone();
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
        app.run_until_signalled(config_file).await
    })
}

fn ip(addr: &str) -> String {
    addr.rsplit_once(':')
        .map(|(h, _)| h.to_owned())
        .unwrap_or_default()
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        anyhow::bail!(
            "no password on standard input (e.g. `printf '%s' \"$PASSWORD\" | tessera users ...`)"
        );
    }
    Ok(password)
}

fn users(command: UsersCommand) -> anyhow::Result<()> {
    use tessera::authn::directory::{append, UserEntry};
    use tessera::authn::password::hash_password;
    match command {
        UsersCommand::HashPassword => {
            println!("{}", hash_password(&read_password()?));
            Ok(())
        }
        UsersCommand::Add {
            file,
            id,
            username,
            roles,
            totp,
        } => {
            let password_hash = hash_password(&read_password()?);
            let (totp_secret, uri) = if totp {
                let (secret, uri) = tessera::authn::totp::enrol(&username, "Tessera")?;
                (Some(secret), Some(uri))
            } else {
                (None, None)
            };
            append(
                &file,
                UserEntry {
                    id: id.clone(),
                    username,
                    password_hash,
                    roles,
                    totp_secret,
                    disabled: false,
                },
            )?;
            eprintln!("added user {id} to {}", file.display());
            if let Some(uri) = uri {
                println!("{uri}");
            }
            Ok(())
        }
    }
}

/// Runs a one-off command's work on a small runtime of its own.
fn on_redis(work: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(work)
}

fn config_check(config: Option<PathBuf>, offline: bool) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    println!("{}", settings.redacted());
    if offline {
        return Ok(());
    }
    on_redis(async move {
        let mut failed = Vec::new();
        for target in settings.region_targets()? {
            let redis_settings = settings.redis_for(&target);
            let name = format!(
                "region {} ({})",
                target.region,
                tessera::store::connection::redact_url(&target.url)
            );
            let reports = match tessera::store::RedisConnections::connect(&redis_settings).await {
                Ok(redis) => tessera::store::health::report(&redis).await,
                Err(e) => Err(e),
            };
            let reports = match reports {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("# {name}: UNREACHABLE: {e:#}");
                    failed.push(name);
                    continue;
                }
            };
            for (i, r) in reports.iter().enumerate() {
                let node = if reports.len() > 1 {
                    format!("{name}, primary {}", i + 1)
                } else {
                    name.clone()
                };
                eprintln!(
                    "# {node}: Redis {}, maxmemory-policy {}, AOF {}, last RDB save {}, role {}, {} replica(s)",
                    r.version,
                    r.maxmemory_policy,
                    if r.aof { "on" } else { "off" },
                    if r.rdb_last_save.is_empty() { "-" } else { &r.rdb_last_save },
                    r.role,
                    r.replicas
                );
                for warning in r.warnings(settings.redis_wait_replicas) {
                    eprintln!("#   warning: {warning}");
                }
                let problems = r.problems();
                for problem in &problems {
                    eprintln!("#   PROBLEM: {problem}");
                }
                if !problems.is_empty() {
                    failed.push(node);
                }
            }
        }
        anyhow::ensure!(
            failed.is_empty(),
            "the settings are valid, but Tessera cannot use: {}",
            failed.join("; ")
        );
        Ok(())
    })
}

fn rotate_keys(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    on_redis(async move {
        let redis = tessera::store::RedisConnections::connect(&settings.home_redis()).await?;
        let (kek, _) = tessera::token::Kek::load(
            settings.kek.as_ref().map(|k| k.expose()),
            &settings.keys_dir,
            false,
        )?;
        let layout = tessera::store::KeyLayout::new(settings.key_prefix.clone());
        let now = tessera::clock::Clock::now_ms(&tessera::clock::SystemClock);
        let ring = tessera::store::keyring::rotate(
            &redis.pool,
            &layout,
            &kek,
            &settings.rotation_policy(),
            now,
        )
        .await?;
        print_ring(&ring, now);
        Ok(())
    })
}

/// One line per key: kid, algorithm, state now, signs from, retires.
fn print_ring(ring: &tessera::token::StoredRing, now: i64) {
    let signer = ring
        .keys
        .iter()
        .filter(|k| k.sign_from <= now && k.retire_at.is_none_or(|r| r > now))
        .max_by_key(|k| (k.sign_from, k.kid.clone()))
        .map(|k| k.kid.clone());
    for key in &ring.keys {
        let state = if key.retire_at.is_some_and(|r| r <= now) {
            "retired"
        } else if Some(&key.kid) == signer.as_ref() {
            "signing"
        } else {
            "published"
        };
        println!(
            "{}  {}  {state}  signs from {}  retires {}",
            key.kid,
            key.alg.name(),
            tessera::http::views::rfc3339(key.sign_from),
            key.retire_at
                .map(tessera::http::views::rfc3339)
                .unwrap_or_else(|| "-".into())
        );
    }
}

fn list_keys(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    on_redis(async move {
        let redis = tessera::store::RedisConnections::connect(&settings.home_redis()).await?;
        let layout = tessera::store::KeyLayout::new(settings.key_prefix.clone());
        let ring = tessera::store::keyring::load_current(&redis.pool, &layout)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no key ring in Redis yet: start a node first"))?;
        print_ring(
            &ring,
            tessera::clock::Clock::now_ms(&tessera::clock::SystemClock),
        );
        Ok(())
    })
}

fn sessions(command: SessionsCommand, config: Option<PathBuf>) -> anyhow::Result<()> {
    use tessera::session::UserId;
    let settings = Settings::load(config.as_deref())?;
    on_redis(async move {
        let service = tessera::app::connect_service(&settings).await?;
        let now = tessera::clock::Clock::now_ms(&tessera::clock::SystemClock);
        let actor = tessera::audit::Actor::admin_key("cli");
        match command {
            SessionsCommand::List { user } => {
                let user = UserId::parse(&user)?;
                let listing = service.list(&user, now).await?;
                for session in &listing.sessions {
                    let view = tessera::http::views::SessionView::new(session, false);
                    println!("{}", serde_json::to_string(&view)?);
                }
                for region in &listing.unavailable_regions {
                    eprintln!("tessera: region {region} did not answer: its sessions are missing");
                }
            }
            SessionsCommand::Revoke {
                user,
                session: Some(id),
            } => {
                let user = UserId::parse(&user)?;
                let session = service
                    .find(&user, &id, now)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("no live session {id} of user {user}"))?;
                service
                    .revoke(&session, &actor, "revoked with the CLI")
                    .await?;
                println!("revoked 1");
            }
            SessionsCommand::Revoke {
                user,
                session: None,
            } => {
                let user = UserId::parse(&user)?;
                let n = service
                    .revoke_all(&user, &actor, "revoked with the CLI")
                    .await?;
                println!("revoked {n}");
            }
        }
        Ok(())
    })
}
