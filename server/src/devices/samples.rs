//! Agent reports: a batch of samples, stored whole or not at all, once per batch id, and
//! acknowledged only after the transaction that stored it has committed ([`Ingest`]).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Row};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::agents::AgentIdentity;
use super::raw::{self, Scope};
use super::{Settings, alerts, discovered, is_uuid};
use crate::db::{Backend, Db, now_ms, numbered, rfc3339, runs};
use crate::error::{Error, Result};

/// The most samples one batch may carry.
pub const MAX_SAMPLES: usize = 10_000;

/// A report as an agent sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// A UUID the agent chose for this batch; a replay carries the same one.
    pub batch_id: String,
    #[serde(default)]
    pub agent_version: String,
    /// Samples the agent dropped (its spool was full) since its last delivered report.
    #[serde(default)]
    pub samples_lost: i64,
    pub samples: Vec<Sample>,
    /// Devices the agent saw on the school's network (ARP, neighbour table), for technicians to
    /// accept into the inventory.
    #[serde(default)]
    pub discovered: Vec<discovered::Seen>,
}

/// One measurement of one device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    pub device_id: i64,
    /// When it was measured, RFC 3339 with offset.
    pub at: String,
    /// Whether the device answered.
    pub ok: bool,
    pub latency_ms: Option<f64>,
    pub loss_percent: Option<f64>,
    pub error: Option<String>,
    /// Probe-specific values: SNMP readings (`interfaces` with `in_octets`/`out_octets`
    /// counters), HTTP status, a printer's `supplies` (`description`, `level_percent`), a UPS
    /// (`ups`), and for the agent's own host `cpu_percent`, `memory_percent` and `disks`
    /// (`mount`, `used_percent`).
    pub detail: Option<serde_json::Value>,
}

/// What happened to a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// Stored now.
    Stored { samples: usize },
    /// This batch id was stored before; nothing was stored again.
    Duplicate,
}

/// A report as checked, ready for the writer.
struct Checked {
    /// Each sample's time (ms), in report order.
    ats: Vec<i64>,
    /// The samples as they are stored; `None` for a report without samples.
    encoded: Option<raw::Encoded>,
    found: Vec<discovered::Checked>,
}

