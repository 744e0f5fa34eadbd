//! `khetnet-retention`: the compliance officer's CLI over a retention store.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use khetnet_retention::cli::{self, parse_time, parse_until};
use khetnet_retention::export::{self, Format};
use khetnet_retention::holds::{self, HoldRequest};
use khetnet_retention::query::Query;
use khetnet_retention::signing;
use khetnet_retention::verify::{self, VerifyOptions};
use khetnet_retention::{Options, Store};
use serde::Serialize;

#[derive(Parser)]
#[command(
    version,
    about = "Verify, search and export the Computer Crime Act traffic data store"
)]
struct Args {
    /// The store directory.
    #[arg(long, env = "KHETNET_STORE", global = true)]
    store: Option<PathBuf>,
    /// Print JSON instead of text (and no progress bars).
    #[arg(long, global = true)]
    json: bool,
    /// Who is acting, for the access log (the OS user by default).
    #[arg(long, env = "KHETNET_ACTOR", global = true)]
    actor: Option<String>,
    /// Days records are kept, from their receive time (at least 90).
    #[arg(
        long,
        env = "KHETNET_RETENTION_DAYS",
        default_value_t = 90,
        global = true
    )]
    retention_days: u32,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Create a store and its signing key.
    Init,
    /// Check segments, live tail, chain, signatures and purges; exit 0 only when intact.
    Verify {
        /// The public key you trust (your copy of public-key.txt).
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// Coverage, sources and their gaps, holds.
    Status,
    /// Records between two times, filtered.
    Search(Filters),
    /// Who used a public IP (and port) at a time.
    Attribute {
        #[arg(long)]
        ip: IpAddr,
        #[arg(long)]
        port: Option<u16>,
        #[arg(long, value_parser = parse_time)]
        at: jiff::Timestamp,
    },
    /// Export records with a signed manifest.
    Export {
        #[command(flatten)]
        filters: Filters,
        #[arg(long, value_enum)]
        format: ExportFormat,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check an export directory without the store.
    VerifyExport {
        dir: PathBuf,
        /// The public key you trust; the manifest's own otherwise.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// Legal holds.
    #[command(subcommand)]
    Hold(HoldVerb),
    /// Remove whole segments past retention and outside every hold.
    Purge {
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(clap::Args)]
struct Filters {
    #[arg(long, value_parser = parse_time)]
    from: jiff::Timestamp,
    #[arg(long, value_parser = parse_time)]
    to: jiff::Timestamp,
    #[arg(long)]
    ip: Option<IpAddr>,
    #[arg(long)]
    port: Option<u16>,
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    mac: Option<String>,
    #[arg(long)]
    school: Option<String>,
}

#[derive(Subcommand)]
enum HoldVerb {
    Add {
        #[arg(long)]
        case: String,
        #[arg(long, value_parser = parse_time)]
        from: jiff::Timestamp,
        #[arg(long, value_parser = parse_time)]
        to: jiff::Timestamp,
        #[arg(long)]
        ip: Option<IpAddr>,
        #[arg(long)]
        user: Option<String>,
        /// A date (kept through that day, Bangkok time) or an RFC 3339 time; at most two years ahead.
        #[arg(long, value_parser = parse_until)]
        until: jiff::Timestamp,
        #[arg(long)]
        reason: String,
    },
    List,
    Release {
        id: String,
        #[arg(long, default_value = "released by order")]
        reason: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Csv,
    Jsonl,
}

impl From<Filters> for Query {
    fn from(f: Filters) -> Query {
        Query {
            from: f.from,
            to: f.to,
            ip: f.ip,
            port: f.port,
            user: f.user,
            mac: f.mac.map(|m| m.to_ascii_lowercase()),
            school: f.school,
            ..Query::default()
        }
    }
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn print<T: Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", text(value));
    }
    Ok(())
}

/// Runs a verb; `Ok(false)` when a check found problems.
fn run(args: Args) -> anyhow::Result<bool> {
    let json = args.json;
    let progress = !json && std::io::stderr().is_terminal();
    let actor = cli::actor(args.actor.as_deref());
    if let Verb::VerifyExport { dir, public_key } = &args.verb {
        let key = public_key
            .as_deref()
            .map(signing::read_public)
            .transpose()?;
        let check = export::verify_export(dir, key)?;
        print(json, &check, |c| {
            let mut s = if c.ok {
                format!(
                    "EXPORT VERIFIED: {} records, query {}, by {} at {}\n",
                    c.records, c.query, c.actor, c.created
                )
            } else {
                format!("EXPORT NOT VERIFIED: {} problem(s)\n", c.problems.len())
            };
            for p in &c.problems {
                s += &format!("  {p}\n");
            }
            if !c.key_supplied {
                s += "note: checked with the key named in the manifest; pass --public-key with your own copy to rule out a re-signed export\n";
            }
            s
        })?;
        return Ok(check.ok);
    }
    let dir = args
        .store
        .context("name the store with --store DIR (or KHETNET_STORE)")?;
    let opts = Options {
        retention_days: args.retention_days,
        ..Options::default()
    };
    match args.verb {
        Verb::Init => {
            let store = Store::init(&dir, &opts)?;
            println!(
                "created store {}; public key {} (also in {}: keep a copy away from this machine)",
                dir.display(),
                store.keys().public_hex(),
                dir.join(signing::PUBLIC_FILE).display()
            );
            Ok(true)
        }
        Verb::Verify { public_key } => {
            let key = public_key
                .as_deref()
                .map(signing::read_public)
                .transpose()?;
            let report = verify::verify(
                &dir,
                &VerifyOptions {
                    public_key: key,
                    progress,
                },
            )?;
            print(json, &report, cli::render_report)?;
            Ok(report.intact)
        }
        verb => {
            let store = Store::open_shared(&dir, &opts)?;
            if let Some(r) = store.recovery() {
                eprintln!("note: {r}");
            }
            let result = run_on_store(&store, verb, &actor, json, progress);
            // Chain what this process wrote and sign it, when it is the writer.
            store.tick()?;
            store.sign_now()?;
            result
        }
    }
}

fn run_on_store(
    store: &Store,
    verb: Verb,
    actor: &str,
    json: bool,
    progress: bool,
) -> anyhow::Result<bool> {
    match verb {
        Verb::Status => print(json, &store.status()?, cli::render_status)?,
        Verb::Search(f) => {
            let (hits, _) = store.search(actor, &f.into())?;
            if json {
                for h in &hits {
                    println!("{}", serde_json::to_string(h)?);
                }
            } else {
                for h in &hits {
                    println!("{}", cli::render_hit(h));
                }
                eprintln!("{} record(s)", hits.len());
            }
        }
        Verb::Attribute { ip, port, at } => {
            print(
                json,
                &store.attribute(actor, ip, port, at)?,
                cli::render_attribution,
            )?;
        }
        Verb::Export {
            filters,
            format,
            out,
        } => {
            let format = match format {
                ExportFormat::Csv => Format::Csv,
                ExportFormat::Jsonl => Format::Jsonl,
            };
            let m = store.export(actor, &filters.into(), format, &out, progress)?;
            print(json, &m, |m| {
                format!(
                    "exported {} records to {} with a signed manifest; check it with `khetnet-retention verify-export {}`\n",
                    m.records,
                    out.display(),
                    out.display()
                )
            })?;
        }
        Verb::Hold(HoldVerb::Add {
            case,
            from,
            to,
            ip,
            user,
            until,
            reason,
        }) => {
            let h = store.hold_add(
                actor,
                HoldRequest {
                    case,
                    from,
                    to,
                    ip,
                    user,
                    until,
                    reason,
                },
            )?;
            print(json, &h, |h| {
                format!("placed hold {} for case {}\n", h.id, h.case)
            })?;
        }
        Verb::Hold(HoldVerb::List) => {
            let list = holds::holds(&store.view()?, store.now());
            print(json, &list, |l| cli::render_holds(l))?;
        }
        Verb::Hold(HoldVerb::Release { id, reason }) => {
            let r = store.hold_release(actor, &id, &reason)?;
            print(json, &r, |r| format!("released hold {}\n", r.id))?;
        }
        Verb::Purge { dry_run } => {
            let plan = store.purge(actor, dry_run)?;
            print(json, &plan, |p| cli::render_purge(p, dry_run))?;
        }
        Verb::Init | Verb::Verify { .. } | Verb::VerifyExport { .. } => {
            unreachable!("handled before opening")
        }
    }
    Ok(true)
}
