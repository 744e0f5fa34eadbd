//! The collector's network side: listeners for every input, the writer stage that stores what
//! they receive, and [`Collector::start`], which the server embeds and `khetnet-collector run`
//! calls.
//!
//! Each `run_*` function takes an already bound socket, so tests bind port 0 and the caller
//! decides what a bind failure means. Every input stops on the shared [`CancellationToken`];
//! connection tasks are tracked by one [`TaskTracker`], and a [`Semaphore`] caps the stream
//! connections open at once (at the cap, new connections wait in the kernel's backlog).
//!
//! Flow control: the inputs hand records to the [`Writer`] through one bounded queue. Stream
//! inputs (TCP, TLS, RELP) wait when it is full, and so stop reading; RADIUS stops answering;
//! UDP syslog and NetFlow drop and count. RELP and RADIUS acknowledge only what the store has
//! made durable.

pub mod clock;
pub mod netflow;
pub mod radius;
pub mod relp;
pub mod report;
pub mod sources;
pub mod syslog;
pub mod tls;
pub mod writer;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use khetnet_config::CollectorConfig;
use khetnet_retention::Store;
use khetnet_retention::record::{Input, Origin};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use radius::Secrets;
pub use sources::{Count, Silent, Sources, input_name};
pub use writer::{Writer, WriterTask};

use crate::source::AllowList;
use crate::{Error, Receipt, Result};

/// What every listener needs: where records go, who may send, when to stop.
#[derive(Clone)]
pub struct Shared {
    pub writer: Writer,
    pub sources: Arc<Sources>,
    pub store: Arc<Store>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// Permits for stream connections (TCP, TLS and RELP together).
    pub connections: Arc<Semaphore>,
}

impl Shared {
    /// The receipt of something `peer` sent on `input` now, by the store's clock.
    pub fn receipt(&self, input: Input, peer: IpAddr, school: Option<String>) -> Receipt {
        Receipt {
            receive_time: self.store.now(),
            origin: Origin {
                input,
                peer: Some(peer),
                import_sha256: None,
            },
            school,
        }
    }
}

/// How long, at shutdown, a stream input keeps reading what its senders already sent.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// At shutdown, a stream whose sender sent nothing for this long is done.
pub const DRAIN_IDLE: Duration = Duration::from_millis(250);

/// Connections waiting in the kernel's backlog taken at shutdown, at most.
const DRAIN_BACKLOG: usize = 1024;

/// Accepts connections until shutdown; each allowed one gets its own task running `serve`.
/// Connections from sources not allowed are counted and closed at once. At shutdown, the
/// connections the kernel already completed (the backlog) are still taken, so what their
/// senders sent before the signal is read and stored (`serve` sees the cancelled token and
/// reads only what is there).
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    shared: Shared,
    input: Input,
    serve: F,
) where
    F: Fn(TcpStream, IpAddr, Option<String>, Shared) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut taken = 0;
    let mut drain_until: Option<tokio::time::Instant> = None;
    loop {
        let permit = if shared.shutdown.is_cancelled() {
            // Shutting down: a permit only if one is free now.
            match shared.connections.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => break,
            }
        } else {
            tokio::select! {
                _ = shared.shutdown.cancelled() => continue,
                p = shared.connections.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            }
        };
        let accepted = if shared.shutdown.is_cancelled() {
            // Shutting down: only connections already waiting (found within DRAIN_IDLE),
            // for DRAIN_GRACE at most.
            taken += 1;
            let deadline =
                *drain_until.get_or_insert_with(|| tokio::time::Instant::now() + DRAIN_GRACE);
            if taken > DRAIN_BACKLOG {
                break;
            }
            let until = deadline.min(tokio::time::Instant::now() + DRAIN_IDLE);
            match tokio::time::timeout_at(until, listener.accept()).await {
                Ok(a) => a,
                Err(_) => break,
            }
        } else {
            tokio::select! {
                _ = shared.shutdown.cancelled() => continue,
                a = listener.accept() => a,
            }
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(error) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(input = input_name(input), error = %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ip = peer.ip();
        let Some(school) = shared.sources.admit(input, ip) else {
            drop(stream);
            continue;
        };
        shared.sources.add(input, Some(ip), Count::Connections, 1);
        let _ = stream.set_nodelay(true);
        let task = serve(stream, ip, school, shared.clone());
        shared.tracker.spawn(async move {
            task.await;
            drop(permit);
        });
    }
}

