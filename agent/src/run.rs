//! The service loop (`run`) and the one-shot probe (`check`).
//!
//! `run` keeps three things going: probing each target on its own jittered schedule (at most
//! `max_concurrency` probes at once, at most one in flight per target), turning what was
//! measured into a spooled batch every report interval (jittered, so 300 agents never report
//! at once), and a sender that delivers the spool oldest first, backing off while the server
//! is unreachable. The configuration is pulled again every `config_refresh_secs` and cached.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::time::Instant;

use crate::client::{Client, Delivery};
use crate::probe::{Prober, Sample, Target};
use crate::spool::Spool;
use crate::state::{self, AgentConfig};
use crate::{Error, Result};

/// How the agent runs, from `[agent]` in its configuration file.
#[derive(Debug, Clone)]
pub struct Options {
    pub state_dir: PathBuf,
    pub max_concurrency: usize,
    pub spool_max_batches: usize,
    pub probe_timeout: Duration,
}

impl From<&khetnet_config::AgentConfig> for Options {
    fn from(c: &khetnet_config::AgentConfig) -> Self {
        Options {
            state_dir: c.state_dir.clone(),
            max_concurrency: c.max_concurrency,
            spool_max_batches: c.spool_max_batches,
            probe_timeout: Duration::from_secs(c.probe_timeout_secs),
        }
    }
}

/// What a run did, for its log line at exit and for tests.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub samples_measured: u64,
    pub batches_acknowledged: u64,
    pub samples_acknowledged: u64,
    /// Batches the server had already stored (replays after a lost acknowledgement).
    pub batches_duplicate: u64,
    pub batches_rejected: u64,
    /// Samples dropped because the spool was full.
    pub samples_dropped: u64,
    /// Batches still in the spool when the run ended.
    pub spooled_at_exit: usize,
}

fn client_for(credential: &state::Credential) -> Result<Client> {
    Client::new(
        &credential.server_url,
        credential.ca_cert.as_deref(),
        Some(credential.credential.clone()),
    )
}

/// The configuration from the server (cached on success), or the cached one when the server
/// cannot be reached.
async fn initial_config(client: &Client, options: &Options) -> Result<AgentConfig> {
    match tokio::time::timeout(Duration::from_secs(15), client.config()).await {
        Ok(Ok(config)) => {
            state::save_config(&options.state_dir, &config)?;
            Ok(config)
        }
        Ok(Err(Error::Unauthorized)) => Err(Error::Unauthorized),
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".into(),
            };
            match state::load_config(&options.state_dir) {
                Some(config) => {
                    tracing::warn!(error = %why, "server unreachable: starting with the cached configuration");
                    Ok(config)
                }
                None => Err(Error::Config(format!(
                    "no configuration: the server cannot be reached ({why}) and none is cached in {}",
                    options.state_dir.display()
                ))),
            }
        }
    }
}

/// A duration scaled by a random factor in [1 - spread, 1 + spread].
fn jitter(d: Duration, spread: f64) -> Duration {
    let f = 1.0 - spread + 2.0 * spread * rand::random::<f64>();
    d.mul_f64(f.max(0.0))
}

fn interval_of(t: &Target) -> Duration {
    Duration::from_secs(t.interval_secs.max(1) as u64)
}

/// Each target's next probe: kept for targets that stay the same, spread over the first
/// interval for new ones.
fn reschedule(
    old: &HashMap<i64, (Target, Instant)>,
    targets: &[Target],
    now: Instant,
) -> HashMap<i64, (Target, Instant)> {
    targets
        .iter()
        .map(|t| {
            let due = match old.get(&t.id) {
                Some((prev, due)) if prev == t => *due,
                _ => now + interval_of(t).mul_f64(rand::random::<f64>()),
            };
            (t.id, (t.clone(), due))
        })
        .collect()
}

