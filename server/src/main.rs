//! `khetnet`: the district server. Parses arguments and calls into the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use khetnet_config::Config;

#[derive(Parser)]
#[command(
    name = "khetnet",
    version,
    about = "The district ICT desk, device health and traffic-log collector"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (and, by default, the embedded collector).
    Serve {
        /// The configuration file (khetnet.toml); defaults apply without one.
        #[arg(long, env = "KHETNET_CONFIG")]
        config: Option<PathBuf>,
        /// The data directory (overrides server.data_dir).
        #[arg(long)]
        data: Option<PathBuf>,
        /// The HTTP address (overrides server.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Do not start the embedded collector.
        #[arg(long)]
        no_collector: bool,
        /// Serve HTTPS with a self-signed certificate generated once into the data directory.
        #[arg(long)]
        tls_self_signed: bool,
    },
    /// Fill a new database with a synthetic district for the desk benchmark (bench/desk.sh).
    #[command(hide = true)]
    SeedDesk {
        /// The database URL (sqlite:PATH or postgres://...).
        #[arg(long)]
        database: String,
        #[arg(long, default_value_t = 1_000_000)]
        assets: i64,
        #[arg(long, default_value_t = 1_000_000)]
        requests: i64,
        /// The password of every sample user.
        #[arg(long)]
        password: String,
    },
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a file (and the KHETNET_* environment) without starting anything.
    Check { file: PathBuf },
    /// Print the example file, every key documented.
    Example,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = std::env::vars();
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check { file },
        } => {
            // The collector's values (addresses, allow-list, secrets) are checked by the part
            // that uses them, so `check` refuses what `serve` would.
            let checked = Config::load(Some(&file), env)
                .map_err(|e| e.to_string())
                .and_then(|config| {
                    khetnet_collector::Settings::from_config(&config.collector)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
            match checked {
                Ok(()) => {
                    println!("{}: ok", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("khetnet: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Config {
            command: ConfigCommand::Example,
        } => {
            print!("{}", include_str!("../../config/khetnet.example.toml"));
            ExitCode::SUCCESS
        }
        Command::SeedDesk {
            database,
            assets,
            requests,
            password,
        } => {
            let runtime = tokio::runtime::Runtime::new().expect("starting the async runtime");
            let seeded = runtime.block_on(async {
                let db = khetnet_server::db::Db::connect(&database, 2).await?;
                let now = jiff::Timestamp::now().as_millisecond();
                khetnet_server::desk::sample::seed(&db, &password, assets, requests, now).await
            });
            match seeded {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("khetnet: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve {
            config,
            data,
            listen,
            no_collector,
            tls_self_signed,
        } => {
            let mut config = match Config::load(config.as_deref(), env) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("khetnet: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if let Some(data) = data {
                config.server.data_dir = data;
            }
            if let Some(listen) = listen {
                config.server.listen = listen;
            }
            config.server.tls_self_signed |= tls_self_signed;
            if let Err(e) = khetnet_server::telemetry::init_logging(&config.logging) {
                eprintln!("khetnet: {e}");
                return ExitCode::FAILURE;
            }
            let options = khetnet_server::StartOptions {
                admin_password: std::env::var("KHETNET_ADMIN_PASSWORD")
                    .ok()
                    .filter(|p| !p.is_empty()),
            };
            let with_collector = config.collector.enabled && !no_collector;
            let runtime = tokio::runtime::Runtime::new().expect("starting the async runtime");
            match runtime.block_on(khetnet_server::serve(config, options, with_collector)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("khetnet: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