/// Whether an input is running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputState {
    /// Bound and receiving on this address.
    Listening(SocketAddr),
    /// Configured but not running: why, and how to fix it.
    Down(String),
    /// Turned off in the configuration.
    Off,
}

/// One input's state, as `khetnet serve` shows it at start and in `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputStatus {
    /// The configuration key (`syslog_udp`, `relp`, ...).
    pub name: &'static str,
    /// The address configured (empty when off).
    pub configured: String,
    pub state: InputState,
}

impl std::fmt::Display for InputStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            InputState::Listening(addr) => write!(f, "{:<11} listening on {addr}", self.name),
            InputState::Down(why) => write!(f, "{:<11} DOWN: {why}", self.name),
            InputState::Off => write!(f, "{:<11} off", self.name),
        }
    }
}

/// What the collector is set to do: the `[collector]` section, parsed and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub syslog_udp: Option<SocketAddr>,
    pub syslog_tcp: Option<SocketAddr>,
    pub syslog_tls: Option<SocketAddr>,
    pub relp: Option<SocketAddr>,
    pub radius: Option<SocketAddr>,
    pub netflow: Option<SocketAddr>,
    pub ipfix: Option<SocketAddr>,
    pub tls: Option<tls::TlsFiles>,
    pub allow: AllowList,
    pub secrets: Secrets,
    pub silent_after: Duration,
    pub max_connections: usize,
    /// NTP servers to measure the clock against (`HOST[:PORT]`).
    pub ntp_servers: Vec<String>,
    /// How often the clock is checked.
    pub clock_interval: Duration,
}

impl Settings {
    /// Parses the `[collector]` section.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key and the bad value: an address that is not
    /// `ADDRESS:PORT`, a bad allow-list or RADIUS client entry, a TLS key without a certificate.
    pub fn from_config(config: &CollectorConfig) -> Result<Settings> {
        let addr = |key: &'static str, value: &str| -> Result<Option<SocketAddr>> {
            if value.trim().is_empty() {
                return Ok(None);
            }
            value.trim().parse().map(Some).map_err(|_| Error::Config {
                key: format!("collector.{key}"),
                value: value.to_owned(),
                allowed: "ADDRESS:PORT (e.g. 0.0.0.0:514 or [::]:514), or \"\" for off".into(),
            })
        };
        let allow = AllowList::from_entries(&config.allow).map_err(|e| Error::Config {
            key: "collector.allow".into(),
            value: format!("{:?}", config.allow),
            allowed: e.to_string(),
        })?;
        let clients =
            AllowList::from_entries(&config.radius_clients).map_err(|e| Error::Config {
                key: "collector.radius_clients".into(),
                value: format!("{:?}", config.radius_clients),
                allowed: e.to_string().replace("SCHOOL", "SECRET"),
            })?;
        if let Some(entry) = clients.entries().iter().find(|e| e.school().is_none()) {
            return Err(Error::Config {
                key: "collector.radius_clients".into(),
                value: entry.to_string(),
                allowed: "ADDRESS[/PREFIX]=SECRET: the secret is missing".into(),
            });
        }
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: config.tls_client_ca.clone(),
            }),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::Config {
                    key: "collector.tls_cert".into(),
                    value: "only one of tls_cert and tls_key".into(),
                    allowed: "both tls_cert and tls_key, or neither".into(),
                });
            }
        };
        if config.silent_after_secs == 0 {
            return Err(Error::Config {
                key: "collector.silent_after_secs".into(),
                value: "0".into(),
                allowed: "1 or more".into(),
            });
        }
        if config.max_connections == 0 {
            return Err(Error::Config {
                key: "collector.max_connections".into(),
                value: "0".into(),
                allowed: "1 or more".into(),
            });
        }
        Ok(Settings {
            syslog_udp: addr("syslog_udp", &config.syslog_udp)?,
            syslog_tcp: addr("syslog_tcp", &config.syslog_tcp)?,
            syslog_tls: addr("syslog_tls", &config.syslog_tls)?,
            relp: addr("relp", &config.relp)?,
            radius: addr("radius", &config.radius)?,
            netflow: addr("netflow", &config.netflow)?,
            ipfix: addr("ipfix", &config.ipfix)?,
            tls,
            allow,
            secrets: Secrets {
                clients,
                default: config.radius_secret.clone(),
            },
            silent_after: Duration::from_secs(config.silent_after_secs),
            max_connections: config.max_connections,
            ntp_servers: config.ntp_servers.clone(),
            clock_interval: clock::INTERVAL,
        })
    }
}

