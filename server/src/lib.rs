//! The khetnet server: the district ICT desk's web UI and REST API over SQLite or PostgreSQL.
//!
//! [`start`] binds and serves in the background and returns a [`RunningServer`]; the `khetnet`
//! binary calls [`serve`], which also waits for SIGTERM/SIGINT and shuts down gracefully.
//! Tests call [`start`] with port 0.

pub mod audit;
pub mod auth;
pub mod db;
pub mod desk;
pub mod devices;
pub mod error;
pub mod health;
pub mod http;
pub mod roles;
pub mod schools;
pub mod telemetry;
pub mod tls;
pub mod users;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use khetnet_config::Config;

pub use error::{Error, Result};

/// Thailand's offset: every time shown is in Asia/Bangkok, which keeps +07:00 all year.
pub const BANGKOK: jiff::tz::Offset = jiff::tz::offset(7);

/// How to start, beyond the configuration file.
#[derive(Debug, Default, Clone)]
pub struct StartOptions {
    /// Password for the first `admin` (`KHETNET_ADMIN_PASSWORD`); generated when `None`.
    pub admin_password: Option<String>,
}

/// A server serving in the background.
pub struct RunningServer {
    /// The address it listens on (the real port when the configuration said 0).
    pub addr: SocketAddr,
    /// `https` or `http`.
    pub scheme: &'static str,
    /// The password generated for the first `admin`, on a new database only.
    pub generated_admin_password: Option<String>,
    pub health: Arc<health::Health>,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    sweep: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Stops accepting, lets requests in flight finish (up to 10 s), and waits.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.handle.graceful_shutdown(Some(Duration::from_secs(10)));
        self.sweep.abort();
        self.task.await.context("server task")?.context("serving")?;
        Ok(())
    }
}

/// Opens the database (running migrations), creates the first admin on a new one, binds the
/// listener and serves in the background.
///
/// # Errors
/// The database cannot be opened, the address cannot be bound (the message names the port and
/// the fix), TLS material cannot be loaded, or plain HTTP was asked for on a non-loopback
/// address without `server.allow_plain_http`.
pub async fn start(config: &Config, options: StartOptions) -> anyhow::Result<RunningServer> {
    let data_dir = config.data_dir();
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let database_url = config.database_url();
    let db = db::Db::connect(&database_url, config.database.max_connections)
        .await
        .with_context(|| format!("opening the database {}", redact(&database_url)))?;
    let indexed = desk::assets::index_pending_words(&db)
        .await
        .context("indexing the words of assets for search")?;
    if indexed > 0 {
        tracing::info!(assets = indexed, "indexed the words of assets for search");
    }
    let moved = devices::raw::move_sample_rows(&db)
        .await
        .context("moving device samples into stored reports")?;
    if moved > 0 {
        tracing::info!(samples = moved, "moved device samples into stored reports");
    }
    let generated_admin_password =
        auth::ensure_first_admin(&db, options.admin_password, config.auth.min_password_length)
            .await
            .context("creating the first admin")?;

    let cert_files = if config.server.tls_self_signed {
        Some(tls::self_signed(data_dir, &[]).context("creating the self-signed certificate")?)
    } else {
        match (&config.server.tls_cert, &config.server.tls_key) {
            (Some(cert), Some(key)) => Some(tls::CertFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    };
    let listen = config.server.listen;
    if cert_files.is_none() && !listen.ip().is_loopback() {
        if !config.server.allow_plain_http {
            anyhow::bail!(
                "refusing to serve plain HTTP on {listen}: passwords would cross the network in clear \
                 text. Configure server.tls_cert and server.tls_key, start with --tls-self-signed, \
                 or set server.allow_plain_http = true if a TLS proxy sits in front"
            );
        }
        tracing::warn!(%listen, "serving plain HTTP on a non-loopback address (server.allow_plain_http)");
    } else if cert_files.is_none() {
        tracing::warn!(%listen, "serving plain HTTP, on loopback only; configure TLS to serve the network");
    }

    let listener = std::net::TcpListener::bind(listen).map_err(|e| {
        let fix = match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                "ports below 1024 need root or CAP_NET_BIND_SERVICE; choose another with --listen"
            }
            std::io::ErrorKind::AddrInUse => {
                "another program uses it; stop it or choose another with --listen"
            }
            _ => "choose another address with --listen or server.listen",
        };
        anyhow::anyhow!(
            "cannot listen on {listen} (port {}): {e}; {fix}",
            listen.port()
        )
    })?;
    listener
        .set_nonblocking(true)
        .context("configuring the listener")?;
    let addr = listener.local_addr().context("reading the bound address")?;

    let health = Arc::new(health::Health::default());
    let ingest = devices::samples::Ingest::start(&db, &devices::Settings::from(&config.devices));
    let state = http::AppState {
        db,
        policy: auth::Policy::from(&config.auth),
        throttle: Arc::new(auth::Throttle::new(config.auth.login_attempts_per_minute)),
        tls: cert_files.is_some(),
        metrics: telemetry::metrics_handle(),
        health: health.clone(),
        desk: Arc::new(
            desk::Settings::from(&config.desk)
                .with_public_url(config.server.public_url.clone())
                .with_data_dir(data_dir),
        ),
        ingest,
        agent_credentials: devices::agents::Credentials::default(),
        devices: devices::Settings::from(&config.devices),
    };
    let sweep = devices_sweep(state.db.clone(), state.devices.clone());
    let app = http::router(state, config.server.max_body_bytes)
        .into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let (scheme, task) = match cert_files {
        Some(files) => {
            let tls_config = tls::server_config(&files).await?;
            let server = axum_server::from_tcp_rustls(listener, tls_config)?.handle(handle.clone());
            ("https", tokio::spawn(server.serve(app)))
        }
        None => {
            let server = axum_server::from_tcp(listener)?.handle(handle.clone());
            ("http", tokio::spawn(server.serve(app)))
        }
    };
    tracing::info!(%addr, scheme, "khetnet server listening");
    Ok(RunningServer {
        addr,
        scheme,
        generated_admin_password,
        health,
        handle,
        task,
        sweep,
    })
}