/// Checks a report and encodes its samples, in the request's task: the writer only writes.
fn check(report: &Report) -> Result<Checked> {
    if !is_uuid(&report.batch_id) {
        return Err(Error::invalid("batch_id", "must be a UUID"));
    }
    if report.samples_lost < 0 {
        return Err(Error::invalid("samples_lost", "must not be negative"));
    }
    if report.samples.len() > MAX_SAMPLES {
        return Err(Error::invalid(
            "samples",
            format!("at most {MAX_SAMPLES} samples a batch"),
        ));
    }
    let now = now_ms();
    let found = discovered::check(&report.discovered, now)?;
    let rows = report
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let field = |name: &str| format!("samples[{i}].{name}");
            let at = s
                .at
                .parse::<jiff::Timestamp>()
                .map_err(|e| Error::invalid(&field("at"), format!("not an RFC 3339 time: {e}")))?
                .as_millisecond();
            if at > now + 300_000 {
                return Err(Error::invalid(
                    &field("at"),
                    "lies more than 5 minutes in the future; check the agent's clock",
                ));
            }
            if s.latency_ms.is_some_and(|l| !l.is_finite() || l < 0.0) {
                return Err(Error::invalid(&field("latency_ms"), "must be 0 or more"));
            }
            if s.loss_percent.is_some_and(|l| !(0.0..=100.0).contains(&l)) {
                return Err(Error::invalid(&field("loss_percent"), "must be 0 to 100"));
            }
            if s.error.as_ref().is_some_and(|e| e.len() > 1000) {
                return Err(Error::invalid(&field("error"), "at most 1000 bytes"));
            }
            let detail = s.detail.as_ref().map(|d| d.to_string());
            if detail.as_ref().is_some_and(|d| d.len() > 16_384) {
                return Err(Error::invalid(&field("detail"), "at most 16 KiB"));
            }
            Ok(raw::Row {
                device_id: s.device_id,
                at,
                ok: s.ok,
                latency_ms: s.latency_ms,
                loss_percent: s.loss_percent,
                error: s.error.as_deref().map(Cow::Borrowed),
                detail: detail.map(Cow::Owned),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Checked {
        ats: rows.iter().map(|r| r.at).collect(),
        encoded: if rows.is_empty() {
            None
        } else {
            Some(raw::encode(&rows)?)
        },
        found,
    })
}

/// A nullable float for binding. sqlx's Any driver gives a NULL float no type PostgreSQL
/// keeps, so a statement first prepared with NULL then refuses a number ("incorrect binary data
/// format"); text cast in SQL works on both engines.
pub(super) fn float_text(value: Option<f64>) -> Option<String> {
    value.map(|v| v.to_string())
}

struct DeviceState {
    status: String,
    status_since: Option<i64>,
    last_sample_at: Option<i64>,
    down_after_minutes: i64,
    degraded_loss_percent: i64,
    name: String,
    school_id: i64,
}

/// How long a device's row may lag behind its newest sample while reports keep coming.
const CATCH_UP_EVERY: Duration = Duration::from_secs(1);
/// How long a writer with devices behind waits for the next report before it catches up.
const CATCH_UP_IDLE: Duration = Duration::from_millis(20);
/// Rows of one catch-up statement, at most: on PostgreSQL 640 rows in statements of 512 took
/// 60-80 ms, in statements of 64 about 30 ms.
const CATCH_UP_STATEMENT_ROWS: usize = 64;
/// At most this many devices behind are written with a lone report; more wait for the timers
/// (on PostgreSQL a thousand rows took 50 ms, which the reports queued behind would wait).
const CATCH_UP_AT_ONCE: usize = 256;

/// What a writer knows of its schools' devices.
///
/// A device's row is written in the group whose sample changes its status; its newest sample
/// (`last_*`), and an agent's last report and counts, are kept here once their group has
/// committed and written with a group of one report and nothing waiting, after
/// [`CATCH_UP_EVERY`] under load, or when no report came for [`CATCH_UP_IDLE`], so that under
/// load one write serves many reports; a device's write never replaces a newer sample. The
/// reports themselves are stored whatever happens (their batch rows hold each one's samples
/// and losses); after a crash, a device's row may show a sample, and an agent's row counts,
/// up to that long behind until the next report.
///
/// A school's devices and open incidents are also remembered between groups, so that a group
/// reads one row per school instead of all of them. Each group locks its schools' rows and reads
/// their `devices_version` first ([`super::lock_versions`]); the memory of a school is used only
/// when that version is the one it was read or last written at. Anything else that changes the
/// school's devices or incidents, in this process or another server instance on the same
/// database, bumps the version ([`super::changing`]), and so does the writer for what it writes.
#[derive(Default)]
struct Devices {
    /// What is remembered of each school.
    schools: HashMap<i64, SchoolMemory>,
    /// The newest sample of each (school, device) whose row does not have it yet.
    behind: HashMap<(i64, i64), Newest>,
    /// What each agent's row lacks of its committed reports.
    agents_behind: HashMap<i64, AgentNews>,
    /// When the rows behind were last written.
    caught_up_at: Option<Instant>,
}

/// A school's devices and open incidents as the database had them at `version`.
struct SchoolMemory {
    version: i64,
    devices: HashMap<i64, DeviceState>,
    open: HashMap<(i64, String), alerts::OpenIncident>,
}

impl Devices {
    /// Whether every device's and agent's row has what this writer committed.
    fn up_to_date(&self) -> bool {
        self.behind.is_empty() && self.agents_behind.is_empty()
    }
}

/// What an agent's row is told about its reports: when it was last heard, from where, its
/// version, and how many samples it delivered and lost since the last write.
#[derive(Clone, Default)]
struct AgentNews {
    seen_at: i64,
    address: Option<String>,
    version: String,
    samples: i64,
    lost: i64,
}

impl AgentNews {
    /// `later` added after `self`.
    fn and(&mut self, later: &AgentNews) {
        self.seen_at = self.seen_at.max(later.seen_at);
        self.address.clone_from(&later.address);
        self.version.clone_from(&later.version);
        self.samples += later.samples;
        self.lost += later.lost;
    }
}

/// A device's newest sample, as its row keeps it.
#[derive(Clone)]
struct Newest {
    at: i64,
    latency_ms: Option<f64>,
    loss_percent: Option<f64>,
    error: Option<String>,
}

/// One report waiting for a writer.
struct Job {
    agent: AgentIdentity,
    source_ip: Option<String>,
    report: Report,
    checked: Checked,
    reply: oneshot::Sender<Result<Outcome>>,
}

/// The most reports one transaction stores.
const GROUP_REPORTS: usize = 64;
/// Reports waiting for the writer, at most; a full queue makes the HTTP handler wait
/// (backpressure: the agent's request takes longer, nothing is dropped).
const QUEUE_REPORTS: usize = 256;

/// Stores agent reports: checked in the request's task, then stored by one writer task that
/// commits the reports waiting for it in one transaction (group commit), and answers each only
/// after that commit. One writer on both engines: on PostgreSQL, 128 agents reporting at once
/// were stored about 15 % faster by one writer than by two, each for half of the schools, and
/// 32 clients as fast (bench/README.md); with eight, groups held one or two reports.
#[derive(Clone)]
pub struct Ingest {
    writer: mpsc::Sender<Job>,
}

impl Ingest {
    /// Starts the writer task; it ends when the last `Ingest` is dropped.
    pub fn start(db: &Db, settings: &Settings) -> Ingest {
        let (writer, rx) = mpsc::channel(QUEUE_REPORTS);
        tokio::spawn(writer_task(db.clone(), settings.clone(), rx));
        Ingest { writer }
    }

    /// Stores a report from `agent`, answering once it is committed.
    ///
    /// # Errors
    /// `Invalid` naming the first offending field (`batch_id`, `samples[3].at`,
    /// `samples[0].device_id` for a device not of the agent's school); nothing is stored then.
    pub async fn submit(
        &self,
        agent: AgentIdentity,
        source_ip: Option<&str>,
        report: Report,
    ) -> Result<Outcome> {
        let checked = check(&report)?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            agent,
            source_ip: source_ip.map(str::to_owned),
            report,
            checked,
            reply,
        };
        if self.writer.send(job).await.is_err() {
            return Err(Error::Io {
                context: "storing a report".into(),
                source: std::io::Error::other("the server is shutting down"),
            });
        }
        answer.await.unwrap_or_else(|_| {
            Err(Error::Io {
                context: "storing a report".into(),
                source: std::io::Error::other("the report writer stopped"),
            })
        })
    }
}