/// The message for an address that could not be bound: the port, why, and the fix.
pub fn bind_error(key: &str, addr: SocketAddr, proto: &str, error: &std::io::Error) -> String {
    let port = addr.port();
    match error.kind() {
        std::io::ErrorKind::PermissionDenied if port < 1024 => format!(
            "cannot listen on {addr}/{proto}: port {port} is below 1024 and needs root or the \
             CAP_NET_BIND_SERVICE capability. Fix: `sudo setcap cap_net_bind_service=+ep <path \
             of the binary>`, or set collector.{key} to a port of 1024 or more (e.g. \
             \"{}:{}\") and point the gateways there",
            addr.ip(),
            port + 1000 + if port < 100 { 1000 } else { 0 },
        ),
        std::io::ErrorKind::AddrInUse => format!(
            "cannot listen on {addr}/{proto}: another program is using port {port} (see `ss \
             -lnp 'sport = :{port}'`; a system rsyslog often holds 514). Fix: stop it, or set \
             collector.{key} to another port"
        ),
        std::io::ErrorKind::AddrNotAvailable => format!(
            "cannot listen on {addr}/{proto}: this machine has no address {}. Fix: set \
             collector.{key} to one of its addresses, or 0.0.0.0",
            addr.ip()
        ),
        _ => format!("cannot listen on {addr}/{proto}: {error}"),
    }
}

/// The collector, started: its inputs' states and its counters.
pub struct RunningCollector {
    inputs: Vec<InputStatus>,
    sources: Arc<Sources>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    abandon: CancellationToken,
    writer: WriterTask,
    silent_after: Duration,
    clock: clock::Readings,
    report: Arc<report::Report>,
}

/// Starts inputs and the writer; the entry point `khetnet serve` embeds.
pub struct Collector;

impl Collector {
    /// Binds every configured input, starts it and the writer over `store`, and returns at
    /// once. An input that cannot bind is reported as [`InputState::Down`] with the reason and
    /// the fix; the others run. Everything stops when `shutdown` is cancelled; then call
    /// [`RunningCollector::finished`] to wait until what was received is stored.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad `[collector]` value. Bind failures are not errors.
    pub async fn start(
        config: &CollectorConfig,
        store: Arc<Store>,
        shutdown: CancellationToken,
    ) -> Result<RunningCollector> {
        let settings = Settings::from_config(config)?;
        Ok(Self::start_with(settings, store, shutdown).await)
    }

    /// As [`Collector::start`], with the settings already parsed (the command line's flags
    /// override the file this way).
    pub async fn start_with(
        settings: Settings,
        store: Arc<Store>,
        shutdown: CancellationToken,
    ) -> RunningCollector {
        if settings.allow.entries().is_empty() {
            tracing::warn!(
                "collector.allow is empty: every source will be refused; list the gateways' addresses (--allow CIDR[=SCHOOL])"
            );
        }
        let abandon = CancellationToken::new();
        let sources = Arc::new(Sources::new(settings.allow.clone()));
        let (writer, writer_task) = Writer::start(store.clone(), sources.clone(), abandon.clone());
        let tracker = TaskTracker::new();
        let store_dir = store.dir().to_owned();
        let shared = Shared {
            writer,
            sources: sources.clone(),
            store,
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
            connections: Arc::new(Semaphore::new(settings.max_connections)),
        };
        let mut inputs = Vec::new();
        let mut status = |name: &'static str, addr: Option<SocketAddr>, state: InputState| {
            if let InputState::Down(why) = &state {
                tracing::error!(input = name, "{why}");
            }
            inputs.push(InputStatus {
                name,
                configured: addr.map(|a| a.to_string()).unwrap_or_default(),
                state,
            });
        };