/// Every half report interval: opens incidents for silent agents, rolls raw samples past their
/// window up into 5-minute aggregates and deletes aggregates past theirs.
fn devices_sweep(db: db::Db, settings: devices::Settings) -> tokio::task::JoinHandle<()> {
    let period = Duration::from_secs(settings.report_interval_secs.div_ceil(2).max(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = devices::alerts::sweep(&db, &settings, db::now_ms()).await {
                tracing::warn!(error = %error, "device-health sweep failed");
            }
            if let Err(error) = devices::rollup::maintain(&db, &settings, db::now_ms()).await {
                tracing::warn!(error = %error, "device-sample rollup failed");
            }
        }
    })
}

/// Runs the server until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn serve(
    config: Config,
    options: StartOptions,
    with_collector: bool,
) -> anyhow::Result<()> {
    let server = start(&config, options).await?;
    if let Some(password) = &server.generated_admin_password {
        println!(
            "khetnet: first start: created user `admin` with password {password}\n\
             khetnet: it is shown only this once; sign in and change it under My account."
        );
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let collector = if with_collector {
        Some(start_collector(&config, &server.health, shutdown.clone()).await?)
    } else {
        server.health.set(
            "collector",
            "disabled",
            Some("started with --no-collector or collector.enabled = false".into()),
        );
        None
    };
    println!("khetnet: serving {}/", server.url());
    shutdown_signal().await;
    tracing::info!("shutting down");
    let served = server.shutdown().await;
    if let Some(collector) = collector {
        // Stop the inputs, store what they received and sign the chain head.
        shutdown.cancel();
        collector.finished(Duration::from_secs(30)).await;
    }
    served
}

/// Opens (or creates) the retention store and starts the collector's inputs over it. An input
/// that cannot bind (a port below 1024 without the capability, a port in use) is reported on
/// the console and in `/healthz` with the fix, and the rest keep running.
async fn start_collector(
    config: &Config,
    health: &Arc<health::Health>,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<khetnet_collector::RunningCollector> {
    let dir = config.store_dir();
    let options = khetnet_retention::Options {
        retention_days: config.retention.retention_days,
        ..Default::default()
    };
    let store_dir = dir.clone();
    let store = tokio::task::spawn_blocking(move || {
        khetnet_retention::Store::open_or_init(&store_dir, &options)
    })
    .await
    .context("opening the retention store")?
    .with_context(|| format!("opening the retention store {}", dir.display()))?;
    if let Some(recovery) = store.recovery() {
        tracing::warn!(?recovery, "the retention store cut a torn tail on open");
    }
    let running =
        khetnet_collector::Collector::start(&config.collector, Arc::new(store), shutdown.clone())
            .await
            .context("starting the collector")?;
    for input in running.inputs() {
        println!("khetnet: collector {input}");
        let name = format!("collector.{}", input.name);
        match &input.state {
            khetnet_collector::InputState::Listening(_) => health.set(&name, "ok", None),
            khetnet_collector::InputState::Down(why) => {
                health.set(&name, "down", Some(why.clone()))
            }
            khetnet_collector::InputState::Off => {}
        }
    }
    if !config.collector.ntp_servers.is_empty() {
        // The clock against the law's 10 ms: `collector.clock` in /healthz follows each check.
        let readings = running.clock_readings();
        let health = health.clone();
        tokio::spawn(async move {
            loop {
                match readings.health() {
                    None => health.set("collector.clock", "ok", Some("not checked yet".into())),
                    Some(Ok(offsets)) => health.set("collector.clock", "ok", Some(offsets)),
                    Some(Err(why)) => health.set("collector.clock", "degraded", Some(why)),
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }
    Ok(running)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// A database URL with any password replaced, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