/// Runs until `shutdown` completes, then probes nothing more, spools what was measured, makes
/// one last attempt to deliver the spool, and returns.
///
/// # Errors
/// No credential; the credential is refused; no configuration from the server nor cached;
/// the state directory cannot be written.
pub async fn run(options: Options, shutdown: impl Future<Output = ()>) -> Result<Stats> {
    let credential = state::load_credential(&options.state_dir)?;
    let client = client_for(&credential)?;
    let config = initial_config(&client, &options).await?;
    let spool = Arc::new(Mutex::new(Spool::open(
        &options.state_dir.join("spool"),
        options.spool_max_batches,
    )?));
    let stats = Arc::new(Mutex::new(Stats::default()));
    let prober = Arc::new(Prober::new(options.probe_timeout));
    let permits = Arc::new(Semaphore::new(options.max_concurrency.max(1)));
    let wake = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let sender = tokio::spawn(send_loop(
        client.clone(),
        spool.clone(),
        stats.clone(),
        wake.clone(),
        stop_rx,
    ));
    tracing::info!(
        agent_id = credential.agent_id,
        server = %credential.server_url,
        targets = config.targets.len(),
        spooled = spool.lock().expect("spool lock").len(),
        "khetnet-agent running"
    );

    // Probes report here; bounded, so a stalled loop holds probes back rather than growing.
    let (sample_tx, mut sample_rx) = mpsc::channel::<Sample>(1024);
    let (config_tx, mut config_rx) = mpsc::channel::<AgentConfig>(1);
    let mut config = config;
    let mut schedule = reschedule(&HashMap::new(), &config.targets, Instant::now());
    let mut in_flight: HashSet<i64> = HashSet::new();
    let mut pending: Vec<Sample> = Vec::new();
    let report_every = |c: &AgentConfig| Duration::from_secs(c.report_interval_secs.max(1));
    let mut next_report = Instant::now() + jitter(report_every(&config), 0.1);
    let mut next_refresh =
        Instant::now() + jitter(Duration::from_secs(config.config_refresh_secs.max(1)), 0.1);
    tokio::pin!(shutdown);

    loop {
        let next_due = schedule.values().map(|(_, due)| *due).min();
        let wake_at = [Some(next_report), Some(next_refresh), next_due]
            .into_iter()
            .flatten()
            .min()
            .expect("there is always a next report");
        tokio::select! {
            () = &mut shutdown => break,
            Some(sample) = sample_rx.recv() => {
                in_flight.remove(&sample.device_id);
                pending.push(sample);
                stats.lock().expect("stats lock").samples_measured += 1;
                if pending.len() >= 5000 {
                    spool_pending(&spool, &mut pending)?;
                    wake.notify_one();
                }
                continue;
            }
            Some(new) = config_rx.recv() => {
                if new != config {
                    tracing::info!(targets = new.targets.len(), "new configuration from the server");
                    if let Err(error) = state::save_config(&options.state_dir, &new) {
                        tracing::warn!(%error, "cannot cache the configuration");
                    }
                    schedule = reschedule(&schedule, &new.targets, Instant::now());
                    config = new;
                }
                continue;
            }
            () = tokio::time::sleep_until(wake_at) => {}
        }
        let now = Instant::now();
        for (target, due) in schedule.values_mut() {
            if *due > now {
                continue;
            }
            *due += interval_of(target);
            if *due <= now {
                *due = now + interval_of(target);
            }
            if !in_flight.insert(target.id) {
                tracing::debug!(
                    device_id = target.id,
                    "previous probe still running; skipped"
                );
                continue;
            }
            let (target, prober, permits, tx) = (
                target.clone(),
                prober.clone(),
                permits.clone(),
                sample_tx.clone(),
            );
            tokio::spawn(async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .expect("the semaphore stays open");
                let sample = prober.probe(&target).await;
                let _ = tx.send(sample).await;
            });
        }
        if now >= next_report {
            spool_pending(&spool, &mut pending)?;
            wake.notify_one();
            next_report = now + jitter(report_every(&config), 0.1);
        }
        if now >= next_refresh {
            next_refresh =
                now + jitter(Duration::from_secs(config.config_refresh_secs.max(1)), 0.1);
            let (client, tx) = (client.clone(), config_tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(30), client.config()).await {
                    Ok(Ok(c)) => {
                        let _ = tx.try_send(c);
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "configuration refresh failed; keeping the current one")
                    }
                    Err(_) => {
                        tracing::warn!("configuration refresh timed out; keeping the current one")
                    }
                }
            });
        }
    }

    // Shutting down: let probes in flight finish (bounded), spool everything, one last send.
    let deadline = Instant::now() + options.probe_timeout + Duration::from_secs(1);
    while !in_flight.is_empty() {
        match tokio::time::timeout_at(deadline, sample_rx.recv()).await {
            Ok(Some(sample)) => {
                in_flight.remove(&sample.device_id);
                pending.push(sample);
                stats.lock().expect("stats lock").samples_measured += 1;
            }
            _ => break,
        }
    }
    spool_pending(&spool, &mut pending)?;
    let _ = stop_tx.send(true);
    wake.notify_one();
    if tokio::time::timeout(Duration::from_secs(15), sender)
        .await
        .is_err()
    {
        tracing::warn!("the last delivery attempt timed out; the spool keeps the rest");
    }
    let mut stats = stats.lock().expect("stats lock").clone();
    let spool = spool.lock().expect("spool lock");
    stats.samples_dropped = spool.dropped_total;
    stats.spooled_at_exit = spool.len();
    tracing::info!(?stats, "khetnet-agent stopped");
    Ok(stats)
}