async fn writer_task(db: Db, settings: Settings, mut rx: mpsc::Receiver<Job>) {
    let mut texts = Texts::default();
    // A writer keeps its connection between groups (dropped after an error): SQLite's page
    // cache stays warm, and PostgreSQL's prepared statements stay prepared.
    let mut conn = None;
    let mut devices = Devices::default();
    // After a failed catch-up the next waits a whole CATCH_UP_EVERY (no retry loop).
    let mut idle = CATCH_UP_IDLE;
    loop {
        // With devices behind, a writer that hears nothing for a moment catches up.
        let first = if devices.up_to_date() {
            rx.recv().await
        } else if let Ok(job) = tokio::time::timeout(idle, rx.recv()).await {
            job
        } else {
            idle = CATCH_UP_IDLE;
            if let Err(error) = catch_up(&db, &mut conn, &settings, &mut texts, &mut devices).await
            {
                tracing::warn!(error = %error, "writing devices' newest samples failed");
                conn = None;
                devices.schools.clear();
                idle = CATCH_UP_EVERY;
            }
            continue;
        };
        let Some(first) = first else { break };
        let mut jobs = vec![first];
        while jobs.len() < GROUP_REPORTS {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        metrics::histogram!("khetnet_agent_reports_per_commit").record(jobs.len() as f64);
        // A lone report catches up at once when that is cheap (an agent at its usual pace sees
        // its devices' rows follow each report); under load, once every CATCH_UP_EVERY.
        let catch_up =
            (jobs.len() == 1 && rx.is_empty() && devices.behind.len() <= CATCH_UP_AT_ONCE)
                || devices
                    .caught_up_at
                    .is_none_or(|at| at.elapsed() >= CATCH_UP_EVERY);
        let stored = store_group(
            &db,
            &mut conn,
            &settings,
            &mut texts,
            &mut devices,
            &jobs,
            catch_up,
        )
        .await;
        if stored.is_err() {
            // The rows in memory may hold what the failed transaction did not keep.
            devices.schools.clear();
        }
        match stored {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    after_commit(&job, &outcome);
                    let _ = job.reply.send(outcome);
                }
            }
            // The group failed as a whole (a database error): each report alone, so one
            // report's failure is not the others'.
            Err(group_error) if jobs.len() > 1 => {
                conn = None;
                tracing::warn!(error = %group_error, reports = jobs.len(), "report group failed; storing each alone");
                for job in jobs {
                    let outcome = match store_group(
                        &db,
                        &mut conn,
                        &settings,
                        &mut texts,
                        &mut devices,
                        std::slice::from_ref(&job),
                        true,
                    )
                    .await
                    {
                        Ok(mut o) => o.pop().unwrap_or(Ok(Outcome::Duplicate)),
                        Err(e) => {
                            conn = None;
                            devices.schools.clear();
                            Err(e)
                        }
                    };
                    after_commit(&job, &outcome);
                    let _ = job.reply.send(outcome);
                }
            }
            Err(error) => {
                conn = None;
                for job in jobs {
                    let _ = job.reply.send(Err(Error::Io {
                        context: "storing a report".into(),
                        source: std::io::Error::other(error.to_string()),
                    }));
                }
            }
        }
    }
    // Shutting down: the rows behind get their newest sample.
    if !devices.up_to_date()
        && let Err(error) = catch_up(&db, &mut conn, &settings, &mut texts, &mut devices).await
    {
        tracing::warn!(error = %error, "writing devices' newest samples at shutdown failed");
    }
}

