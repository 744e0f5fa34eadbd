//! `khetnet-collector`: the collector run on its own box. Parses arguments and calls into the
//! library.
//!
//! The decoders (syslog, gateway formats, RADIUS accounting, NetFlow/IPFIX) are built; the
//! network listeners and the file import are not yet, and `run`/`import` say so with exit
//! code 2 rather than pretend.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use jiff::Timestamp;
use khetnet_collector::Receipt;
use khetnet_collector::source::AllowList;
use khetnet_retention::record::{Input, Origin};

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
    /// Receive from the network and write to the store (listeners not built yet).
    Run(Box<RunArgs>),
    /// Import an old log server's files into the store (not built yet).
    Import {
        #[arg(long)]
        store: PathBuf,
        #[arg(long, default_value = "syslog")]
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
    #[arg(long)]
    config: Option<PathBuf>,
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
    ("syslog UDP", "514/udp", "decoder ready; listener not built"),
    (
        "syslog TCP (RFC 6587)",
        "514/tcp",
        "framing and decoder ready; listener not built",
    ),
    (
        "syslog TLS (RFC 5425)",
        "6514/tcp",
        "framing and decoder ready; listener not built",
    ),
    ("RELP", "2514/tcp", "decoder ready; RELP session not built"),
    (
        "RADIUS accounting",
        "1813/udp",
        "decoder and response ready; listener not built",
    ),
    (
        "NetFlow v5/v9",
        "2055/udp",
        "decoder ready; listener not built",
    ),
    ("IPFIX", "4739/udp", "decoder ready; listener not built"),
];

fn main() -> ExitCode {
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
        Command::Run(args) => {
            // Refuse a bad allow-list now, so the flags are already checked.
            AllowList::from_entries(&args.allow)?;
            print_inputs();
            eprintln!(
                "khetnet-collector: the network listeners are not built yet; nothing was started"
            );
            Ok(ExitCode::from(2))
        }
        Command::Import { .. } => {
            eprintln!("khetnet-collector: import is not built yet; nothing was imported");
            Ok(ExitCode::from(2))
        }
        Command::Parse { at, files } => {
            parse(at.unwrap_or_else(Timestamp::now), &files)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_inputs() {
    println!("{:<24} {:<10} status", "input", "default");
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
