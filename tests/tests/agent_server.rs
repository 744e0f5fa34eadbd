//! Agent -> server, end to end over real HTTPS on loopback: enrollment with a pinned CA, the
//! agent reporting while the server restarts and while it is unreachable (spool, replay:
//! nothing lost, nothing doubled), a replayed batch the server already stored, and a school
//! host (a network namespace behind a veth pair) that goes down and comes back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use khetnet_agent::run::{Options, Stats};
use khetnet_config::Config;
use khetnet_server::{RunningServer, StartOptions};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ADMIN_PASSWORD: &str = "admin-password-for-e2e";

/// A district server with its own data directory, restartable on the same port.
struct District {
    _dir: tempfile::TempDir,
    config: Config,
    server: Option<RunningServer>,
    url: String,
    ca: PathBuf,
    http: reqwest::Client,
    admin: String,
}

impl District {
    async fn start() -> District {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.data_dir = dir.path().to_owned();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.tls_self_signed = true;
        config.devices.report_interval_secs = 1;
        config.devices.config_refresh_secs = 1;
        let server = khetnet_server::start(&config, options())
            .await
            .expect("server starts");
        assert_eq!(server.scheme, "https");
        config.server.listen = server.addr;
        let ca = dir.path().join("tls").join("self-signed.crt");
        let pem = std::fs::read(&ca).unwrap();
        let http = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap();
        let url = server.url().replace("127.0.0.1", "localhost");
        let mut district = District {
            _dir: dir,
            config,
            server: Some(server),
            url,
            ca,
            http,
            admin: String::new(),
        };
        let (status, body) = district
            .call(
                None,
                Method::POST,
                "/api/v1/auth/login",
                Some(json!({ "username": "admin", "password": ADMIN_PASSWORD })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        district.admin = body["token"].as_str().unwrap().to_owned();
        district
    }

    async fn stop_server(&mut self) {
        self.server
            .take()
            .expect("running")
            .shutdown()
            .await
            .unwrap();
    }

    async fn start_server(&mut self) {
        assert!(self.server.is_none());
        self.server = Some(
            khetnet_server::start(&self.config, options())
                .await
                .expect("server restarts"),
        );
    }

    async fn call(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, body) = self
            .call(Some(&self.admin.clone()), method, path, body)
            .await;
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn school(&self, code: &str) -> i64 {
        self.admin(
            Method::POST,
            "/api/v1/schools",
            Some(json!({ "code": code, "name_th": format!("โรงเรียน {code}") })),
        )
        .await["id"]
            .as_i64()
            .unwrap()
    }

    async fn device(&self, body: Value) -> i64 {
        self.admin(Method::POST, "/api/v1/devices", Some(body))
            .await["id"]
            .as_i64()
            .unwrap()
    }

    async fn status(&self, device: i64) -> String {
        self.admin(Method::GET, &format!("/api/v1/devices/{device}"), None)
            .await["status"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn samples(&self, device: i64) -> Vec<Value> {
        self.admin(
            Method::GET,
            &format!("/api/v1/devices/{device}/samples?limit=100000"),
            None,
        )
        .await
        .as_array()
        .unwrap()
        .clone()
    }

    /// Enrolls an agent for `school` in `state_dir` the way `khetnet-agent enroll` does.
    async fn enroll(&self, school: i64, state_dir: &Path) {
        let token = self
            .admin(
                Method::POST,
                "/api/v1/agents/enrollment-tokens",
                Some(json!({ "school_id": school })),
            )
            .await["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let credential = khetnet_agent::enroll::enroll(
            state_dir,
            &self.url,
            &token,
            Some(&self.ca),
            Some("e2e".into()),
        )
        .await
        .expect("enrolls");
        assert_eq!(credential.school_id, school);
        // The token was for one use.
        let again =
            khetnet_agent::enroll::enroll(state_dir, &self.url, &token, Some(&self.ca), None).await;
        assert!(again.unwrap_err().to_string().contains("already used"));
    }
}

fn options() -> StartOptions {
    StartOptions {
        admin_password: Some(ADMIN_PASSWORD.into()),
    }
}

/// A running agent, stopped by [`Agent::stop`].
struct Agent {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<khetnet_agent::Result<Stats>>,
}

impl Agent {
    fn start(state_dir: &Path) -> Agent {
        let options = Options {
            state_dir: state_dir.to_owned(),
            max_concurrency: 8,
            spool_max_batches: 1000,
            probe_timeout: Duration::from_secs(1),
        };
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(khetnet_agent::run::run(options, async move {
            let _ = rx.await;
        }));
        Agent { stop, task }
    }

    async fn stop(self) -> Stats {
        let _ = self.stop.send(());
        self.task.await.unwrap().expect("the agent ran")
    }
}

fn spooled(state_dir: &Path) -> usize {
    std::fs::read_dir(state_dir.join("spool"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

async fn wait_for<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every stored sample of `devices`, checked to be free of duplicates.
async fn stored(district: &District, devices: &[i64]) -> usize {
    let mut total = 0;
    for &d in devices {
        let samples = district.samples(d).await;
        let mut times: Vec<&str> = samples.iter().map(|s| s["at"].as_str().unwrap()).collect();
        let n = times.len();
        times.sort_unstable();
        times.dedup();
        assert_eq!(times.len(), n, "device {d}: a sample was stored twice");
        total += n;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_nothing_doubled_across_restarts_and_outages() {
    let mut district = District::start().await;
    let school = district.school("1057010001").await;
    // A service that answers, and a port where nothing listens.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            drop(conn);
        }
    });
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let up = district
        .device(json!({ "school_id": school, "name": "web", "probe": "tcp", "address": "127.0.0.1", "port": open_port, "interval_secs": 1 }))
        .await;
    let down = district
        .device(json!({ "school_id": school, "name": "printer", "probe": "tcp", "address": "127.0.0.1", "port": closed_port, "interval_secs": 1, "down_after_minutes": 0 }))
        .await;
    let state = tempfile::tempdir().unwrap();
    district.enroll(school, state.path()).await;

    // `check` probes once and tells which is which.
    let options = Options {
        state_dir: state.path().to_owned(),
        max_concurrency: 8,
        spool_max_batches: 1000,
        probe_timeout: Duration::from_secs(1),
    };
    let checked = khetnet_agent::run::check(&options).await.unwrap();
    let table = khetnet_agent::run::table(&checked);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("web ") && l.contains(" up ")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("printer ") && l.contains("DOWN") && l.contains("refused")),
        "{table}"
    );

    let agent = Agent::start(state.path());
    wait_for("both devices to report", 20, || async {
        district.status(up).await == "up" && district.status(down).await == "down"
    })
    .await;
    let open = district
        .admin(Method::GET, "/api/v1/incidents?open=true", None)
        .await;
    assert_eq!(open.as_array().unwrap().len(), 1, "{open}");
    assert_eq!(open[0]["device_id"], down);

    // The server restarts while the agent reports.
    district.stop_server().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    district.start_server().await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The link is cut for a while: reports pile up in the spool.
    district.stop_server().await;
    let cut = state.path().to_owned();
    wait_for(
        "reports to be spooled while the server is unreachable",
        15,
        || {
            let cut = cut.clone();
            async move { spooled(&cut) >= 2 }
        },
    )
    .await;
    district.start_server().await;
    wait_for("the spool to be replayed", 90, || {
        let cut = cut.clone();
        async move { spooled(&cut) == 0 }
    })
    .await;
    let stats = agent.stop().await;
    assert_eq!(stats.spooled_at_exit, 0, "{stats:?}");
    assert_eq!(stats.samples_dropped, 0, "{stats:?}");
    assert_eq!(stats.batches_rejected, 0, "{stats:?}");
    assert!(stats.samples_measured > 10, "{stats:?}");
    let total = stored(&district, &[up, down]).await;
    assert_eq!(
        total as u64, stats.samples_measured,
        "every measured sample stored exactly once: {stats:?}"
    );
    assert_eq!(stats.samples_acknowledged, stats.samples_measured);

    // A batch the server stored whose acknowledgement never arrived: the agent sends it again
    // from its spool, the server recognises it, and nothing is counted twice.
    let credential = khetnet_agent::state::load_credential(state.path()).unwrap();
    let mut spool = khetnet_agent::spool::Spool::open(&state.path().join("spool"), 1000).unwrap();
    let sample = khetnet_agent::probe::Sample {
        device_id: up,
        // An hour ago: within the raw-sample retention, which the server's sweep enforces.
        at: (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3600)).to_string(),
        ok: true,
        latency_ms: Some(0.5),
        loss_percent: Some(0.0),
        error: None,
        detail: None,
        discovered: Vec::new(),
    };
    spool.push(vec![sample]).unwrap();
    let (_, bytes) = spool.oldest().unwrap().unwrap();
    drop(spool);
    let resp = district
        .http
        .post(format!("{}/api/v1/agent/reports", district.url))
        .bearer_auth(&credential.credential)
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let agent = Agent::start(state.path());
    wait_for("the replayed batch to be acknowledged", 20, || async {
        spooled(state.path()) == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = agent.stop().await;
    assert_eq!(again.batches_duplicate, 1, "{again:?}");
    let after = stored(&district, &[up, down]).await;
    assert_eq!(
        after as u64,
        total as u64 + 1 + again.samples_measured,
        "{again:?}"
    );

    // A revoked agent's reports stay in its spool; nothing more is stored.
    let agents = district.admin(Method::GET, "/api/v1/agents", None).await;
    let id = agents[0]["id"].as_i64().unwrap();
    district
        .admin(Method::POST, &format!("/api/v1/agents/{id}/revoke"), None)
        .await;
    let before = stored(&district, &[up, down]).await;
    let options = Options {
        state_dir: state.path().to_owned(),
        max_concurrency: 8,
        spool_max_batches: 1000,
        probe_timeout: Duration::from_secs(1),
    };
    let refused = tokio::time::timeout(
        Duration::from_secs(20),
        khetnet_agent::run::run(options, std::future::pending()),
    )
    .await
    .expect("a revoked agent stops at once");
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("enroll again"), "{message}");
    assert_eq!(stored(&district, &[up, down]).await, before);
    district.stop_server().await;
}

/// A school host in its own network namespace, reached over a veth pair.
struct SchoolHost {
    ns: String,
    host_if: String,
    ns_if: String,
    ip: String,
}

impl SchoolHost {
    fn ip(args: &[&str]) -> bool {
        std::process::Command::new("ip")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `None` when network namespaces cannot be made here (not root, no `ip`).
    fn create() -> Option<SchoolHost> {
        let n = std::process::id() % 250;
        let host = SchoolHost {
            ns: format!("khn-school-{}", std::process::id()),
            host_if: format!("khn{n}a"),
            ns_if: format!("khn{n}b"),
            ip: format!("10.254.{n}.2"),
        };
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), host.ns.clone()],
            vec![
                "link".into(),
                "add".into(),
                host.host_if.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                host.ns_if.clone(),
            ],
            vec![
                "link".into(),
                "set".into(),
                host.ns_if.clone(),
                "netns".into(),
                host.ns.clone(),
            ],
            vec![
                "addr".into(),
                "add".into(),
                format!("10.254.{n}.1/30"),
                "dev".into(),
                host.host_if.clone(),
            ],
            vec![
                "link".into(),
                "set".into(),
                host.host_if.clone(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                host.ns.clone(),
                "addr".into(),
                "add".into(),
                format!("{}/30", host.ip),
                "dev".into(),
                host.ns_if.clone(),
            ],
            vec![
                "-n".into(),
                host.ns.clone(),
                "link".into(),
                "set".into(),
                host.ns_if.clone(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                host.ns.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
        ];
        for step in steps {
            let args: Vec<&str> = step.iter().map(String::as_str).collect();
            if !Self::ip(&args) {
                eprintln!(
                    "SKIPPED: `ip {}` failed: network namespaces need root and iproute2",
                    args.join(" ")
                );
                return None;
            }
        }
        Some(host)
    }

    fn link(&self, up: bool) {
        assert!(Self::ip(&[
            "-n",
            &self.ns,
            "link",
            "set",
            &self.ns_if,
            if up { "up" } else { "down" }
        ]));
    }
}

impl Drop for SchoolHost {
    fn drop(&mut self) {
        Self::ip(&["link", "del", &self.host_if]);
        Self::ip(&["netns", "del", &self.ns]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_school_host_goes_down_and_comes_back() {
    let Some(host) = SchoolHost::create() else {
        return;
    };
    let district = District::start().await;
    let school = district.school("1057010003").await;
    let device = district
        .device(json!({ "school_id": school, "name": "school router", "probe": "icmp", "address": host.ip, "interval_secs": 1, "down_after_minutes": 0 }))
        .await;
    let state = tempfile::tempdir().unwrap();
    district.enroll(school, state.path()).await;
    let agent = Agent::start(state.path());
    // Open down incidents (a loss incident may come and go as the link changes).
    let open_incidents = || async {
        district
            .admin(Method::GET, "/api/v1/incidents?open=true", None)
            .await
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["kind"] == "device_down")
            .count()
    };
    wait_for("the host to be up", 20, || async {
        district.status(device).await == "up"
    })
    .await;
    assert_eq!(open_incidents().await, 0);

    host.link(false);
    wait_for("the host to be down", 30, || async {
        district.status(device).await == "down"
    })
    .await;
    wait_for("an incident", 10, || async { open_incidents().await == 1 }).await;
    let health = district
        .admin(Method::GET, "/api/v1/devices/status", None)
        .await;
    assert_eq!(health[0]["status"], "down", "{health}");

    host.link(true);
    wait_for("the host to be back", 30, || async {
        district.status(device).await == "up"
    })
    .await;
    wait_for("the incident to resolve", 10, || async {
        open_incidents().await == 0
    })
    .await;
    // The pings as the link comes back may also lose some and open (and close) a loss
    // incident; the outage itself is one down incident.
    let all = district.admin(Method::GET, "/api/v1/incidents", None).await;
    let down = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "device_down")
        .count();
    assert_eq!(down, 1, "one down incident for the one outage: {all}");
    let stats = agent.stop().await;
    assert_eq!(stats.samples_dropped, 0);
    let samples = district.samples(device).await;
    assert!(samples.iter().any(|s| s["ok"] == false) && samples.iter().any(|s| s["ok"] == true));
}