fn spool_pending(spool: &Mutex<Spool>, pending: &mut Vec<Sample>) -> Result<()> {
    spool
        .lock()
        .expect("spool lock")
        .push(std::mem::take(pending))
}

/// Delivers the spool oldest first; while the server is unreachable, waits 1 s doubling to
/// 60 s (jittered) between attempts. After `stop`, makes one last pass and returns.
async fn send_loop(
    client: Client,
    spool: Arc<Mutex<Spool>>,
    stats: Arc<Mutex<Stats>>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    let mut unreachable_since: Option<std::time::Instant> = None;
    loop {
        let stopping = *stop.borrow();
        let mut failed = false;
        loop {
            let next = spool.lock().expect("spool lock").oldest();
            let (seq, bytes) = match next {
                Ok(Some(next)) => next,
                Ok(None) => break,
                Err(error) => {
                    tracing::error!(%error, "cannot read the spool");
                    failed = true;
                    break;
                }
            };
            let samples = serde_json::from_slice::<crate::client::Report>(&bytes)
                .map_or(0, |r| r.samples.len() as u64);
            match client.report(bytes).await {
                Delivery::Acknowledged { duplicate } => {
                    if let Err(error) = spool.lock().expect("spool lock").ack(seq) {
                        tracing::error!(%error, "cannot remove a delivered batch from the spool");
                        failed = true;
                        break;
                    }
                    let mut s = stats.lock().expect("stats lock");
                    s.batches_acknowledged += 1;
                    if duplicate {
                        s.batches_duplicate += 1;
                    } else {
                        s.samples_acknowledged += samples;
                    }
                    if let Some(since) = unreachable_since.take() {
                        tracing::info!(after = ?since.elapsed(), "server reachable again; replaying the spool");
                    }
                    backoff = Duration::from_secs(1);
                }
                Delivery::Rejected { status, detail } => {
                    tracing::error!(status, %detail, seq, "the server refused a batch; moved to spool/rejected");
                    stats.lock().expect("stats lock").batches_rejected += 1;
                    if let Err(error) = spool.lock().expect("spool lock").reject(seq) {
                        tracing::error!(%error, "cannot move a refused batch aside");
                        failed = true;
                        break;
                    }
                }
                Delivery::Unauthorized => {
                    tracing::error!(
                        "the server refused the agent credential (revoked?); reports stay in the spool until the agent is enrolled again"
                    );
                    failed = true;
                    break;
                }
                Delivery::Unavailable(error) => {
                    if unreachable_since.is_none() {
                        tracing::warn!(%error, "server unreachable; spooling reports");
                        unreachable_since = Some(std::time::Instant::now());
                    }
                    failed = true;
                    break;
                }
            }
        }
        if stopping {
            return;
        }
        let wait = if failed {
            let w = jitter(backoff, 0.2);
            backoff = (backoff * 2).min(Duration::from_secs(60));
            w
        } else {
            Duration::from_secs(3600)
        };
        tokio::select! {
            () = wake.notified(), if !failed => {}
            () = tokio::time::sleep(wait) => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    return; // the run ended without a clean stop
                }
            }
        }
    }
}

