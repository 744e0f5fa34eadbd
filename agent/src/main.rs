//! `khetnet-agent`: parses arguments and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use khetnet_agent::run::Options;

#[derive(Parser)]
#[command(
    name = "khetnet-agent",
    version,
    about = "The khetnet school agent: probes the school's devices and reports to the district server"
)]
struct Cli {
    /// The configuration file (its [agent] and [logging] sections).
    #[arg(long, global = true, env = "KHETNET_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides agent.state_dir.
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Exchange a one-time enrollment token for this agent's credential.
    Enroll {
        /// The district server, e.g. https://khetnet.example.go.th
        #[arg(long)]
        server: String,
        #[arg(long)]
        token: String,
        /// PEM CA certificate to trust for the server (its self-signed certificate, or the
        /// district's CA); without it the system's roots are used.
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// The name technicians see (default: the host name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Probe on schedule and report, until SIGTERM or SIGINT.
    Run,
    /// Probe every target once and print the results.
    Check {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Sweep one IPv4 network now and print who answered: ARP (IP, MAC, vendor) by default,
    /// or ICMP echo. Only the network given, at most a /22; needs CAP_NET_RAW.
    Sweep {
        /// The network, e.g. 192.168.1.0/24.
        network: String,
        /// Ping every host instead of asking by ARP (works across routers).
        #[arg(long)]
        icmp: bool,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Install as a systemd service.
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
}

#[derive(Subcommand)]
enum ServiceAction {
    /// Write the systemd unit (then: systemctl daemon-reload && systemctl enable --now khetnet-agent).
    Install {
        #[arg(long, default_value = "/etc/systemd/system")]
        unit_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("khetnet-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    let env = std::env::vars().filter(|(k, _)| k.starts_with("KHETNET_"));
    let config = khetnet_config::Config::load(cli.config.as_deref(), env)?;
    let filter =
        tracing_subscriber::EnvFilter::try_new(&config.logging.level).context("logging.level")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let mut options = Options::from(&config.agent);
    if let Some(dir) = cli.state_dir {
        options.state_dir = dir;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match cli.command {
        Command::Enroll {
            server,
            token,
            ca_cert,
            name,
        } => {
            let credential = runtime.block_on(khetnet_agent::enroll::enroll(
                &options.state_dir,
                &server,
                &token,
                ca_cert.as_deref(),
                name,
            ))?;
            println!(
                "khetnet-agent: enrolled as agent {} of school {}; credential saved in {}",
                credential.agent_id,
                credential.school_id,
                khetnet_agent::state::credential_path(&options.state_dir).display()
            );
        }
        Command::Run => {
            let stats = runtime.block_on(khetnet_agent::run::run(options, shutdown_signal()))?;
            if stats.spooled_at_exit > 0 {
                eprintln!(
                    "khetnet-agent: {} batches wait in the spool for the next run",
                    stats.spooled_at_exit
                );
            }
        }
        Command::Check { json } => {
            let results = runtime.block_on(khetnet_agent::run::check(&options))?;
            if json {
                for (target, sample) in &results {
                    println!(
                        "{}",
                        serde_json::json!({ "name": target.name, "probe": target.probe, "address": target.address, "sample": sample, "discovered": sample.discovered })
                    );
                }
            } else {
                print!("{}", khetnet_agent::run::table(&results));
            }
            if results.iter().any(|(_, s)| !s.ok) {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Sweep {
            network,
            icmp,
            json,
        } => {
            let network: khetnet_agent::discovery::Network =
                network.parse().map_err(anyhow::Error::msg)?;
            let start = std::time::Instant::now();
            if icmp {
                let alive = runtime
                    .block_on(khetnet_agent::discovery::icmp_sweep(
                        network,
                        std::time::Duration::from_millis(500),
                    ))
                    .map_err(anyhow::Error::msg)?;
                for (ip, rtt) in &alive {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({ "ip": ip.to_string(), "latency_ms": rtt })
                        );
                    } else {
                        println!("{ip:<16} {rtt:.2} ms");
                    }
                }
                eprintln!(
                    "khetnet-agent: {} of {} hosts answered in {:.2} s",
                    alive.len(),
                    network.hosts().len(),
                    start.elapsed().as_secs_f64()
                );
            } else {
                let found = runtime
                    .block_on(async {
                        tokio::task::spawn_blocking(move || {
                            khetnet_agent::discovery::arp_sweep(
                                network,
                                std::time::Duration::from_secs(1),
                            )
                        })
                        .await
                    })
                    .context("the sweep stopped")?
                    .map_err(anyhow::Error::msg)?;
                for d in &found {
                    if json {
                        println!("{}", serde_json::to_string(d)?);
                    } else {
                        println!(
                            "{:<16} {}  {}",
                            d.ip,
                            d.mac,
                            d.vendor.as_deref().unwrap_or("-")
                        );
                    }
                }
                eprintln!(
                    "khetnet-agent: {} of {} addresses answered ARP in {:.2} s",
                    found.len(),
                    network.hosts().len(),
                    start.elapsed().as_secs_f64()
                );
            }
        }
        Command::Service {
            action: ServiceAction::Install { unit_dir },
        } => {
            let binary = std::env::current_exe().context("finding this binary")?;
            let config_path = cli.config.clone().context(
                "--config FILE is required: the service reads its configuration from a file",
            )?;
            let config_path = std::path::absolute(&config_path).context("resolving --config")?;
            let path = khetnet_agent::service::install(&unit_dir, &binary, &config_path)?;
            println!(
                "khetnet-agent: wrote {}; now run: systemctl daemon-reload && systemctl enable --now khetnet-agent",
                path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