/// Writes what the devices' and agents' rows lack, in a transaction without reports.
async fn catch_up(
    db: &Db,
    conn: &mut Option<PoolConnection<Any>>,
    settings: &Settings,
    texts: &mut Texts,
    devices: &mut Devices,
) -> Result<()> {
    store_group(db, conn, settings, texts, devices, &[], true)
        .await
        .map(|_| ())
}

fn after_commit(job: &Job, outcome: &Result<Outcome>) {
    if let Ok(Outcome::Stored { samples }) = outcome {
        metrics::counter!("khetnet_agent_samples_total").increment(*samples as u64);
        if job.report.samples_lost > 0 {
            metrics::counter!("khetnet_agent_samples_lost_total")
                .increment(job.report.samples_lost as u64);
        }
    }
}

/// What a group's transaction has read and changed so far.
struct Group<'d> {
    /// The writer's memory of the devices, as the group has left them.
    devices: &'d mut Devices,
    /// (school, device) of the devices whose status changed in this group.
    status_changed: HashSet<(i64, i64)>,
    /// The newest sample of each device this group changed.
    newest: HashMap<(i64, i64), Newest>,
    /// The schools whose devices' rows or open incidents the group changed.
    touched: HashSet<i64>,
    /// What this group tells each agent's row.
    agents: HashMap<i64, AgentNews>,
}

/// The most rows one multi-row statement of `width` parameters a row holds: a power of two.
/// sqlx binds each SQLite parameter by looking up its `$N` name, which SQLite finds by a scan
/// from the first, so binding costs the square of a statement's parameters there: at about 256
/// parameters that cost is about the statement's own. PostgreSQL binds in one message and
/// every statement is a round trip, so there bigger is better (well below its 65,535).
fn statement_rows(backend: Backend, width: usize) -> usize {
    let params = match backend {
        Backend::Sqlite => 128,
        Backend::Postgres => 4096,
    };
    let rows = (params / width).max(1);
    1 << (usize::BITS - 1 - rows.leading_zeros())
}

