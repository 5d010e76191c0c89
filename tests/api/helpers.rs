//! Test harness: real `redis-server` processes on free ports and Tessera nodes on port 0.

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Response;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tessera::{Application, Settings};

pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdef0123456789";
pub const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free port whose cluster-bus port (+10000) is free and valid too.
fn cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

pub fn random_name(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// The Redis ACL user every test node connects as: the README's least-privilege rules
/// (`deploy/redis/tessera-acl.txt`), with the key pattern widened from `tsr:*` to the test
/// prefixes (`t<uuid>:…`). The test's own connections use the default user.
pub const ACL_USER: &str = "tessera";
pub const ACL_PASSWORD: &str = "tessera-test-password";

/// `redis-server` arguments that create [`ACL_USER`] with the documented rules.
pub fn acl_user_args() -> Vec<String> {
    let rules = include_str!("../../deploy/redis/tessera-acl.txt");
    let mut args = vec![
        "--user".to_owned(),
        ACL_USER.to_owned(),
        "on".to_owned(),
        format!(">{ACL_PASSWORD}"),
    ];
    args.extend(
        rules
            .split_whitespace()
            .map(|rule| if rule == "~tsr:*" { "~t*" } else { rule }.to_owned()),
    );
    args
}

/// What a test Redis refused Tessera's user (`ACL LOG`), as readable lines; empty when all
/// went through.
pub fn acl_refusals(conn: &mut impl redis::ConnectionLike) -> Vec<String> {
    let log: Vec<Vec<redis::Value>> = redis::cmd("ACL").arg("LOG").query(conn).unwrap_or_default();
    log.iter()
        .map(|entry| {
            let text: Vec<String> = entry
                .iter()
                .map(|v| match v {
                    redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    redis::Value::SimpleString(s) => s.clone(),
                    redis::Value::Int(i) => i.to_string(),
                    other => format!("{other:?}"),
                })
                .collect();
            text.join(" ")
        })
        .collect()
}

/// A `redis-server` owned by one test: killed on drop, and by a watchdog if the test process
/// dies first (so no stray servers outlive a crashed run).
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    extra: Vec<String>,
    /// The suite's shared server: under the `regions` and `cluster` topologies, nodes built on
    /// it get the topology's Redis layout instead (see `test_settings`).
    shared: bool,
    /// TLS only (`rediss://`), with this test CA's server certificate.
    tls: Option<TestCa>,
}

/// A certificate authority made for one test (`openssl`), and a server certificate it signed
/// for `127.0.0.1` and `localhost`.
#[derive(Clone)]
pub struct TestCa {
    pub dir: PathBuf,
}

