//! Test support shared by the workspace's integration tests and benchmarks:
//!
//! - [`moto`]: a moto server (the AWS API emulator) on a free loopback port, one per test
//!   process, stopped when the process ends;
//! - [`runtime::RuntimeHost`]: a Lambda Runtime API host to run the real `bootstrap` binaries;
//! - [`lambda_async::AsyncLambda`]: Lambda's asynchronous invocation around them (a queue,
//!   concurrency R, retries, the on-failure destination), with [`throttle::ThrottlingProxy`]
//!   and [`sqs`] the burst test's stand-ins for AWS IoT's quotas and the failure queue;
//! - [`Recorder`]: an HTTP endpoint that records what it receives (CloudFormation's
//!   `ResponseURL`) and, as a proxy, what a client sends to moto;
//! - [`iot_gateway::IotGateway`]: AWS IoT's MQTT broker as a device meets it (TLS with client
//!   certificates, just-in-time registration against moto, CONNECT, PUBLISH);
//! - [`pki`]: throwaway CAs and device certificates;
//! - [`openssl`]: the same for every signature algorithm, through the openssl CLI;
//! - [`project::Project`]: the temporary project directory the CLI tests run in;
//! - [`accounts`]: other AWS accounts on the one moto server (credentials, roles, AssumeRole).

pub mod accounts;
pub mod http;
pub mod iot_gateway;
pub mod jitr;
pub mod lambda;
pub mod lambda_async;
pub mod openssl;
pub mod pki;
pub mod project;
pub mod runtime;
pub mod sqs;
pub mod throttle;

use http::{Handler, HttpRequest, HttpResponse, HttpServer};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The region tests use.
pub const REGION: &str = "eu-west-1";
/// moto's default account.
pub const ACCOUNT: &str = "123456789012";

/// The workspace root (where `Cargo.toml` and `.venv` live).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Makes a child process die with the test process (no moto left behind by a failed test).
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// `cmd.spawn()`, tried again while the executable is "busy" (ETXTBSY).
///
/// A test that writes an executable and runs it races with every other thread of the test
/// process that forks meanwhile: a child forked while the file was open for writing holds that
/// descriptor until it execs, and Linux refuses to run a file open for writing. The window is
/// short, so a few retries close it.
pub fn spawn_executable(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// `cmd.output()`, tried again while the executable is busy (see [`spawn_executable`]).
pub fn output_of(cmd: &mut Command) -> std::io::Result<std::process::Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    spawn_executable(cmd)?.wait_with_output()
}

pub struct Moto {
    endpoint: String,
    _child: Option<Mutex<Child>>,
}

impl Moto {
    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `127.0.0.1:PORT`.
    pub fn host_port(&self) -> &str {
        self.endpoint.trim_start_matches("http://")
    }

    /// The environment a process needs to talk to this moto with the real AWS SDK.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        aws_env(&self.endpoint)
    }

    /// An IoT client for this moto (or for a proxy in front of it).
    pub async fn iot(&self) -> aws_sdk_iot::Client {
        iot_client(&self.endpoint).await
    }
}

/// The environment the CLI gets after `env_clear`: a `PATH` without the Rust toolchain (no
/// directory holding `cargo` or `rustc`), as on a machine where jitr-infra was installed as a
/// binary. The CLI embeds its Lambdas and must never need cargo.
pub fn cli_env() -> Vec<(String, String)> {
    vec![("PATH".to_string(), path_without_toolchain())]
}

/// This process's `PATH` without the directories that hold `cargo` or `rustc`.
pub fn path_without_toolchain() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let kept: Vec<std::path::PathBuf> = std::env::split_paths(&path)
        .filter(|dir| !dir.join("cargo").exists() && !dir.join("rustc").exists())
        .collect();
    std::env::join_paths(kept)
        .expect("PATH entries stay joinable")
        .to_string_lossy()
        .into_owned()
}

/// Dummy credentials, the test region and `AWS_ENDPOINT_URL` for `endpoint`.
pub fn aws_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", REGION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// An IoT client pointed at `endpoint` with dummy credentials.
pub async fn iot_client(endpoint: &str) -> aws_sdk_iot::Client {
    aws_sdk_iot::Client::new(&sdk_config(endpoint).await)
}