        // UDP inputs.
        for (name, addr) in [
            ("syslog_udp", settings.syslog_udp),
            ("radius", settings.radius),
            ("netflow", settings.netflow),
            ("ipfix", settings.ipfix),
        ] {
            let Some(addr) = addr else {
                status(name, None, InputState::Off);
                continue;
            };
            let socket = match UdpSocket::bind(addr).await {
                Ok(s) => s,
                Err(e) => {
                    status(
                        name,
                        Some(addr),
                        InputState::Down(bind_error(name, addr, "udp", &e)),
                    );
                    continue;
                }
            };
            let local = socket.local_addr().unwrap_or(addr);
            let shared = shared.clone();
            match name {
                "syslog_udp" => tracker.spawn(syslog::run_syslog_udp(socket, shared)),
                "radius" => {
                    if settings.secrets.default.is_none()
                        && settings.secrets.clients.entries().is_empty()
                    {
                        tracing::warn!(
                            "no RADIUS shared secret configured (collector.radius_secret or radius_clients): every request will be refused"
                        );
                    }
                    tracker.spawn(radius::run_radius(socket, settings.secrets.clone(), shared))
                }
                "netflow" => tracker.spawn(netflow::run_netflow(socket, Input::Netflow, shared)),
                _ => tracker.spawn(netflow::run_netflow(socket, Input::Ipfix, shared)),
            };
            status(name, Some(addr), InputState::Listening(local));
        }

        // Stream inputs.
        for (name, addr) in [
            ("syslog_tcp", settings.syslog_tcp),
            ("syslog_tls", settings.syslog_tls),
            ("relp", settings.relp),
        ] {
            let Some(addr) = addr else {
                status(name, None, InputState::Off);
                continue;
            };
            let acceptor = if name == "syslog_tls" {
                match &settings.tls {
                    None => {
                        // Off, not down: TLS runs only once a certificate is configured, so a
                        // fresh install is not reported degraded for a choice it has not made.
                        tracing::info!(
                            "syslog over TLS is off: set collector.tls_cert and collector.tls_key (PEM) to receive it"
                        );
                        status(name, Some(addr), InputState::Off);
                        continue;
                    }
                    Some(files) => match files.acceptor() {
                        Ok(a) => Some(a),
                        Err(e) => {
                            status(name, Some(addr), InputState::Down(e.to_string()));
                            continue;
                        }
                    },
                }
            } else {
                None
            };
            let listener = match TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    status(
                        name,
                        Some(addr),
                        InputState::Down(bind_error(name, addr, "tcp", &e)),
                    );
                    continue;
                }
            };
            let local = listener.local_addr().unwrap_or(addr);
            let shared = shared.clone();
            match (name, acceptor) {
                ("syslog_tcp", _) => tracker.spawn(syslog::run_syslog_tcp(listener, shared)),
                (_, Some(acceptor)) => {
                    tracker.spawn(syslog::run_syslog_tls(listener, acceptor, shared))
                }
                _ => tracker.spawn(relp::run_relp(listener, shared)),
            };
            status(name, Some(addr), InputState::Listening(local));
        }

        // Sources gone quiet.
        let watch_sources = sources.clone();
        let silent_after = settings.silent_after;
        let stop = shutdown.clone();
        tracker.spawn(async move {
            let every = (silent_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
            let mut reported = std::collections::HashSet::new();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                let silent = watch_sources.silent(silent_after, Instant::now());
                let now: std::collections::HashSet<IpAddr> = silent.iter().map(|s| s.source).collect();
                for s in &silent {
                    if reported.insert(s.source) {
                        tracing::warn!(source = %s.source, school = s.school.as_deref().unwrap_or("-"), quiet_secs = s.quiet_for.map(|d| d.as_secs()), "source silent longer than collector.silent_after_secs");
                    }
                    metrics::gauge!("khetnet_collector_source_silent", "source" => s.source.to_string()).set(1.0);
                }
                for gone in reported.iter().filter(|ip| !now.contains(ip)) {
                    tracing::info!(source = %gone, "source heard again");
                    metrics::gauge!("khetnet_collector_source_silent", "source" => gone.to_string()).set(0.0);
                }
                reported.retain(|ip| now.contains(ip));
            }
        });
        // The clock against the reference.
        let readings = clock::Readings::default();
        if !settings.ntp_servers.is_empty() {
            tracker.spawn(clock::run_clock_check(
                settings.ntp_servers.clone(),
                settings.clock_interval,
                readings.clone(),
                shared.clone(),
            ));
        }
        // The counters, where `khetnet-retention status` reads them.
        let report = Arc::new(report::Report {
            writer: format!(
                "khetnet-collector {}, pid {}",
                env!("CARGO_PKG_VERSION"),
                std::process::id()
            ),
            started_at: jiff::Timestamp::now(),
            inputs: inputs.clone(),
            sources: sources.clone(),
            clock: readings.clone(),
            dir: store_dir,
        });
        tracker.spawn(report::run_snapshots(report.clone(), shutdown.clone()));
        tracker.close();
        drop(shared);
        RunningCollector {
            inputs,
            sources,
            tracker,
            shutdown,
            abandon,
            writer: writer_task,
            silent_after,
            clock: readings,
            report,
        }
    }
}

