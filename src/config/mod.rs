//! Typed settings from an optional TOML file and `TESSERA_*` environment variables (the
//! environment wins), validated once at start with errors that name the setting to fix.

use crate::session::policy::{LimitPolicy, OnLimit, SessionPolicy};
use crate::session::Region;
use crate::token::{IssuerSettings, SigningAlg};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod regions;
pub use regions::{RegionRedis, RegionTarget, RegionsSetting};

/// A secret setting: `Debug` and serialization (`tessera config check`) never show it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// `trusted_proxies`: CIDRs, or bare addresses meaning one host, read straight into `IpNet`.
mod proxy_nets {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn parse(raw: &str) -> Result<ipnet::IpNet, String> {
        raw.parse::<ipnet::IpNet>()
            .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| format!("trusted_proxies: '{raw}' is not a CIDR or IP address"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|raw| parse(raw).map_err(serde::de::Error::custom))
            .collect()
    }

    pub fn serialize<S: Serializer>(nets: &[ipnet::IpNet], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(nets.iter().map(|n| n.to_string()))
    }
}

/// One named admin API key (config file only).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminKeyConfig {
    /// Shown as the audit actor (`admin-key:<name>`).
    pub name: String,
    /// SHA-256 of the key, hex.
    pub sha256: String,
    /// Any of `sessions`, `introspect`, `revoke`, `revocations`, `keys`, `audit`.
    pub scopes: Vec<crate::scope::Scope>,
    /// After this instant (RFC 3339) the key is refused; lets old and new keys overlap.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// Every setting, with its default. Field `foo_bar` is `foo_bar` in the file and