/// The texts of multi-row statements, built once per shape: `head`, then `rows` copies of
/// `row` (with `?` for each parameter), then `tail`, the placeholders numbered `$1, $2, ...`.
#[derive(Default)]
struct Texts(HashMap<(&'static str, usize), String>);

impl Texts {
    fn get(&mut self, head: &'static str, row: &str, tail: &str, rows: usize) -> String {
        self.0
            .entry((head, rows))
            .or_insert_with(|| numbered(&format!("{head}{}{tail}", vec![row; rows].join(", "))))
            .clone()
    }
}

/// Stores a group of reports in one transaction; the outer error fails them all. Whatever the
/// group's size, the statements are few: the group's schools' devices and open incidents read
/// once, the batch ids, the samples and the devices' and agents' new state written with
/// multi-row statements; only alert rules that fire write more.
async fn store_group(
    db: &Db,
    conn: &mut Option<PoolConnection<Any>>,
    settings: &Settings,
    texts: &mut Texts,
    devices: &mut Devices,
    jobs: &[Job],
    catch_up: bool,
) -> Result<Vec<Result<Outcome>>> {
    let now = now_ms();
    let conn = match conn {
        Some(conn) => conn,
        None => conn.insert(db.pool.acquire().await?),
    };
    let mut tx = db.begin_ingest(conn).await?;
    // The group's schools, and when catching up those of the devices behind, are locked first.
    let mut schools: Vec<i64> = jobs.iter().map(|j| j.agent.school_id).collect();
    if catch_up {
        schools.extend(devices.behind.keys().map(|(school, _)| *school));
    }
    schools.sort_unstable();
    schools.dedup();
    let versions = super::lock_versions(&mut tx, db.backend, &schools).await?;
    for school in &schools {
        if devices
            .schools
            .get(school)
            .is_some_and(|memory| versions.get(school) != Some(&memory.version))
        {
            devices.schools.remove(school);
        }
    }
    // The group's schools that are not remembered at their current version are read again.
    let mut unread: Vec<i64> = jobs
        .iter()
        .map(|j| j.agent.school_id)
        .filter(|school| !devices.schools.contains_key(school))
        .collect();
    unread.sort_unstable();
    unread.dedup();
    if !unread.is_empty() {
        let mut read = load_devices(&mut tx, db.backend, texts, &unread).await?;
        let mut open = alerts::open_incidents_of(&mut tx, &unread).await?;
        for school in unread {
            let mut known = read.remove(&school).unwrap_or_default();
            for (id, state) in &mut known {
                // What this writer has not written yet is newer than the row.
                if let Some(n) = devices.behind.get(&(school, *id))
                    && state.last_sample_at.is_none_or(|at| at <= n.at)
                {
                    state.last_sample_at = Some(n.at);
                }
            }
            if let Some(&version) = versions.get(&school) {
                devices.schools.insert(
                    school,
                    SchoolMemory {
                        version,
                        devices: known,
                        open: open.remove(&school).unwrap_or_default(),
                    },
                );
            }
        }
    }
    let mut group = Group {
        devices,
        status_changed: HashSet::new(),
        newest: HashMap::new(),
        touched: HashSet::new(),
        agents: HashMap::new(),
    };

    // Checked before anything is written, so a refused report leaves nothing behind; a batch
    // id twice in the group is stored once.
    let mut outcomes: Vec<Option<Result<Outcome>>> = Vec::with_capacity(jobs.len());
    let mut batch_ids = Vec::with_capacity(jobs.len());
    let mut in_group = HashSet::new();
    for job in jobs {
        let batch_id = job.report.batch_id.to_ascii_lowercase();
        let known = group.devices.schools.get(&job.agent.school_id);
        let foreign = job
            .report
            .samples
            .iter()
            .position(|s| !known.is_some_and(|k| k.devices.contains_key(&s.device_id)));
        outcomes.push(if let Some(i) = foreign {
            Some(Err(Error::invalid(
                &format!("samples[{i}].device_id"),
                format!(
                    "device {} is not one of this agent's school",
                    job.report.samples[i].device_id
                ),
            )))
        } else if !in_group.insert((job.agent.id, batch_id.clone())) {
            Some(Ok(Outcome::Duplicate))
        } else {
            None
        });
        batch_ids.push(batch_id);
    }

    // The batch ids: a row is inserted, and returned, only for a batch not stored before.
    let candidates: Vec<usize> = (0..jobs.len()).filter(|&i| outcomes[i].is_none()).collect();
    let mut inserted = HashSet::new();
    for chunk in runs(&candidates, statement_rows(db.backend, 5)) {
        let sql = texts.get(
            "INSERT INTO agent_report_batches (agent_id, batch_id, received_at, samples, samples_lost) VALUES ",
            "(?, ?, ?, ?, ?)",
            " ON CONFLICT DO NOTHING RETURNING agent_id, batch_id",
            chunk.len(),
        );
        let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
        for &i in chunk {
            query = query
                .bind(jobs[i].agent.id)
                .bind(batch_ids[i].clone())
                .bind(now)
                .bind(jobs[i].report.samples.len() as i64)
                .bind(jobs[i].report.samples_lost);
        }
        for row in query.fetch_all(&mut *tx).await? {
            inserted.insert((
                row.try_get::<i64, _>("agent_id")?,
                row.try_get::<String, _>("batch_id")?,
            ));
        }
    }
    let mut stored = Vec::with_capacity(candidates.len());
    for i in candidates {
        if inserted.contains(&(jobs[i].agent.id, batch_ids[i].clone())) {
            stored.push(i);
        } else {
            outcomes[i] = Some(Ok(Outcome::Duplicate));
        }
    }

    // Each stored report's samples: one row, encoded by the request's task.
    let reports: Vec<(&Job, &raw::Encoded)> = stored
        .iter()
        .filter_map(|&i| Some((&jobs[i], jobs[i].checked.encoded.as_ref()?)))
        .collect();
    for chunk in runs(&reports, statement_rows(db.backend, 8)) {
        let sql = texts.get(
            "INSERT INTO device_reports (school_id, agent_id, received_at, first_at, last_at, samples, sample_data, day_counts) VALUES ",
            "(?, ?, ?, ?, ?, ?, ?, ?)",
            "",
            chunk.len(),
        );
        let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
        for (job, e) in chunk {
            query = query
                .bind(job.agent.school_id)
                .bind(job.agent.id)
                .bind(now)
                .bind(e.first_at)
                .bind(e.last_at)
                .bind(e.samples)
                .bind(e.sample_data.clone())
                .bind(e.day_counts.clone());
        }
        query.execute(&mut *tx).await?;
    }

    for &i in &stored {
        discovered::record_in(&mut tx, jobs[i].agent, &jobs[i].checked.found).await?;
    }
    for &i in &stored {
        follow(&mut tx, settings, &mut group, &jobs[i], now).await?;
        outcomes[i] = Some(Ok(Outcome::Stored {
            samples: jobs[i].report.samples.len(),
        }));
    }

    // The devices whose status changed: their whole row. When catching up, what the devices'
    // and agents' rows lack, this group's and the earlier groups'.
    let mut changed: Vec<(i64, i64)> = group.status_changed.iter().copied().collect();
    changed.sort_unstable();
    for chunk in runs(&changed, statement_rows(db.backend, 7)) {
        let sql = texts.get(
            "UPDATE devices SET status = v.column2, status_since = v.column3, last_sample_at = v.column4, \
             last_latency_ms = CAST(v.column5 AS DOUBLE PRECISION), last_loss_percent = CAST(v.column6 AS DOUBLE PRECISION), \
             last_error = v.column7 FROM (VALUES ",
            "(?, ?, ?, ?, ?, ?, ?)",
            ") AS v WHERE devices.id = v.column1",
            chunk.len(),
        );
        let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
        for key in chunk {
            let d = &group.devices.schools[&key.0].devices[&key.1];
            // A device whose status changed in this group has its newest sample in it.
            let n = &group.newest[key];
            query = query
                .bind(key.1)
                .bind(d.status.clone())
                .bind(d.status_since)
                .bind(n.at)
                .bind(float_text(n.latency_ms))
                .bind(float_text(n.loss_percent))
                .bind(n.error.clone());
        }
        query.execute(&mut *tx).await?;
    }
    let Group {
        devices,
        status_changed,
        mut newest,
        touched,
        agents,
    } = group;
    let mut touched: Vec<i64> = touched.into_iter().collect();
    newest.retain(|key, _| !status_changed.contains(key));
    if catch_up {
        let mut all = devices.behind.clone();
        all.extend(newest.drain());
        touched.extend(all.keys().map(|(school, _)| *school));
        write_newest_samples(
            &mut tx,
            db.backend,
            texts,
            all.into_iter().map(|((_, id), n)| (id, n)).collect(),
        )
        .await?;
        let mut told = devices.agents_behind.clone();
        for (id, news) in &agents {
            told.entry(*id).or_default().and(news);
        }
        write_agents(&mut tx, db.backend, texts, told).await?;
    }
    // The schools' rows are locked since the group began: what the memory holds of them is
    // what the database has at the next version.
    super::changing(&mut tx, &touched).await?;
    tx.commit().await?;
    for school in &touched {
        if let Some(memory) = devices.schools.get_mut(school) {
            memory.version += 1;
        }
    }
    // Only what is committed is remembered.
    if catch_up {
        devices.behind.clear();
        devices.agents_behind.clear();
        devices.caught_up_at = Some(Instant::now());
    } else {
        devices.behind.extend(newest);
        for (id, news) in agents {
            devices.agents_behind.entry(id).or_default().and(&news);
        }
    }
    for key in status_changed {
        devices.behind.remove(&key);
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Ok(Outcome::Duplicate)))
        .collect())
}