/// Probes every target once (bounded concurrency) and returns the samples in target order.
///
/// # Errors
/// As for [`run`]: no credential or no configuration.
pub async fn check(options: &Options) -> Result<Vec<(Target, Sample)>> {
    let credential = state::load_credential(&options.state_dir)?;
    let client = client_for(&credential)?;
    let config = initial_config(&client, options).await?;
    let prober = Arc::new(Prober::new(options.probe_timeout));
    let permits = Arc::new(Semaphore::new(options.max_concurrency.max(1)));
    let tasks: Vec<_> = config
        .targets
        .iter()
        .cloned()
        .map(|t| {
            let (prober, permits) = (prober.clone(), permits.clone());
            tokio::spawn(async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .expect("the semaphore stays open");
                let sample = prober.probe(&t).await;
                (t, sample)
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.expect("a probe task does not panic"));
    }
    Ok(results)
}

/// The `check` table: one line per target.
pub fn table(results: &[(Target, Sample)]) -> String {
    let mut out = format!(
        "{:<24} {:<5} {:<32} {:<5} {:>10} {:>6}  {}\n",
        "DEVICE", "PROBE", "ADDRESS", "OK", "LATENCY", "LOSS", "ERROR"
    );
    for (t, s) in results {
        let address = match t.port {
            Some(p) if t.probe != "http" => format!("{}:{p}", t.address),
            _ => t.address.clone(),
        };
        out.push_str(&format!(
            "{:<24} {:<5} {:<32} {:<5} {:>10} {:>6}  {}\n",
            t.name,
            t.probe,
            address,
            if s.ok { "up" } else { "DOWN" },
            s.latency_ms
                .map(|l| format!("{l:.1} ms"))
                .unwrap_or_else(|| "-".into()),
            s.loss_percent
                .map(|l| format!("{l:.0}%"))
                .unwrap_or_else(|| "-".into()),
            s.error.as_deref().unwrap_or(""),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: i64, interval: i64) -> Target {
        Target {
            id,
            name: format!("t{id}"),
            probe: "tcp".into(),
            address: "127.0.0.1".into(),
            port: Some(9),
            snmp_community: None,
            snmp_v3: None,
            interval_secs: interval,
        }
    }

    #[test]
    fn schedules_are_spread_and_kept_across_reconfiguration() {
        let now = Instant::now();
        let targets: Vec<Target> = (1..=200).map(|i| target(i, 60)).collect();
        let schedule = reschedule(&HashMap::new(), &targets, now);
        let dues: Vec<Duration> = schedule.values().map(|(_, d)| *d - now).collect();
        assert!(dues.iter().all(|d| *d < Duration::from_secs(60)));
        let first_ten_secs = dues
            .iter()
            .filter(|d| **d < Duration::from_secs(10))
            .count();
        assert!(
            first_ten_secs < 80,
            "spread over the interval, not all at once: {first_ten_secs}"
        );
        // Same target: same due time. Changed interval: rescheduled.
        let mut changed = targets.clone();
        changed[0].interval_secs = 30;
        let again = reschedule(&schedule, &changed, now + Duration::from_secs(5));
        assert_eq!(again[&2].1, schedule[&2].1);
        assert_eq!(again[&1].0.interval_secs, 30);
    }

    #[test]
    fn jitter_stays_in_bounds() {
        for _ in 0..1000 {
            let d = jitter(Duration::from_secs(60), 0.1);
            assert!(
                d >= Duration::from_secs(54) && d <= Duration::from_secs(66),
                "{d:?}"
            );
        }
    }
}