/// `TESSERA_FOO_BAR` in the environment; lists are comma-separated in the environment.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct Settings {
    /// Public listener (browsers, apps).
    pub public_addr: String,
    /// Admin listener: loopback by default, because it mints sessions for any user.
    pub admin_addr: String,
    /// The home region's Redis, and every region's that names none of its own. A cluster:
    /// `redis+cluster://h:p,h:p` (or `redis_cluster = true`).
    pub redis_url: String,
    /// `redis_url` lists the seed nodes of a Redis Cluster.
    pub redis_cluster: bool,
    /// A Redis per region, from the environment: `eu=redis://…,us=redis+cluster://h:p,h:p`
    /// (adds to and overrides `[regions.<name>]`).
    pub region_redis: String,
    pub redis_connect_timeout_ms: u64,
    /// A Redis command slower than this fails the request closed (503).
    pub redis_command_timeout_ms: u64,
    pub redis_pool_size: usize,
    /// PEM file of the CA that signed the Redis servers' certificates (`rediss://`); unset:
    /// the system's roots.
    pub redis_ca_file: Option<PathBuf>,
    /// Replicas that must confirm a revocation (`WAIT`) before it is acknowledged; 0: none.
    /// Set it to 1 where a region's Redis has a replica.
    pub redis_wait_replicas: u32,
    /// How long a revocation waits for those replicas; past it the answer is 503.
    pub redis_wait_timeout_ms: u64,
    /// Prefix of every Redis key (lets several deployments or tests share one Redis).
    pub key_prefix: String,
    /// The all-scopes admin API key (at least 32 characters), audited as `admin-key:admin`.
    pub admin_api_key: Option<Secret>,
    /// Named, scoped admin keys, stored as SHA-256 hex digests (`tessera keys generate-api-key`).
    pub admin_keys: Vec<AdminKeyConfig>,
    /// `iss` of minted tokens.
    pub issuer: String,
    /// `aud` when a client asks for none.
    pub audience: String,
    /// Further audiences clients may ask for (allow-list).
    pub audiences: Vec<String>,
    pub signing_alg: SigningAlg,
    /// Access-token lifetime; at most 900 (15 minutes).
    pub token_lifetime_secs: i64,
    /// Clock skew tolerated when validating tokens; at most 60.
    pub token_leeway_secs: i64,
    /// Directory holding the key-encryption key file `kek` (created on first start if missing).
    pub keys_dir: PathBuf,
    /// The key-encryption key itself (base64url, 32 bytes); overrides `keys_dir/kek`.
    pub kek: Option<Secret>,
    /// This node's home region: new sessions live there.
    pub region: Region,
    /// Every region of the deployment (defaults to the home region alone): a list of names
    /// sharing `redis_url`, or `[regions.<name>]` tables with `redis_url` and `cluster`.
    pub regions: RegionsSetting,
    pub idle_timeout_secs: i64,
    pub absolute_timeout_secs: i64,
    pub max_sessions_per_user: u32,
    pub on_session_limit: OnLimit,
    /// Per-role overrides of `max_sessions_per_user` (file: `[role_session_limits] admin = 2`);
    /// a user's strictest matching role wins.
    pub role_session_limits: std::collections::HashMap<String, u32>,
    /// Origins allowed on cookie-authenticated unsafe requests (e.g. `https://app.example.com`).
    /// Empty: the `Origin` must match the request's `Host`.
    pub allowed_origins: Vec<String>,
    /// Opt-in for apps on sibling subdomains (e.g. `example.com` for `app.example.com` and
    /// `auth.example.com`): the session cookie becomes `__Secure-tessera` with this `Domain`,
    /// sent to every host under it. Unset (default): `__Host-tessera`, this exact host only.
    pub cookie_domain: Option<String>,
    /// Largest JSON body accepted, in bytes.
    pub max_body_bytes: usize,
    /// actix worker threads per listener (default: one per core).
    pub workers: Option<usize>,
    /// `json` (production) or `pretty` (development).
    pub log_format: String,
    /// tracing filter, e.g. `info` or `tessera=debug,info`.
    pub log: String,
    /// How often `maxmemory_policy` and the key ring are re-read.
    pub redis_check_interval_secs: u64,
    /// On SIGTERM/SIGINT: how long readiness answers 503 while the node still serves (so load
    /// balancers stop sending), before the listeners close.
    pub shutdown_drain_secs: u64,
    /// Then: how long requests in flight may take to finish before they are dropped.
    pub shutdown_timeout_secs: u64,
    /// The users file for Tessera's own login (TOML; see README). Unset: login is disabled.
    pub users_file: Option<PathBuf>,
    /// How often the users file is checked for changes.
    pub users_reload_secs: u64,
    /// Proxies (CIDRs) whose `X-Forwarded-For` is believed; everyone else's is ignored.
    #[serde(with = "proxy_nets")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Password hashes computed at once; more wait up to `argon2_queue_ms`, then get 503.
    pub argon2_concurrency: usize,
    pub argon2_queue_ms: u64,
    /// Login attempts per client IP per `login_ip_window_secs`.
    pub login_ip_limit: u32,
    pub login_ip_window_secs: u64,
    /// Failures per username before escalating delays (1 s, 2 s, 4 s … up to the max).
    pub login_free_failures: u32,
    /// Failures per username over every network before *failing* networks wait longer (a
    /// network that never failed is never delayed).
    pub login_global_free_failures: u32,
    pub login_max_delay_secs: u64,
    /// Wrong second-factor codes per user (all tickets, networks, step-ups) before delays.
    pub totp_free_failures: u32,
    /// Longest wait between second-factor codes of one user under attack.
    pub totp_max_delay_secs: u64,
    /// Successful logins per user per `login_success_window_secs`.
    pub login_success_limit: u32,
    pub login_success_window_secs: u64,
    /// How long an operation-bound step-up grant stays usable.
    pub step_up_grant_secs: i64,
    /// Ending *other* sessions needs an authentication (login or step-up) this recent.
    pub recent_auth_secs: i64,
    /// A session used from another network or browser family: `allow` (audit only),
    /// `require_step_up` (high-risk routes need a new step-up) or `revoke`.
    pub anomaly_policy: crate::session::device::AnomalyPolicy,
    /// Networks compared at this prefix length (IPv4 /16, IPv6 /48 by default).
    pub anomaly_ipv4_prefix: u8,
    pub anomaly_ipv6_prefix: u8,
    /// The revocation feed counts as stale after this long without a heartbeat (readiness fails).
    pub revocation_max_staleness_secs: u64,
    /// Native clients (refresh tokens): idle and absolute session lifetime.
    pub native_idle_timeout_secs: i64,
    pub native_absolute_timeout_secs: i64,
    /// The immediate predecessor of a refresh token gets the same successor within this window
    /// (lost responses, concurrent refreshes); at most 60.
    pub refresh_grace_secs: i64,
    /// How long verifiers may cache the JWKS (its `max-age`); a rotated key is published this
    /// long before it signs.
    pub jwks_cache_secs: i64,
    /// Session records the near cache keeps per region Redis, for the low-risk read (0: off).
    /// Kept coherent by Redis tracking; see the README's "Near cache".
    pub session_cache_entries: usize,
    /// Rotate the signing key automatically this often (days; unset: only on demand).
    pub key_rotation_days: Option<u32>,
    /// With a stale feed, refuse access tokens (503) instead of accepting them unchecked.
    /// Default off: the JWT path keeps working while Redis is down, as designed.
    pub revocation_fail_closed: bool,
    /// How long one full pass of the sweep for revocation outboxes nobody drained takes (crash
    /// recovery; a fixed 65,536 `EXISTS` per pass, spread over one slice a second).
    pub outbox_sweep_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            public_addr: "127.0.0.1:8080".into(),
            admin_addr: "127.0.0.1:8081".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_cluster: false,
            region_redis: String::new(),
            redis_connect_timeout_ms: 1000,
            redis_command_timeout_ms: 1000,
            redis_pool_size: 8,
            redis_ca_file: None,
            redis_wait_replicas: 0,
            redis_wait_timeout_ms: 500,
            key_prefix: "tsr".into(),
            admin_api_key: None,
            admin_keys: Vec::new(),
            issuer: "http://localhost:8080".into(),
            audience: "api".into(),
            audiences: Vec::new(),
            signing_alg: SigningAlg::Es256,
            token_lifetime_secs: 300,
            token_leeway_secs: 5,
            keys_dir: PathBuf::from(".tessera/keys"),
            kek: None,
            region: Region::parse("local").expect("a valid region name"),
            regions: RegionsSetting::default(),
            idle_timeout_secs: 30 * 60,
            absolute_timeout_secs: 24 * 60 * 60,
            max_sessions_per_user: 5,
            on_session_limit: OnLimit::Evict,
            role_session_limits: Default::default(),
            allowed_origins: Vec::new(),
            cookie_domain: None,
            max_body_bytes: 16 * 1024,
            workers: None,
            log_format: "json".into(),
            log: "info".into(),
            redis_check_interval_secs: 30,
            shutdown_drain_secs: 5,
            shutdown_timeout_secs: 10,
            users_file: None,
            users_reload_secs: 2,
            trusted_proxies: Vec::new(),
            argon2_concurrency: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            argon2_queue_ms: 2000,
            login_ip_limit: 30,
            login_ip_window_secs: 60,
            login_free_failures: 5,
            login_global_free_failures: 20,
            login_max_delay_secs: 300,
            totp_free_failures: 3,
            totp_max_delay_secs: 3600,
            login_success_limit: 30,
            login_success_window_secs: 600,
            step_up_grant_secs: 300,
            recent_auth_secs: 600,
            anomaly_policy: crate::session::device::AnomalyPolicy::Allow,
            anomaly_ipv4_prefix: 16,
            anomaly_ipv6_prefix: 48,
            revocation_max_staleness_secs: 10,
            jwks_cache_secs: 300,
            session_cache_entries: 100_000,
            native_idle_timeout_secs: 7 * 24 * 3600,
            native_absolute_timeout_secs: 30 * 24 * 3600,
            refresh_grace_secs: 10,
            key_rotation_days: None,
            revocation_fail_closed: false,
            outbox_sweep_secs: 30,
        }
    }
}