/// The SDK configuration for `endpoint` with dummy credentials and the test region.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    accounts::Creds::default_account()
        .sdk_config(endpoint, REGION)
        .await
}

/// The moto server for this test process: `JITR_TEST_MOTO_ENDPOINT` if set (a server the
/// test command started), else one started here from the project's `.venv` on a free port.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        if let Ok(endpoint) = std::env::var("JITR_TEST_MOTO_ENDPOINT") {
            return Moto {
                endpoint,
                _child: None,
            };
        }
        Moto::start(&[])
    })
}

impl Moto {
    /// A moto server of its own (not the process's shared one, and never
    /// `JITR_TEST_MOTO_ENDPOINT`), started with `env` on top of this process's environment:
    /// e.g. `JITR_MOTO_CFN_SECONDS` for CloudFormation operations that take time
    /// (tests/moto_jitr/cfn_slow_operations.py). Stopped when the process ends.
    pub fn start(env: &[(&str, &str)]) -> Moto {
        let venv = std::env::var_os("JITR_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join(".venv"));
        let python = venv.join("bin/python");
        assert!(
            venv.join("bin/moto_server").exists(),
            "{} has no moto: run ./scripts/test (it creates the venv with moto)",
            venv.display()
        );
        let port = free_port();
        let mut cmd = Command::new(&python);
        // The wrapper makes moto name certificates by their DER's SHA-256, as AWS does.
        cmd.arg(workspace_root().join("tests/moto_server.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // Slow stacks only where asked for: never inherited by the shared server.
            .env_remove("JITR_MOTO_CFN_SECONDS")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        // PR_SET_PDEATHSIG fires when the spawning *thread* exits, and test threads come and
        // go: spawn moto from a thread that lives as long as the process.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(cmd.spawn());
            loop {
                std::thread::park();
            }
        });
        let child = rx.recv().unwrap().expect("start moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        wait_ready(&endpoint);
        Moto {
            endpoint,
            _child: Some(Mutex::new(child)),
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_ready(endpoint: &str) {
    let host = endpoint.trim_start_matches("http://").to_string();
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let probe = HttpRequest {
            method: "GET".into(),
            target: "/moto-api/data.json".into(),
            headers: [("host".to_string(), host.clone())].into(),
            body: vec![],
        };
        if http::forward(&host, &probe).is_ok_and(|r| r.status == 200) {
            return;
        }
        assert!(Instant::now() < give_up, "moto did not start on {endpoint}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Records every request it receives. Standalone it answers 200 (a `ResponseURL`); as a
/// proxy it forwards to an upstream and returns the upstream's answer.
pub struct Recorder {
    server: HttpServer,
    seen: Arc<Mutex<Vec<HttpRequest>>>,
}

impl Recorder {
    /// An endpoint that answers every request with `status`.
    pub fn answering(status: u16) -> Recorder {
        Self::with_handler(Arc::new(move |_req: HttpRequest| {
            HttpResponse::new(status, "")
        }))
    }

    /// A proxy in front of `upstream` (`host:port`).
    pub fn proxy(upstream: &str) -> Recorder {
        let upstream = upstream.to_string();
        Self::with_handler(Arc::new(move |req: HttpRequest| {
            http::forward(&upstream, &req).unwrap_or_else(|e| HttpResponse::new(502, e.to_string()))
        }))
    }

    /// An endpoint whose answers come from `inner`.
    pub fn with_handler(inner: Handler) -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let handler: Handler = Arc::new(move |req: HttpRequest| {
            seen2.lock().unwrap().push(req.clone());
            inner(req)
        });
        Recorder {
            server: HttpServer::start(handler),
            seen,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn requests(&self) -> Vec<HttpRequest> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<HttpRequest> {
        let give_up = Instant::now() + timeout;
        loop {
            let seen = self.requests();
            if seen.len() >= n || Instant::now() >= give_up {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A TCP endpoint that accepts connections and never answers: a hung AWS endpoint.
pub struct Blackhole {
    addr: std::net::SocketAddr,
    _conns: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Blackhole {
    pub fn start() -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let keep = conns.clone();
        std::thread::spawn(move || {
            for c in listener.incoming().flatten() {
                keep.lock().unwrap().push(c);
            }
        });
        Blackhole {
            addr,
            _conns: conns,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A name unique within this test process run, for resources in the shared moto.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}