impl RunningCollector {
    /// Every input and whether it runs.
    pub fn inputs(&self) -> &[InputStatus] {
        &self.inputs
    }

    /// The address `name` (a configuration key) listens on, when it runs.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.inputs.iter().find_map(|i| match i.state {
            InputState::Listening(a) if i.name == name => Some(a),
            _ => None,
        })
    }

    /// True when every configured input runs (for `/healthz`).
    pub fn healthy(&self) -> bool {
        !self
            .inputs
            .iter()
            .any(|i| matches!(i.state, InputState::Down(_)))
    }

    /// The counters and the allow-list.
    pub fn sources(&self) -> &Arc<Sources> {
        &self.sources
    }

    /// Sources quiet longer than `collector.silent_after_secs` now.
    pub fn silent_sources(&self) -> Vec<Silent> {
        self.sources.silent(self.silent_after, Instant::now())
    }

    /// The last clock check against each NTP server (empty before the first, or when none is
    /// configured).
    pub fn clock(&self) -> Vec<clock::ClockReading> {
        self.clock.latest()
    }

    /// The clock readings as they change, for whoever watches them after the collector is
    /// handed to [`RunningCollector::finished`] (`/healthz`).
    pub fn clock_readings(&self) -> clock::Readings {
        self.clock.clone()
    }

    /// The counters as `khetnet-retention status` shows them (`counters.json`), taken now.
    pub fn counters(&self) -> khetnet_retention::counters::Counters {
        self.report.snapshot(false)
    }

    /// Stops every input (cancels the token given to [`Collector::start`]) and waits until
    /// every record received is stored and the chain head signed. When the store keeps failing,
    /// gives up after `grace` and tells the senders nothing was stored.
    pub async fn shutdown(self, grace: Duration) {
        self.shutdown.cancel();
        self.finished(grace).await;
    }

    /// Waits until the inputs have stopped (after the shutdown token is cancelled) and what
    /// they received is stored.
    pub async fn finished(self, grace: Duration) {
        self.tracker.wait().await;
        let abandon = self.abandon.clone();
        let give_up = tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            abandon.cancel();
        });
        self.writer.finished().await;
        give_up.abort();
        // The last snapshot, with everything stored counted.
        self.report.write(true).await;
    }
}