/// Tells agents' rows about their reports: when each was last heard and its counts.
async fn write_agents(
    tx: &mut AnyConnection,
    backend: Backend,
    texts: &mut Texts,
    agents: HashMap<i64, AgentNews>,
) -> Result<()> {
    let mut agents: Vec<(i64, AgentNews)> = agents.into_iter().collect();
    agents.sort_by_key(|(id, _)| *id);
    for chunk in runs(&agents, statement_rows(backend, 6)) {
        let sql = texts.get(
            "UPDATE agents SET last_seen_at = v.column2, last_address = v.column3, version = v.column4, \
             samples_received = samples_received + v.column5, samples_lost = samples_lost + v.column6 FROM (VALUES ",
            "(?, ?, ?, ?, ?, ?)",
            ") AS v WHERE agents.id = v.column1",
            chunk.len(),
        );
        let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
        for (id, news) in chunk {
            query = query
                .bind(*id)
                .bind(news.seen_at)
                .bind(news.address.clone())
                .bind(news.version.clone())
                .bind(news.samples)
                .bind(news.lost);
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}

/// A stored report's effect on its devices and the alert rules, inside the group's transaction:
/// each device's status follows its newest sample; older ones (a replayed spool) only add
/// history.
async fn follow(
    tx: &mut AnyConnection,
    settings: &Settings,
    group: &mut Group<'_>,
    job: &Job,
    now: i64,
) -> Result<()> {
    let (agent, report) = (job.agent, &job.report);
    let mut newest: HashMap<i64, (&Sample, i64)> = HashMap::new();
    for (s, &at) in report.samples.iter().zip(&job.checked.ats) {
        let entry = newest.entry(s.device_id).or_insert((s, at));
        if at >= entry.1 {
            *entry = (s, at);
        }
    }
    let mut newest: Vec<_> = newest.into_iter().collect();
    newest.sort_by_key(|(id, _)| *id);
    let school = agent.school_id;
    for (device_id, (sample, at)) in newest {
        let Some(memory) = group.devices.schools.get_mut(&school) else {
            continue;
        };
        let Some(state) = memory.devices.get_mut(&device_id) else {
            continue;
        };
        if state.last_sample_at.is_some_and(|last| last > at) {
            continue;
        }
        let status = if !sample.ok {
            "down"
        } else if sample
            .loss_percent
            .is_some_and(|l| l >= state.degraded_loss_percent as f64)
        {
            "degraded"
        } else {
            "up"
        };
        let since = if status == state.status {
            state.status_since.unwrap_or(at)
        } else {
            at
        };
        if state.status != status || state.status_since != Some(since) {
            group.status_changed.insert((school, device_id));
            group.touched.insert(school);
        }
        if state.status != status {
            state.status = status.to_owned();
        }
        state.status_since = Some(since);
        state.last_sample_at = Some(at);
        group.newest.insert(
            (school, device_id),
            Newest {
                at,
                latency_ms: sample.latency_ms,
                loss_percent: sample.loss_percent,
                error: sample.error.clone(),
            },
        );
        let changed = alerts::device_changed(
            tx,
            &settings.rules,
            &alerts::DeviceNow {
                id: device_id,
                school_id: state.school_id,
                name: &state.name,
                status,
                status_since: since,
                at,
                down_after_minutes: state.down_after_minutes,
                sample,
            },
            &memory.open,
        )
        .await?;
        if changed {
            memory.open = alerts::open_incidents(tx, school).await?;
            group.touched.insert(school);
        }
    }

    group.agents.entry(agent.id).or_default().and(&AgentNews {
        seen_at: now,
        address: job.source_ip.clone(),
        version: report.agent_version.clone(),
        samples: report.samples.len() as i64,
        lost: report.samples_lost,
    });
    if let Some(memory) = group.devices.schools.get_mut(&school)
        && memory
            .open
            .contains_key(&(agent.id, "agent_silent".to_owned()))
    {
        alerts::agent_heard(tx, agent.id, now).await?;
        memory.open = alerts::open_incidents(tx, school).await?;
        group.touched.insert(school);
    }
    Ok(())
}

/// Writes devices' newest samples into their rows, unless a row already has a newer one (from
/// another server instance); their status is left as the rows have it.
async fn write_newest_samples(
    tx: &mut AnyConnection,
    backend: Backend,
    texts: &mut Texts,
    mut newest: Vec<(i64, Newest)>,
) -> Result<()> {
    newest.sort_unstable_by_key(|(id, _)| *id);
    for chunk in runs(
        &newest,
        statement_rows(backend, 5).min(CATCH_UP_STATEMENT_ROWS),
    ) {
        let sql = texts.get(
            "UPDATE devices SET last_sample_at = v.column2, last_latency_ms = CAST(v.column3 AS DOUBLE PRECISION), \
             last_loss_percent = CAST(v.column4 AS DOUBLE PRECISION), last_error = v.column5 FROM (VALUES ",
            "(?, ?, ?, ?, ?)",
            ") AS v WHERE devices.id = v.column1 \
             AND (devices.last_sample_at IS NULL OR devices.last_sample_at <= v.column2)",
            chunk.len(),
        );
        let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
        for (id, d) in chunk {
            query = query
                .bind(*id)
                .bind(d.at)
                .bind(float_text(d.latency_ms))
                .bind(float_text(d.loss_percent))
                .bind(d.error.clone());
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}

/// The devices of `schools`, by school.
async fn load_devices(
    conn: &mut AnyConnection,
    backend: Backend,
    texts: &mut Texts,
    schools: &[i64],
) -> Result<HashMap<i64, HashMap<i64, DeviceState>>> {
    let mut out: HashMap<i64, HashMap<i64, DeviceState>> = HashMap::new();
    for chunk in runs(schools, statement_rows(backend, 1)) {
        let sql = texts.get(
            "SELECT id, name, school_id, status, status_since, last_sample_at, \
             down_after_minutes, degraded_loss_percent FROM devices WHERE school_id IN (",
            "?",
            ")",
            chunk.len(),
        );
        let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(sql));
        for school in chunk {
            query = query.bind(*school);
        }
        for r in query.fetch_all(&mut *conn).await? {
            let school_id: i64 = r.try_get("school_id")?;
            out.entry(school_id).or_default().insert(
                r.try_get::<i64, _>("id")?,
                DeviceState {
                    name: r.try_get("name")?,
                    school_id,
                    status: r.try_get("status")?,
                    status_since: r.try_get("status_since")?,
                    last_sample_at: r.try_get("last_sample_at")?,
                    down_after_minutes: r.try_get("down_after_minutes")?,
                    degraded_loss_percent: r.try_get("degraded_loss_percent")?,
                },
            );
        }
    }
    Ok(out)
}

/// One stored sample as the API shows it.
#[derive(Debug, Serialize)]
pub struct StoredSample {
    pub at: String,
    pub ok: bool,
    pub latency_ms: Option<f64>,
    pub loss_percent: Option<f64>,
    pub error: Option<String>,
    pub detail: Option<serde_json::Value>,
}

/// A device's samples in a time range, oldest first, at most `limit`.
pub async fn list(
    db: &Db,
    device_id: i64,
    since_ms: Option<i64>,
    limit: i64,
) -> Result<Vec<StoredSample>> {
    let mut conn = db.pool.acquire().await?;
    // The detail stays text until the samples to answer with are known.
    let mut found: Vec<(i64, StoredSample, Option<String>)> = Vec::new();
    raw::for_each(
        &mut conn,
        Scope::Device(device_id),
        since_ms.unwrap_or(i64::MIN),
        i64::MAX,
        |r| {
            found.push((
                r.at,
                StoredSample {
                    at: rfc3339(r.at),
                    ok: r.ok,
                    latency_ms: r.latency_ms,
                    loss_percent: r.loss_percent,
                    error: r.error.as_deref().map(str::to_owned),
                    detail: None,
                },
                r.detail.as_deref().map(str::to_owned),
            ));
        },
    )
    .await?;
    // Stable: samples of one time stay in the order they were stored.
    found.sort_by_key(|(at, _, _)| *at);
    found.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(found
        .into_iter()
        .map(|(_, mut s, detail)| {
            s.detail = detail.and_then(|d| serde_json::from_str(&d).ok());
            s
        })
        .collect())
}

/// For each device of a school: (samples that answered, all samples) since `since_ms`, from raw
/// samples and the 5-minute aggregates of older ones.
pub async fn uptime(db: &Db, school_id: i64, since_ms: i64) -> Result<HashMap<i64, (i64, i64)>> {
    let mut conn = db.pool.acquire().await?;
    let mut out: HashMap<i64, (i64, i64)> = HashMap::new();
    for ((device, _day), (up, all)) in
        raw::day_counts(&mut conn, Scope::School(school_id), since_ms).await?
    {
        let u = out.entry(device).or_default();
        u.0 += up;
        u.1 += all;
    }
    let rows = sqlx::query::<Any>(
        "SELECT a.device_id, CAST(SUM(a.up_samples) AS BIGINT) AS up, CAST(SUM(a.samples) AS BIGINT) AS total \
         FROM device_aggregates a JOIN devices d ON d.id = a.device_id \
         WHERE d.school_id = $1 AND a.bucket_at >= $2 GROUP BY a.device_id",
    )
    .bind(school_id)
    .bind(since_ms)
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let u = out.entry(r.try_get("device_id")?).or_default();
        u.0 += r.try_get::<i64, _>("up")?;
        u.1 += r.try_get::<i64, _>("total")?;
    }
    Ok(out)
}