const LIST_KEYS: &[&str] = &["audiences", "regions", "allowed_origins", "trusted_proxies"];

/// Refuses a config file that is not TOML, naming the line and column only: the parser's own
/// message quotes the offending line, which may hold `admin_api_key` or `kek`.
fn check_toml(path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    if let Err(e) = toml::from_str::<toml::Table>(&text) {
        let at = e.span().map_or(0, |span| span.start).min(text.len());
        let before = text.get(..at).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        bail!(
            "config file {} is not valid TOML at line {line}, column {column} (the line is not \
             shown: it may hold a secret)",
            path.display()
        );
    }
    Ok(())
}

impl Settings {
    /// Defaults, then the file (if any), then `TESSERA_*` variables; then validation.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.exists() {
                bail!("config file {} does not exist", path.display());
            }
            check_toml(path)?;
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        let mut env = config::Environment::with_prefix("TESSERA")
            .prefix_separator("_")
            .try_parsing(true)
            .list_separator(",");
        for key in LIST_KEYS {
            env = env.with_list_parse_key(key);
        }
        let settings: Settings = builder
            .add_source(env)
            .build()
            .context("cannot read settings")?
            .try_deserialize()
            .context("invalid setting (check the value's type; lists are comma-separated)")?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every rule and names the setting (file key and environment variable) at fault.
    pub fn validate(&self) -> anyhow::Result<()> {
        fn bad(field: &str, why: impl std::fmt::Display) -> anyhow::Error {
            anyhow::anyhow!(
                "setting `{field}` (TESSERA_{}): {why}",
                field.to_uppercase()
            )
        }
        for (field, addr) in [
            ("public_addr", &self.public_addr),
            ("admin_addr", &self.admin_addr),
        ] {
            addr.parse::<std::net::SocketAddr>()
                .map_err(|_| bad(field, format!("'{addr}' is not an IP:port address")))?;
        }
        if let Err(e) =
            crate::store::connection::Topology::parse(&self.redis_url, self.redis_cluster)
        {
            return Err(bad("redis_url", e));
        }
        for target in self.region_targets()? {
            let field = if target.url == self.redis_url {
                "redis_url"
            } else {
                "regions"
            };
            crate::store::connection::Topology::parse(&target.url, target.cluster)
                .and_then(|t| t.check_transport())
                .map_err(|e| {
                    bad(
                        field,
                        format!(
                            "region '{}': {} {e}",
                            target.region,
                            crate::store::connection::redact_url(&target.url)
                        ),
                    )
                })?;
        }
        if let Some(path) = &self.redis_ca_file {
            let pem = std::fs::read_to_string(path).unwrap_or_default();
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(bad(
                    "redis_ca_file",
                    format!(
                        "{} is not a readable PEM file of certificates (the CA's, not a key)",
                        path.display()
                    ),
                ));
            }
            if !self
                .region_targets()?
                .iter()
                .any(|t| t.url.starts_with("rediss"))
            {
                return Err(bad(
                    "redis_ca_file",
                    "is set, but no Redis URL uses rediss://, so it would be ignored",
                ));
            }
        }
        if self.redis_wait_replicas > 0 && !(10..=10_000).contains(&self.redis_wait_timeout_ms) {
            return Err(bad(
                "redis_wait_timeout_ms",
                "must be between 10 and 10000 ms (0 would make WAIT block forever)",
            ));
        }
        if let Some(domain) = &self.cookie_domain {
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            };
            if domain.len() > 253
                || domain.split('.').count() < 2
                || !domain.split('.').all(label_ok)
            {
                return Err(bad(
                    "cookie_domain",
                    format!("'{domain}' is not a domain name like example.com (no scheme, port or leading dot)"),
                ));
            }
        }
        if let Some(key) = &self.admin_api_key {
            if key.expose().len() < 32 {
                return Err(bad(
                    "admin_api_key",
                    "must be at least 32 characters (e.g. `openssl rand -hex 32`)",
                ));
            }
        }
        for key in &self.admin_keys {
            let field = format!("admin_keys[{}]", key.name);
            if key.name.is_empty() || key.name.len() > 64 {
                return Err(bad(
                    "admin_keys",
                    "every key needs a name of 1-64 characters",
                ));
            }
            if key.sha256.len() != 64 || hex::decode(&key.sha256).is_err() {
                return Err(bad(
                    &field,
                    "sha256 must be 64 hex digits (`tessera keys generate-api-key`)",
                ));
            }
            if let Some(at) = &key.expires_at {
                time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| {
                        bad(
                            &field,
                            "expires_at must be RFC 3339, e.g. 2027-01-01T00:00:00Z",
                        )
                    })?;
            }
        }
        if !(0..=60).contains(&self.refresh_grace_secs) {
            return Err(bad(
                "refresh_grace_secs",
                "must be between 0 and 60 seconds",
            ));
        }
        if self.native_idle_timeout_secs < 1
            || self.native_absolute_timeout_secs < self.native_idle_timeout_secs
        {
            return Err(bad(
                "native_absolute_timeout_secs",
                "native timeouts must be positive and absolute >= idle",
            ));
        }
        if self.session_cache_entries > 10_000_000 {
            return Err(bad(
                "session_cache_entries",
                "must be at most 10000000 (about 6 GB); 0 turns the near cache off",
            ));
        }
        if !(0..=86_400).contains(&self.jwks_cache_secs) {
            return Err(bad("jwks_cache_secs", "must be between 0 and 86400"));
        }
        if self.key_rotation_days == Some(0) {
            return Err(bad("key_rotation_days", "must be at least 1 (or unset)"));
        }
        if !(30..=900).contains(&self.token_lifetime_secs) {
            return Err(bad(
                "token_lifetime_secs",
                "must be between 30 and 900 seconds (access tokens live minutes; at most 15)",
            ));
        }
        if !(0..=60).contains(&self.token_leeway_secs) {
            return Err(bad("token_leeway_secs", "must be between 0 and 60 seconds"));
        }
        if self.issuer.is_empty() {
            return Err(bad("issuer", "must not be empty"));
        }
        if self.audience.is_empty() {
            return Err(bad("audience", "must not be empty"));
        }
        if self.idle_timeout_secs < 1 {
            return Err(bad("idle_timeout_secs", "must be at least 1"));
        }
        if self.absolute_timeout_secs < self.idle_timeout_secs {
            return Err(bad(
                "absolute_timeout_secs",
                "must be at least idle_timeout_secs",
            ));
        }
        if self.max_sessions_per_user == 0 {
            return Err(bad("max_sessions_per_user", "must be at least 1"));
        }
        if !matches!(self.log_format.as_str(), "json" | "pretty") {
            return Err(bad("log_format", "must be json or pretty"));
        }
        if self.max_body_bytes < 1024 {
            return Err(bad("max_body_bytes", "must be at least 1024"));
        }
        if self.key_prefix.is_empty() || self.key_prefix.contains(['{', '}', ' ']) {
            return Err(bad(
                "key_prefix",
                "must be non-empty, without braces or spaces",
            ));
        }
        if self.argon2_concurrency == 0 {
            return Err(bad("argon2_concurrency", "must be at least 1"));
        }
        if self.login_ip_limit == 0 || self.login_success_limit == 0 {
            return Err(bad("login_ip_limit", "limits must be at least 1"));
        }
        if !(10..=3600).contains(&self.step_up_grant_secs) {
            return Err(bad("step_up_grant_secs", "must be between 10 and 3600"));
        }
        if self.recent_auth_secs < 1 {
            return Err(bad("recent_auth_secs", "must be at least 1"));
        }
        if let Some(path) = &self.users_file {
            if !path.exists() {
                return Err(bad(
                    "users_file",
                    format!("{} does not exist", path.display()),
                ));
            }
        }
        Ok(())
    }

    pub fn trusted_proxy_nets(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies.clone()
    }

    pub fn anomaly_rules(&self) -> crate::session::device::AnomalyRules {
        crate::session::device::AnomalyRules {
            policy: self.anomaly_policy,
            ipv4_prefix: self.anomaly_ipv4_prefix.min(32),
            ipv6_prefix: self.anomaly_ipv6_prefix.min(128),
        }
    }

    pub fn login_limits(&self) -> crate::authn::limits::LoginLimits {
        crate::authn::limits::LoginLimits {
            per_ip: self.login_ip_limit,
            ip_window_secs: self.login_ip_window_secs.max(1),
            free_failures: self.login_free_failures,
            global_free_failures: self.login_global_free_failures,
            max_delay_secs: self.login_max_delay_secs.max(1),
            totp_free_failures: self.totp_free_failures,
            totp_max_delay_secs: self.totp_max_delay_secs.max(1),
            successes: self.login_success_limit,
            success_window_secs: self.login_success_window_secs.max(1),
        }
    }

    /// Publish delay and retirement delay of a key rotation, in ms.
    pub fn rotation_policy(&self) -> crate::store::keyring::RotationPolicy {
        crate::store::keyring::RotationPolicy {
            alg: self.signing(),
            publish_delay_ms: self.jwks_cache_secs * 1000,
            retire_after_ms: (crate::token::issuer::MAX_LIFETIME_SECS + self.token_leeway_secs)
                * 1000,
        }
    }

    pub fn home_region(&self) -> Region {
        self.region.clone()
    }

    /// Every region, the home region first.
    pub fn known_regions(&self) -> Vec<Region> {
        self.region_targets()
            .map(|t| t.into_iter().map(|t| t.region).collect())
            .unwrap_or_else(|_| vec![self.home_region()])
    }

    /// Every region with the Redis that holds its sessions, the home region first.
    pub fn region_targets(&self) -> anyhow::Result<Vec<RegionTarget>> {
        regions::targets(
            &self.region,
            &self.regions,
            &self.region_redis,
            &self.redis_url,
            self.redis_cluster,
        )
        .map_err(|(field, why)| {
            anyhow::anyhow!(
                "setting `{field}` (TESSERA_{}): {why}",
                field.to_uppercase()
            )
        })
    }

    /// How long a pushed revocation lives: as long as any token it concerns can.
    pub fn revocation_retention_ms(&self) -> i64 {
        (crate::token::issuer::MAX_LIFETIME_SECS + self.token_leeway_secs) * 1000
    }

    /// How to reach the home region's Redis (where this node creates sessions, keeps the key
    /// ring it rotates, its audit trail and its login state).
    pub fn home_redis(&self) -> crate::store::RedisSettings {
        match self.region_targets() {
            Ok(targets) => self.redis_for(&targets[0]),
            Err(_) => self.redis(),
        }
    }

    /// How to reach the Redis at `target`.
    pub fn redis_for(&self, target: &RegionTarget) -> crate::store::RedisSettings {
        crate::store::RedisSettings {
            url: target.url.clone(),
            cluster: target.cluster,
            region: target.region.as_str().to_owned(),
            ..self.redis()
        }
    }

    /// The longest any session can live: browser or native absolute timeout.
    pub fn longest_session_ms(&self) -> i64 {
        self.absolute_timeout_secs
            .max(self.native_absolute_timeout_secs)
            .saturating_mul(1000)
    }

    pub fn session_policy(&self) -> SessionPolicy {
        SessionPolicy {
            idle_timeout_ms: self.idle_timeout_secs * 1000,
            absolute_timeout_ms: self.absolute_timeout_secs * 1000,
            renew_divisor: 5,
            // Half as long as a pushed revocation lives (see `SessionService::authenticate`): the
            // other half is the margin for clocks that disagree between nodes.
            recheck_ms: (crate::token::issuer::MAX_LIFETIME_SECS + self.token_leeway_secs) * 500,
        }
    }

    pub fn limit_policy(&self) -> LimitPolicy {
        LimitPolicy {
            max_sessions: self.max_sessions_per_user,
            on_limit: self.on_session_limit,
        }
    }

    pub fn signing(&self) -> SigningAlg {
        self.signing_alg
    }

    pub fn issuer_settings(&self) -> IssuerSettings {
        let mut audiences = vec![self.audience.clone()];
        audiences.extend(
            self.audiences
                .iter()
                .filter(|a| **a != self.audience)
                .cloned(),
        );
        IssuerSettings {
            issuer: self.issuer.clone(),
            default_audience: self.audience.clone(),
            audiences,
            lifetime_secs: self.token_lifetime_secs,
            leeway_secs: self.token_leeway_secs,
        }
    }

    pub fn redis(&self) -> crate::store::RedisSettings {
        crate::store::RedisSettings {
            url: self.redis_url.clone(),
            cluster: self.redis_cluster,
            connect_timeout: Duration::from_millis(self.redis_connect_timeout_ms),
            command_timeout: Duration::from_millis(self.redis_command_timeout_ms),
            pool_size: self.redis_pool_size,
            ca_file: self.redis_ca_file.clone(),
            wait_replicas: self.redis_wait_replicas,
            wait_timeout: Duration::from_millis(self.redis_wait_timeout_ms),
            region: self.region.as_str().to_owned(),
        }
    }

    /// The settings with secrets replaced (they serialize as `<redacted>`), for
    /// `tessera config check`.
    pub fn redacted(&self) -> String {
        let mut copy = self.clone();
        copy.redis_url = crate::store::connection::redact_url(&copy.redis_url);
        copy.region_redis = regions::parse_region_redis(&copy.region_redis)
            .map(|list| {
                list.iter()
                    .map(|(r, url)| format!("{r}={}", crate::store::connection::redact_url(url)))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_else(|_| "<invalid>".into());
        if let RegionsSetting::Table(table) = &mut copy.regions {
            for entry in table.values_mut() {
                if let Some(url) = &mut entry.redis_url {
                    *url = crate::store::connection::redact_url(url);
                }
            }
        }
        serde_json::to_string_pretty(&copy).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_setting_and_its_variable() {
        let s = Settings {
            token_lifetime_secs: 1200,
            ..Settings::default()
        };
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("token_lifetime_secs"), "{err}");
        assert!(err.contains("TESSERA_TOKEN_LIFETIME_SECS"), "{err}");

        let s = Settings {
            admin_api_key: Some("short".into()),
            ..Settings::default()
        };
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("admin_api_key"));

        let s = Settings {
            regions: RegionsSetting::Names(vec![Region::parse("eu").unwrap()]),
            region: Region::parse("us").unwrap(),
            ..Settings::default()
        };
        assert!(s.validate().unwrap_err().to_string().contains("regions"));

        // WAIT 1 0 would block forever.
        let s = Settings {
            redis_wait_replicas: 1,
            redis_wait_timeout_ms: 0,
            ..Settings::default()
        };
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("TESSERA_REDIS_WAIT_TIMEOUT_MS"));
        let s = Settings {
            redis_ca_file: Some("/nonexistent/ca.pem".into()),
            ..Settings::default()
        };
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("redis_ca_file"));
    }

    #[test]
    fn redacted_view_hides_secrets() {
        let s = Settings {
            admin_api_key: Some("k".repeat(40).into()),
            kek: Some("secret-kek".into()),
            redis_url: "redis://:pw@host:6379".into(),
            ..Settings::default()
        };
        let text = s.redacted();
        assert!(!text.contains(&"k".repeat(40)));
        assert!(!text.contains("secret-kek"));
        assert!(!text.contains(":pw@"));
        assert!(
            !format!("{s:?}").contains("secret-kek"),
            "Debug hides secrets too"
        );
    }

    #[test]
    fn typed_settings_refuse_bad_values_while_reading_and_name_them() {
        for (line, needle) in [
            ("region = \"EU!\"", "region name"),
            (
                "trusted_proxies = [\"10.0.0.0/8\", \"not-an-ip\"]",
                "trusted_proxies",
            ),
            ("signing_alg = \"HS256\"", "HS256"),
            (
                "[[admin_keys]]\nname = \"x\"\nsha256 = \"00\"\nscopes = [\"root\"]",
                "root",
            ),
        ] {
            let path =
                std::env::temp_dir().join(format!("tessera-typed-{}.toml", uuid::Uuid::new_v4()));
            std::fs::write(&path, format!("{line}\n")).unwrap();
            let err = format!("{:#}", Settings::load(Some(&path)).unwrap_err());
            let _ = std::fs::remove_file(&path);
            assert!(err.contains(needle), "{line}: {err}");
        }
    }
}
