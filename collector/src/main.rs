//! `khetnet-collector`: the collector run on its own box. Parses arguments and calls into the
//! library.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use jiff::Timestamp;
use khetnet_collector::import::import_file;
use khetnet_collector::{Collector, InputState, Receipt, Settings};
use khetnet_retention::record::{Input, Origin};
use khetnet_retention::{Options, Store};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "khetnet-collector",
    version,
    about = "Receives syslog, RADIUS accounting and NetFlow/IPFIX from school gateways"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive from the network and write to the store until SIGINT or SIGTERM.
    Run(Box<RunArgs>),
    /// Import an old log server's files (plain or .gz) into the store, each line parsed like
    /// live syslog and marked with its file's SHA-256.
    Import {
        #[arg(long)]
        store: PathBuf,
        /// The files' format; only `syslog` (one message per line, as log servers write).
        #[arg(long, default_value = "syslog", value_parser = ["syslog"])]
        format: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Parse syslog lines (files, or standard input) and print the records they become as
    /// JSON Lines, without storing anything: shows whether a gateway's format is understood.
    Parse {
        /// The receive time to assume (RFC 3339); RFC 3164 lines take their year from it.
        #[arg(long)]
        at: Option<Timestamp>,
        files: Vec<PathBuf>,
    },
    /// List the inputs and what is built of each.
    Inputs,
}

/// `run`'s flags; they override the configuration file.
#[derive(Args)]
struct RunArgs {
    /// khetnet.toml (its [collector] and [retention] sections); KHETNET_* variables apply.
    #[arg(long, env = "KHETNET_CONFIG")]
    config: Option<PathBuf>,
    /// The store directory (created when missing).
    #[arg(long)]
    store: Option<PathBuf>,
    #[arg(long, value_name = "ADDR")]
    syslog_udp: Option<SocketAddr>,
    #[arg(long, value_name = "ADDR")]
    syslog_tcp: Option<SocketAddr>,
    #[arg(long, value_name = "ADDR")]
    syslog_tls: Option<SocketAddr>,
    #[arg(long, value_name = "ADDR")]
    relp: Option<SocketAddr>,
    #[arg(long, value_name = "ADDR")]
    radius: Option<SocketAddr>,
    #[arg(long, value_name = "SECRET")]
    radius_secret: Option<String>,
    #[arg(long, value_name = "ADDR")]
    netflow: Option<SocketAddr>,
    /// An allowed source: ADDRESS[/PREFIX][=SCHOOL]. Repeat for more.
    #[arg(long, value_name = "CIDR[=SCHOOL]")]
    allow: Vec<String>,
}

const INPUTS: &[(&str, &str, &str)] = &[
    ("syslog UDP", "514/udp", "syslog_udp, --syslog-udp"),
    (
        "syslog TCP (RFC 6587)",
        "514/tcp",
        "syslog_tcp, --syslog-tcp",
    ),
    (
        "syslog TLS (RFC 5425)",
        "6514/tcp",
        "syslog_tls, --syslog-tls; needs tls_cert and tls_key",
    ),
    ("RELP", "2514/tcp", "relp, --relp"),
    (
        "RADIUS accounting",
        "1813/udp",
        "radius, --radius; secrets in radius_secret, radius_clients",
    ),
    ("NetFlow v5/v9, IPFIX", "2055/udp", "netflow, --netflow"),
    ("IPFIX", "4739/udp", "ipfix"),
];