impl TestCa {
    pub fn generate() -> Self {
        let dir = std::env::temp_dir().join(random_name("tessera-ca-"));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = Self { dir };
        let steps = [
            "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
             -out ca.crt -days 2 -subj /CN=tessera-test-ca",
            "req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key \
             -out server.csr -subj /CN=localhost",
            "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
             -days 2 -extfile san.cnf",
        ];
        std::fs::write(
            ca.dir.join("san.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        for step in steps {
            let args: Vec<&str> = step.split_whitespace().collect();
            let out = Command::new("openssl")
                .args(&args)
                .current_dir(&ca.dir)
                .output()
                .expect("openssl must be installed (scripts/ensure-redis installs it)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ca
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
}

/// The Redis layout the suite runs against, from `TESSERA_TEST_TOPOLOGY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One Redis: regions `eu` (home) and `us` both on the shared server.
    Single,
    /// Two regions on two servers: `eu` on the shared server, `us` on a second one.
    Regions,
    /// A 3-primary Redis Cluster holding both regions.
    Cluster,
}

pub fn topology() -> Topology {
    match std::env::var("TESSERA_TEST_TOPOLOGY").as_deref() {
        Ok("regions") => Topology::Regions,
        Ok("cluster") => Topology::Cluster,
        Ok("single") | Err(_) => Topology::Single,
        Ok(other) => panic!("TESSERA_TEST_TOPOLOGY={other}: expected single, regions or cluster"),
    }
}

/// A shared server for this process: `scripts/test` starts one for the whole run (its port in
/// `var`); without it, one for this test process.
fn shared_port(var: &'static str, slot: &'static std::sync::OnceLock<u16>) -> u16 {
    *slot.get_or_init(|| {
        if let Some(port) = std::env::var(var).ok().and_then(|p| p.parse().ok()) {
            return port;
        }
        let mut own = RedisServer::start();
        let port = own.port;
        // Kept running for the rest of this process (the watchdog ends it with us).
        own.child.take();
        own.dir = PathBuf::new();
        port
    })
}

impl RedisServer {
    /// A server of this test's own: for tests that kill, stop, restart or reconfigure Redis.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// The suite's shared server; every test keeps to its own key prefix (`test_settings`).
    /// `scripts/test` starts one for the whole run (`TESSERA_TEST_REDIS_PORT`); without it, one
    /// per test process. The handle never stops the server.
    pub fn shared() -> Self {
        static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
        Self {
            port: shared_port("TESSERA_TEST_REDIS_PORT", &PORT),
            child: None,
            dir: PathBuf::new(),
            extra: Vec::new(),
            shared: true,
            tls: None,
        }
    }

    /// The second region's shared server (topology `regions`).
    pub fn shared_us() -> Self {
        static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
        Self {
            port: shared_port("TESSERA_TEST_REDIS_US_PORT", &PORT),
            child: None,
            dir: PathBuf::new(),
            extra: Vec::new(),
            shared: true,
            tls: None,
        }
    }

    /// Starts with extra `redis-server` arguments, e.g. `["--maxmemory-policy", "allkeys-lru"]`.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_on(free_port(), extra)
    }

    fn start_on(port: u16, extra: &[&str]) -> Self {
        Self::start_full(port, extra, None)
    }

    /// A server that speaks only TLS, with a certificate signed by `ca`.
    pub fn start_tls(ca: &TestCa) -> Self {
        Self::start_full(free_port(), &[], Some(ca.clone()))
    }

    fn start_full(port: u16, extra: &[&str], tls: Option<TestCa>) -> Self {
        let dir = std::env::temp_dir().join(random_name("tessera-redis-"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            port,
            child: None,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            shared: false,
            tls,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            None => cmd.args(["--port", &self.port.to_string()]),
            Some(ca) => cmd
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(ca.dir.join("server.crt"))
                .arg("--tls-key-file")
                .arg(ca.dir.join("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(ca.ca_file())
                .args(["--tls-auth-clients", "no"]),
        };
        cmd.args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--maxmemory-policy", "noeviction"])
            .args(acl_user_args())
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        let watchdog = format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done; kill -9 {} 2>/dev/null",
            std::process::id(),
            child.id()
        );
        // Deliberately never waited for: it must outlive this process to clean up after it.
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .args(["-c", &watchdog])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_ready();
    }

    /// A plain connection to this very server (never the topology's cluster), as the default
    /// user.
    pub fn plain_conn(&self) -> redis::Connection {
        self.admin_client().get_connection().unwrap()
    }

    /// A client for the default user (trusting the test CA of a TLS server).
    pub fn admin_client(&self) -> redis::Client {
        match &self.tls {
            None => redis::Client::open(self.admin_url()).unwrap(),
            Some(ca) => redis::Client::build_with_tls(
                self.admin_url(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(ca.ca_file()).unwrap()),
                },
            )
            .unwrap(),
        }
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                if let Ok(mut conn) = self.admin_client().get_connection() {
                    if redis::cmd("PING").query::<String>(&mut conn).is_ok() {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What a Tessera node is given: this server, as the least-privilege ACL user.
    pub fn url(&self) -> String {
        format!(
            "{}://{ACL_USER}:{ACL_PASSWORD}@127.0.0.1:{}",
            self.scheme(),
            self.port
        )
    }

    /// The default (all-powerful) user, for the test's own reads and changes.
    pub fn admin_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.port)
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        }
    }

    /// A connection to what nodes built on this server use: the server itself, or the shared
    /// cluster under the `cluster` topology.
    pub fn conn(&self) -> TestConn {
        if self.shared && topology() == Topology::Cluster {
            return TestConn::Cluster(Box::new(
                redis::cluster::ClusterClient::new(TestCluster::shared().urls())
                    .unwrap()
                    .get_connection()
                    .unwrap(),
            ));
        }
        TestConn::Single(self.plain_conn())
    }

    /// SIGKILL: the server vanishes mid-flight, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP / SIGCONT: the server hangs without closing its sockets (a stalled host).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Starts again on the same port and directory (data survives only with persistence on).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// SIGTERM (Redis saves and exits cleanly, as in a maintenance restart), then starts again.
    pub fn restart_gracefully(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
        self.launch();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A command the ACL refused is a failure even when Tessera coped with the error.
        if self.child.is_some() && !std::thread::panicking() {
            if let Ok(mut conn) = self
                .admin_client()
                .get_connection_with_timeout(Duration::from_secs(1))
            {
                let refused = acl_refusals(&mut conn);
                self.kill();
                assert!(
                    refused.is_empty(),
                    "Redis refused Tessera's ACL user: {refused:#?}"
                );
            }
        }
        self.kill();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A sync connection to a server or to the shared cluster (tests read and change keys).
pub enum TestConn {
    Single(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl redis::ConnectionLike for TestConn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> redis::RedisResult<redis::Value> {
        match self {
            TestConn::Single(c) => c.req_packed_command(cmd),
            TestConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<redis::Value>> {
        match self {
            TestConn::Single(c) => c.req_packed_commands(cmd, offset, count),
            TestConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn req_command(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<redis::Value> {
        match self {
            TestConn::Single(c) => c.req_command(cmd),
            TestConn::Cluster(c) => c.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            TestConn::Single(c) => c.get_db(),
            TestConn::Cluster(c) => c.get_db(),
        }
    }

    fn supports_pipelining(&self) -> bool {
        match self {
            TestConn::Single(c) => c.supports_pipelining(),
            TestConn::Cluster(c) => c.supports_pipelining(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            TestConn::Single(c) => c.check_connection(),
            TestConn::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            TestConn::Single(c) => c.is_open(),
            TestConn::Cluster(c) => c.is_open(),
        }
    }
}

/// A local 3-primary Redis Cluster shared by the suite: `scripts/test` starts it
/// (`TESSERA_TEST_CLUSTER_PORTS`); without it, one per test process.
pub struct TestCluster {
    pub ports: Vec<u16>,
}

impl TestCluster {
    pub fn shared() -> &'static TestCluster {
        static CLUSTER: std::sync::OnceLock<TestCluster> = std::sync::OnceLock::new();
        CLUSTER.get_or_init(|| {
            if let Ok(ports) = std::env::var("TESSERA_TEST_CLUSTER_PORTS") {
                return TestCluster {
                    ports: ports.split(',').map(|p| p.parse().unwrap()).collect(),
                };
            }
            Self::start(3, &[]).leak()
        })
    }

    /// Starts `primaries` cluster-enabled servers and joins them (`redis-cli --cluster
    /// create`); waits until every node says `cluster_state:ok`.
    pub fn start(primaries: usize, extra: &[&str]) -> RunningCluster {
        Self::start_with_replicas(primaries, 0, extra)
    }

    /// Like `start`, with `replicas` replicas of every primary (`servers` lists them too).
    pub fn start_with_replicas(
        primaries: usize,
        replicas: usize,
        extra: &[&str],
    ) -> RunningCluster {
        let mut args = vec!["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"];
        args.extend_from_slice(extra);
        let servers: Vec<RedisServer> = (0..primaries * (1 + replicas))
            .map(|_| RedisServer::start_on(cluster_port(), &args))
            .collect();
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for s in &servers {
            create.arg(format!("127.0.0.1:{}", s.port));
        }
        let out = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed (scripts/test installs it)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = RunningCluster { servers };
        cluster.wait_ok();
        cluster
    }

    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// `redis+cluster://h:p,h:p,h:p`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!(
            "redis+cluster://{ACL_USER}:{ACL_PASSWORD}@{}",
            hosts.join(",")
        )
    }
}

/// A cluster owned by one test (stopped on drop).
pub struct RunningCluster {
    pub servers: Vec<RedisServer>,
}

impl RunningCluster {
    pub fn view(&self) -> TestCluster {
        TestCluster {
            ports: self.servers.iter().map(|s| s.port).collect(),
        }
    }

    fn leak(mut self) -> TestCluster {
        let view = self.view();
        for s in &mut self.servers {
            s.child.take();
            s.dir = PathBuf::new();
        }
        view
    }

    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = self.servers.iter().all(|s| {
                let info: redis::RedisResult<String> =
                    redis::cmd("CLUSTER").arg("INFO").query(&mut s.plain_conn());
                info.is_ok_and(|i| i.contains("cluster_state:ok"))
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the test cluster never became ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Settings for a test node: free ports, its own key prefix and keys directory, one worker.
/// Built on the shared server, the node gets the suite's topology (`TESSERA_TEST_TOPOLOGY`).
pub fn test_settings(redis: &RedisServer) -> Settings {
    let mut settings = Settings {
        public_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        redis_url: redis.url(),
        redis_connect_timeout_ms: 500,
        redis_command_timeout_ms: 500,
        key_prefix: random_name("t"),
        admin_api_key: Some(ADMIN_KEY.into()),
        issuer: "https://auth.test".into(),
        audience: "api".into(),
        audiences: vec!["billing".into()],
        keys_dir: std::env::temp_dir().join(random_name("tessera-keys-")),
        region: tessera::session::Region::parse("eu").unwrap(),
        regions: tessera::config::RegionsSetting::Names(vec![
            tessera::session::Region::parse("eu").unwrap(),
            tessera::session::Region::parse("us").unwrap(),
        ]),
        workers: Some(1),
        log_format: "pretty".into(),
        ..Settings::default()
    };
    if redis.shared {
        match topology() {
            Topology::Single => {}
            Topology::Regions => {
                settings.region_redis = format!("us={}", RedisServer::shared_us().url());
            }
            Topology::Cluster => settings.redis_url = TestCluster::shared().url(),
        }
    }
    settings
}

pub struct TestApp {
    pub guard: tessera::guard::SessionGuard,
    pub public: String,
    pub admin: String,
    pub client: reqwest::Client,
    pub settings: Settings,
    /// The node's clock: advance it to pass a deadline instead of sleeping.
    pub clock: tessera::clock::TestClock,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub async fn spawn_app(redis: &RedisServer) -> TestApp {
    spawn_app_with(test_settings(redis)).await
}

pub async fn spawn_app_with(settings: Settings) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        tessera::telemetry::init("pretty", "debug");
    }
    let clock = tessera::clock::TestClock::new();
    let app = Application::build_with_clock(settings.clone(), clock.shared())
        .await
        .expect("application failed to start");
    let guard = app.session_guard();
    let public = format!("http://127.0.0.1:{}", app.public_port());
    let admin = format!("http://127.0.0.1:{}", app.admin_port());
    let server = tokio::spawn(async move {
        let _ = app.run_until_stopped().await;
    });
    TestApp {
        guard,
        public,
        admin,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        settings,
        clock,
        server,
    }
}

/// Now, in Unix milliseconds (for entries a test writes into Redis itself).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A session created through the admin API.
pub struct Created {
    pub token: String,
    pub csrf: String,
    pub session: Value,
}

impl TestApp {
    pub async fn create_session(&self, user: &str) -> Created {
        let body = serde_json::json!({
            "user_id": user, "acr": "pwd", "amr": ["pwd"], "roles": ["member"],
            "ip": "203.0.113.7", "user_agent": FIREFOX, "device_name": "work laptop",
        });
        let response = self.admin_post("/admin/sessions", &body).await;
        assert_eq!(response.status(), 201, "create session failed");
        let json: Value = response.json().await.unwrap();
        Created {
            token: json["session_token"].as_str().unwrap().to_owned(),
            csrf: json["csrf_token"].as_str().unwrap().to_owned(),
            session: json["session"].clone(),
        }
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.admin))
            .bearer_auth(ADMIN_KEY)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `DELETE` on the admin listener with `key` (a scoped key, or `ADMIN_KEY`).
    pub async fn admin_delete_as(&self, path: &str, key: &str) -> reqwest::Response {
        self.client
            .delete(format!("{}{path}", self.admin))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.admin))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap()
    }

    pub fn cookie_headers(&self, token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            HeaderValue::from_str(&format!("__Host-tessera={token}")).unwrap(),
        );
        h
    }

    /// Headers a same-origin browser page would send on an unsafe request.
    pub fn browser_unsafe_headers(&self, token: &str, csrf: &str) -> HeaderMap {
        let mut h = self.cookie_headers(token);
        let origin = self.public.clone();
        h.insert("origin", HeaderValue::from_str(&origin).unwrap());
        h.insert("x-csrf-token", HeaderValue::from_str(csrf).unwrap());
        h
    }

    pub async fn get_session_with_cookie(&self, token: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/v1/session", self.public))
            .headers(self.cookie_headers(token))
            .send()
            .await
            .unwrap()
    }

    pub async fn get_session_with_bearer(&self, token: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/v1/session", self.public))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn logout_with_cookie(&self, token: &str, csrf: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/logout", self.public))
            .headers(self.browser_unsafe_headers(token, csrf))
            .send()
            .await
            .unwrap()
    }

    pub async fn mint(&self, session_token: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}/v1/token", self.public))
            .bearer_auth(session_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// Audit events for a query string such as `user_id=alice&limit=2`.
    pub async fn audit_events(&self, query: &str) -> Vec<Value> {
        let body: Value = self
            .admin_get(&format!("/admin/audit?{query}"))
            .await
            .json()
            .await
            .unwrap();
        body["events"].as_array().unwrap().clone()
    }

    /// The JSON body of a public `GET` (no credentials).
    pub async fn public_json(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.public))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The body of `/readyz`.
    pub async fn readiness(&self) -> Value {
        self.public_json("/readyz").await
    }

    /// The status of `/readyz`.
    pub async fn ready_status(&self) -> u16 {
        self.client
            .get(format!("{}/readyz", self.public))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        wait_until("the node is ready", || async {
            self.ready_status().await == 200
        })
        .await;
    }

    pub async fn jwks(&self) -> Value {
        self.public_json("/.well-known/jwks.json").await
    }

    /// Opens `/admin/revocations` (admin key), resuming after `last_event_id` when given.
    pub async fn revocation_stream(&self, last_event_id: Option<&str>) -> reqwest::Response {
        let mut request = self
            .client
            .get(format!("{}/admin/revocations", self.admin))
            .bearer_auth(ADMIN_KEY);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request.send().await.unwrap()
    }

    /// The kids this node publishes, sorted.
    pub async fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.jwks().await["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        kids.sort();
        kids
    }

    /// A session for `user` created (admin API) as if signed in from `user_agent` at
    /// 127.0.0.1; its session token.
    pub async fn session_from_agent(&self, user: &str, user_agent: &str) -> String {
        let created = self
            .admin_post(
                "/admin/sessions",
                &serde_json::json!({ "user_id": user, "acr": "pwd", "amr": ["pwd"], "ip": "127.0.0.1", "user_agent": user_agent }),
            )
            .await;
        assert_eq!(created.status(), 201);
        created.json::<Value>().await.unwrap()["session_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `GET /v1/session` with a bearer session token, sent with `user_agent`.
    pub async fn get_session_as(&self, token: &str, user_agent: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/v1/session", self.public))
            .bearer_auth(token)
            .header("user-agent", user_agent)
            .send()
            .await
            .unwrap()
    }
}

/// Part `index` of a compact JWS (0 header, 1 claims), decoded as JSON. Reads, never verifies.
pub fn jwt_part(jwt: &str, index: usize) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(index).expect("a compact JWS");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// Asserts the uniform error shape and returns the code.
pub async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("error bodies are JSON");
    assert!(
        body["message"].is_string(),
        "error body lacks message: {body}"
    );
    (
        status,
        body["error"].as_str().expect("error code").to_owned(),
    )
}

/// An `application/x-www-form-urlencoded` body (RFC 7009/7662 endpoints).
pub fn form_body(pairs: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Every typed request a test makes, in one place.
impl TestApp {
    /// The MFA ticket of a right password (step one of a TOTP login) from client `ip`.
    pub async fn mfa_ticket(&self, ip: &str, username: &str, password: &str) -> String {
        let body: Value = self
            .login_from(ip, username, password)
            .await
            .json()
            .await
            .unwrap();
        body["mfa_token"].as_str().unwrap().to_owned()
    }

    /// An access token for a live session (the minting itself is tested in `tokens.rs`).
    pub async fn access_token(&self, session_token: &str) -> String {
        let body: Value = self.mint(session_token, None).await.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    // ---- from login ----
    pub async fn login(&self, username: &str, password: &str) -> Response {
        self.client
            .post(format!("{}/v1/login", self.public))
            .header("origin", &self.public)
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap()
    }

    pub async fn login_mfa(&self, mfa_token: &str, code: &str) -> Response {
        self.client
            .post(format!("{}/v1/login/mfa", self.public))
            .json(&json!({ "mfa_token": mfa_token, "totp": code }))
            .send()
            .await
            .unwrap()
    }

    pub async fn step_up_bearer(&self, token: &str, body: Value) -> Response {
        self.client
            .post(format!("{}/v1/session/step-up", self.public))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_bearer(&self, path: &str, token: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.public))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete_bearer(&self, path: &str, token: &str) -> Response {
        self.client
            .delete(format!("{}{path}", self.public))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Session cookie value from a login response.
    pub fn cookie_of(response: &Response) -> String {
        let set = response.headers()["set-cookie"].to_str().unwrap();
        set.split(';')
            .next()
            .unwrap()
            .trim_start_matches("__Host-tessera=")
            .to_owned()
    }
    // ---- from refresh ----
    pub async fn native_login(&self) -> Value {
        let response = self
            .client
            .post(format!("{}/v1/login", self.public))
            .json(&json!({"username": "alice", "password": crate::users::ALICE_PW, "client": "native", "device_name": "phone"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers().get("set-cookie").is_none(),
            "native clients get no cookie"
        );
        response.json().await.unwrap()
    }

    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/token/refresh", self.public))
            .json(&json!({ "refresh_token": refresh_token }))
            .send()
            .await
            .unwrap()
    }

    pub async fn check_jwt(&self, jwt: &str) -> u16 {
        self.client
            .get(format!("{}/v1/auth/check", self.public))
            .bearer_auth(jwt)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
    // ---- from attack ----
    pub async fn login_from(&self, ip: &str, username: &str, password: &str) -> Response {
        self.client
            .post(format!("{}/v1/login", self.public))
            .header("x-forwarded-for", ip)
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap()
    }

    pub async fn mfa_from(&self, ip: &str, ticket: &str, code: &str) -> Response {
        self.client
            .post(format!("{}/v1/login/mfa", self.public))
            .header("x-forwarded-for", ip)
            .json(&json!({ "mfa_token": ticket, "totp": code }))
            .send()
            .await
            .unwrap()
    }

    pub async fn revoke_token(&self, token: &str) -> Response {
        self.client
            .post(format!("{}/v1/token/revoke", self.public))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[
                ("token", token),
                ("token_type_hint", "refresh_token"),
            ]))
            .send()
            .await
            .unwrap()
    }

    pub async fn access_token_of(&self, session_token: &str) -> String {
        let minted: Value = self.mint(session_token, None).await.json().await.unwrap();
        minted["access_token"].as_str().unwrap().to_owned()
    }
    // ---- from oauth ----
    pub async fn admin_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let body = form_body(form);
        self.client
            .post(format!("{}{path}", self.admin))
            .bearer_auth(ADMIN_KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

/// A node with the test users file (alice, bob with TOTP, carol disabled), reloaded every
/// second, trusting `X-Forwarded-For` from loopback, on the shared Redis.
pub async fn app_with_users(tweak: impl FnOnce(&mut Settings)) -> (RedisServer, TestApp) {
    app_with_users_on(RedisServer::shared(), tweak).await
}

/// `app_with_users` on a given Redis (one of the test's own, when it reconfigures Redis).
pub async fn app_with_users_on(
    redis: RedisServer,
    tweak: impl FnOnce(&mut Settings),
) -> (RedisServer, TestApp) {
    let mut settings = test_settings(&redis);
    settings.users_file = Some(crate::users::write_users_file());
    settings.users_reload_secs = 1;
    settings.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    tweak(&mut settings);
    let app = spawn_app_with(settings).await;
    (redis, app)
}

/// Polls `done` until it holds (true) or `what` fails the test after 10 s: waiting for a
/// background task (a check interval, a heartbeat) without a fixed sleep.
pub async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The built `tessera` binary with no `TESSERA_*` variable inherited from the test's own
/// environment, so each test sets exactly the settings it means.
pub fn tessera_binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TESSERA_") {
            command.env_remove(key);
        }
    }
    command
}

/// `tessera serve` on `redis` with its own key prefix, the given ports and keys directory and
/// JSON logs; the caller adds its own settings and spawns it.
pub fn serve_command(redis: &RedisServer, public: u16, admin: u16, keys: &Path) -> Command {
    let mut command = tessera_binary();
    command
        .arg("serve")
        .env("TESSERA_REDIS_URL", redis.url())
        .env("TESSERA_KEY_PREFIX", random_name("t"))
        .env("TESSERA_PUBLIC_ADDR", format!("127.0.0.1:{public}"))
        .env("TESSERA_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .env("TESSERA_ADMIN_API_KEY", ADMIN_KEY)
        .env("TESSERA_KEYS_DIR", keys)
        .env("TESSERA_LOG_FORMAT", "json");
    command
}