fn main() -> ExitCode {
    khetnet_collector::limit_heap_growth();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("khetnet-collector: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Inputs => {
            print_inputs();
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run_collector(*args),
        Command::Import { store, files, .. } => import(&store, &files),
        Command::Parse { at, files } => {
            parse(at.unwrap_or_else(Timestamp::now), &files)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_inputs() {
    println!("{:<24} {:<10} configured by", "input", "default");
    for (input, port, status) in INPUTS {
        println!("{input:<24} {port:<10} {status}");
    }
}

fn parse(at: Timestamp, files: &[PathBuf]) -> anyhow::Result<()> {
    let receipt = Receipt {
        receive_time: at,
        origin: Origin {
            input: Input::Import,
            peer: None,
            import_sha256: None,
        },
        school: None,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut each_line = |reader: &mut dyn BufRead, name: &str| -> anyhow::Result<()> {
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .with_context(|| format!("reading {name}"))?;
            if n == 0 {
                return Ok(());
            }
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            if line.is_empty() {
                continue;
            }
            let record = khetnet_collector::syslog::decode(&line, &receipt);
            serde_json::to_writer(&mut out, &record)?;
            writeln!(out)?;
        }
    };
    if files.is_empty() {
        each_line(&mut std::io::stdin().lock(), "standard input")?;
    }
    for file in files {
        let opened =
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        each_line(
            &mut std::io::BufReader::new(opened),
            &file.display().to_string(),
        )?;
    }
    Ok(())
}

/// The configuration file's `[collector]` section with the flags applied over it.
fn settings(args: &RunArgs) -> anyhow::Result<(khetnet_config::Config, Settings)> {
    let mut config = khetnet_config::Config::load(args.config.as_deref(), std::env::vars())?;
    let c = &mut config.collector;
    let flags = [
        (&mut c.syslog_udp, args.syslog_udp),
        (&mut c.syslog_tcp, args.syslog_tcp),
        (&mut c.syslog_tls, args.syslog_tls),
        (&mut c.relp, args.relp),
        (&mut c.radius, args.radius),
        (&mut c.netflow, args.netflow),
    ];
    for (key, flag) in flags {
        if let Some(addr) = flag {
            *key = addr.to_string();
        }
    }
    if args.radius_secret.is_some() {
        c.radius_secret.clone_from(&args.radius_secret);
    }
    if !args.allow.is_empty() {
        c.allow.clone_from(&args.allow);
    }
    if let Some(store) = &args.store {
        config.retention.store = Some(store.clone());
    }
    let settings = Settings::from_config(&config.collector)?;
    Ok((config, settings))
}

fn run_collector(args: RunArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let (config, settings) = settings(&args)?;
    let dir = config.store_dir();
    let options = Options {
        retention_days: config.retention.retention_days,
        ..Options::default()
    };
    let store = Store::open_or_init(&dir, &options)
        .with_context(|| format!("opening the store {}", dir.display()))?;
    if let Some(cut) = store.recovery() {
        eprintln!("khetnet-collector: {cut}");
    }
    let store = Arc::new(store);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        // Before the inputs are announced: a SIGTERM right after start is a clean stop too.
        let signals = Signals::install();
        let shutdown = CancellationToken::new();
        let running = Collector::start_with(settings, store, shutdown.clone()).await;
        println!("khetnet-collector: store {}", dir.display());
        for input in running.inputs() {
            println!("{input}");
        }
        let listening = running
            .inputs()
            .iter()
            .filter(|i| matches!(i.state, InputState::Listening(_)))
            .count();
        if listening == 0 {
            eprintln!("khetnet-collector: no input could start; nothing to do");
            running.shutdown(Duration::from_secs(5)).await;
            return Ok(ExitCode::FAILURE);
        }
        signals.wait().await;
        eprintln!("khetnet-collector: stopping; storing what was received");
        running.shutdown(Duration::from_secs(30)).await;
        Ok(ExitCode::SUCCESS)
    })
}

/// SIGTERM and SIGINT, listened for from the moment they are installed.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            interrupt: signal(SignalKind::interrupt()).ok(),
        }
    }

    async fn wait(mut self) {
        async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.term) => {}
            _ = next(&mut self.interrupt) => {}
        }
    }
}

fn import(dir: &Path, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let store = Store::open_or_init(dir, &Options::default())
        .with_context(|| format!("opening the store {}", dir.display()))?;
    let terminal = std::io::stderr().is_terminal();
    for file in files {
        let bar = if terminal {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(file.display().to_string());
            bar
        } else {
            ProgressBar::hidden()
        };
        let started = Instant::now();
        let stats = import_file(&store, file, |s| {
            let rate = s.lines as f64 / started.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!(
                "{} lines, {:.0}/s, {} parsed, {} raw",
                s.lines, rate, s.parsed, s.raw
            ));
            bar.tick();
        })?;
        bar.finish_and_clear();
        println!(
            "{}: {} lines ({} parsed, {} raw) sha256 {}",
            file.display(),
            stats.lines,
            stats.parsed,
            stats.raw,
            stats.sha256
        );
    }
    store.sign_now().context("signing the chain head")?;
    Ok(ExitCode::SUCCESS)
}
