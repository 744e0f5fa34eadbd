//! The writer stage: one task that gathers the records of every input into batches and appends
//! them to the store on a blocking thread.
//!
//! Inputs hand records over through one channel, bounded in batches and in the memory its
//! records take ([`QUEUE_BYTES`]). When it is full (the store is slower than the inputs), [`Writer::send`]
//! and [`Writer::append`] wait: TCP, TLS and RELP stop reading and the sender's own buffer holds
//! the rest; RADIUS stops answering and the client retries.
//! UDP cannot be held back, so [`Writer::try_send`] hands the records back and the input counts
//! them as dropped. A batch is acknowledged (the waiting [`Writer::append`] returns `true`) only
//! after its append returned, that is after the records are fsynced and chained.
//!
//! The writer is a pipeline two batches deep: batch N + 1 is encoded ([`Store::prepare`], on a
//! blocking thread, without the store's lock) while batch N is written, fsynced and chained
//! ([`Store::try_append_prepared`], on another), so that the two stages use both cores. The
//! order of the chain is the order of the queue.

use std::sync::Arc;
use std::time::Duration;

use khetnet_retention::record::{Body, Input};
use khetnet_retention::{Error, Prepared, Receipt, Record, Store};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

use super::sources::{Count, INPUTS, Sources};

/// Batches waiting for the writer, at most. Each holds what one input read at once.
pub const QUEUE_BATCHES: usize = 1024;

/// Records appended to the store in one call, at most.
pub const MAX_BATCH_RECORDS: usize = 8 * 1024;

/// Bytes of records queued or being appended, at most (as [`footprint`] counts them): this
/// bounds the collector's memory while the store is slower than the inputs, whatever the size
/// of each input's batches. Counted in bytes rather than records, so that small records (a
/// flow takes about 380 bytes, a 200-byte syslog line kept raw about 540) get the room their
/// size allows: a UDP input drops what does not fit while an append runs. 12 MiB hold about
/// 23 Ki such syslog records (16 Ki when the room was counted in records) or 32 Ki flows.
pub const QUEUE_BYTES: usize = 12 << 20;

/// How often the store's housekeeping (signing, sealing, the CLI's inbox) runs when idle.
const TICK: Duration = Duration::from_secs(5);

/// How long to wait before retrying an append that failed (a full disk).
const RETRY: Duration = Duration::from_secs(1);

struct Batch {
    records: Vec<Record>,
    ack: Option<oneshot::Sender<bool>>,
    /// The batch's share of [`QUEUE_BYTES`], given back once it is appended.
    room: OwnedSemaphorePermit,
}

/// The inputs' handle on the writer stage. Cheap to clone; the writer ends when every clone is
/// dropped and what was queued is written.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Batch>,
    room: Arc<Semaphore>,
}

/// The running writer task.
pub struct WriterTask {
    handle: JoinHandle<()>,
}

impl WriterTask {
    /// Waits until every handle is dropped and everything queued is written (or abandoned).
    pub async fn finished(self) {
        let _ = self.handle.await;
    }
}

impl Writer {
    /// Starts the writer over `store`; what it stores is counted in `sources` (stored, and of
    /// those raw, per input and source).
    ///
    /// `abandon` is for when the store keeps failing at shutdown: once it is cancelled, a
    /// failed append is not retried and its senders learn that nothing was stored.
    pub fn start(
        store: Arc<Store>,
        sources: Arc<Sources>,
        abandon: CancellationToken,
    ) -> (Writer, WriterTask) {
        let (tx, rx) = mpsc::channel(QUEUE_BATCHES);
        let handle = tokio::spawn(write_loop(store, sources, rx, abandon));
        let room = Arc::new(Semaphore::new(QUEUE_BYTES));
        (Writer { tx, room }, WriterTask { handle })
    }

    /// A writer nobody drains, with room for `capacity` batches: what the inputs see when the
    /// store is slow. [`StalledQueue::next`] takes out (and acknowledges) one batch at a time.
    /// For tests of flow control.
    pub fn stalled(capacity: usize) -> (Writer, StalledQueue) {
        let (tx, rx) = mpsc::channel(capacity);
        let room = Arc::new(Semaphore::new(QUEUE_BYTES));
        (Writer { tx, room }, StalledQueue { rx })
    }

    /// Queues `records`, waiting while the queue is full. No acknowledgement.
    ///
    /// # Errors
    /// The writer has ended: the records are handed back.
    pub async fn send(&self, records: Vec<Record>) -> Result<(), Vec<Record>> {
        let Ok(room) = self.room.clone().acquire_many_owned(share(&records)).await else {
            return Err(records);
        };
        self.tx
            .send(Batch {
                records,
                ack: None,
                room,
            })
            .await
            .map_err(|e| e.0.records)
    }

    /// Queues `records` when there is room, else hands them back at once (UDP's drop).
    pub fn try_send(&self, records: Vec<Record>) -> Result<(), Vec<Record>> {
        let Ok(room) = self.room.clone().try_acquire_many_owned(share(&records)) else {
            return Err(records);
        };
        self.tx
            .try_send(Batch {
                records,
                ack: None,
                room,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b) => {
                    b.records
                }
            })
    }

    /// Queues `records` (waiting while the queue is full) and waits until they are durable.
    /// `false`: they were not stored (the store failed at shutdown, or the writer ended); the
    /// sender must not be acknowledged.
    pub async fn append(&self, records: Vec<Record>) -> bool {
        let (ack, done) = oneshot::channel();
        let Ok(room) = self.room.clone().acquire_many_owned(share(&records)).await else {
            return false;
        };
        if self
            .tx
            .send(Batch {
                records,
                ack: Some(ack),
                room,
            })
            .await
            .is_err()
        {
            return false;
        }
        done.await.unwrap_or(false)
    }
}

/// The permits `records` take of [`QUEUE_BYTES`]: one per byte, all of them for a batch
/// larger than that (it then waits for an empty queue).
fn share(records: &[Record]) -> u32 {
    let bytes: usize = records.iter().map(footprint).sum();
    bytes.clamp(1, QUEUE_BYTES) as u32
}

/// About what `record` takes in memory: the record itself and what its body and school hold
/// on the heap (each allocation with the allocator's 16 bytes). The bodies other than raw hold
/// a few short strings at most, counted as 64 bytes.
pub fn footprint(record: &Record) -> usize {
    let heap = |len: usize| if len == 0 { 0 } else { len + 16 };
    let text = |s: &std::borrow::Cow<'static, str>| match s {
        std::borrow::Cow::Borrowed(_) => 0,
        std::borrow::Cow::Owned(s) => heap(s.len()),
    };
    let school = record.school.as_ref().map_or(0, |s| heap(s.len()));
    let body = match &record.body {
        Body::Raw(raw) => {
            heap(raw.data.len()) + text(&raw.protocol) + raw.reason.as_ref().map_or(0, text)
        }
        _ => 64,
    };
    std::mem::size_of::<Record>() + school + body
}

/// The other end of [`Writer::stalled`].
pub struct StalledQueue {
    rx: mpsc::Receiver<Batch>,
}

impl StalledQueue {
    /// The next queued batch, acknowledged as stored; `None` once every writer handle is gone.
    pub async fn next(&mut self) -> Option<Vec<Record>> {
        let batch = self.rx.recv().await?;
        if let Some(ack) = batch.ack {
            let _ = ack.send(true);
        }
        Some(batch.records)
    }
}

/// A batch being appended on a blocking thread while the next one is gathered and encoded.
struct InFlight {
    task: JoinHandle<Result<Receipt, (Error, Box<Prepared>)>>,
    acks: Vec<oneshot::Sender<bool>>,
    /// Its share of the queue's room, given back once it is durable.
    room: Vec<OwnedSemaphorePermit>,
    tally: Tally,
    count: u64,
}

enum Next {
    Batch(Batch),
    Stored(Result<Result<Receipt, (Error, Box<Prepared>)>, JoinError>),
    Tick,
    Closed,
}

/// Gathers batches and appends them, two stages deep: while batch N is written, fsynced and
/// chained (under the store's lock), batch N + 1 is encoded (columns and zstd, no lock) on
/// another blocking thread. Batches are chained in the order they were taken from the queue,
/// and each is acknowledged only once its own append returned.
async fn write_loop(
    store: Arc<Store>,
    sources: Arc<Sources>,
    mut rx: mpsc::Receiver<Batch>,
    abandon: CancellationToken,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight: Option<InFlight> = None;
    loop {
        let next = tokio::select! {
            biased;
            batch = rx.recv() => batch.map_or(Next::Closed, Next::Batch),
            joined = async { (&mut in_flight.as_mut().expect("guarded").task).await },
                if in_flight.is_some() => Next::Stored(joined),
            _ = tick.tick() => Next::Tick,
        };
        let first = match next {
            Next::Batch(batch) => batch,
            Next::Closed => break,
            Next::Stored(joined) => {
                let done = in_flight.take().expect("it was awaited");
                settle(&store, &sources, done, joined, &abandon).await;
                continue;
            }
            Next::Tick => {
                let store = store.clone();
                if let Ok(Err(error)) = tokio::task::spawn_blocking(move || store.tick()).await {
                    tracing::warn!(error = %error, "store housekeeping failed; retried on the next tick");
                }
                continue;
            }
        };
        let mut total = first.records.len();
        let mut batches = vec![first];
        while total < MAX_BATCH_RECORDS {
            match rx.try_recv() {
                Ok(batch) => {
                    total += batch.records.len();
                    batches.push(batch);
                }
                Err(_) => break,
            }
        }
        // One allocation of the exact size: the store keeps this vector until the tail is
        // sealed, so growing it by doubling would waste up to half of it, and copy it meanwhile.
        let mut records = Vec::with_capacity(total);
        let mut acks = Vec::new();
        let mut room = Vec::with_capacity(batches.len());
        for batch in batches {
            records.extend(batch.records);
            acks.extend(batch.ack);
            room.push(batch.room);
        }
        if records.is_empty() {
            for ack in acks {
                let _ = ack.send(true);
            }
            continue;
        }
        let count = records.len() as u64;
        let tally = tally(&records);
        let encoder = store.clone();
        let preparing = tokio::task::spawn_blocking(move || encoder.prepare(records));
        // The previous batch's append runs meanwhile; it is chained first.
        if let Some(mut done) = in_flight.take() {
            let joined = (&mut done.task).await;
            settle(&store, &sources, done, joined, &abandon).await;
        }
        let prepared = match preparing.await {
            Ok(prepared) => prepared,
            Err(error) => {
                // The encoding panicked, and the records went with it: their senders are told
                // nothing was stored (RELP and RADIUS resend).
                metrics::counter!("khetnet_collector_store_errors_total").increment(1);
                tracing::error!(error = %error, records = count, "store encoding task failed; these records were not stored");
                for ack in acks {
                    let _ = ack.send(false);
                }
                continue;
            }
        };
        let appender = store.clone();
        in_flight = Some(InFlight {
            task: tokio::task::spawn_blocking(move || appender.try_append_prepared(prepared)),
            acks,
            room,
            tally,
            count,
        });
    }
    if let Some(mut done) = in_flight.take() {
        let joined = (&mut done.task).await;
        settle(&store, &sources, done, joined, &abandon).await;
    }
    let store = store.clone();
    let signed = tokio::task::spawn_blocking(move || store.sign_now()).await;
    if let Ok(Err(error)) = signed {
        tracing::warn!(error = %error, "signing the chain head at shutdown failed");
    }
}

/// Finishes an append: retries it while it fails (a full disk) until `abandon`, then gives
/// its room back and tells its senders whether it is durable.
async fn settle(
    store: &Arc<Store>,
    sources: &Sources,
    done: InFlight,
    joined: Result<Result<Receipt, (Error, Box<Prepared>)>, JoinError>,
    abandon: &CancellationToken,
) {
    let InFlight {
        acks,
        room,
        tally,
        count,
        ..
    } = done;
    let stored = retry(store, sources, joined, tally, count, abandon).await;
    drop(room);
    for ack in acks {
        let _ = ack.send(stored);
    }
}

/// Records and raw records of a batch per input and source, in runs (records come in runs
/// from one source): taken before the append, which keeps the records, and counted once it
/// returned ([`count_stored`]).
type Tally = Vec<(Input, Option<std::net::IpAddr>, u64, u64)>;

fn tally(records: &[Record]) -> Tally {
    let mut tally: Tally = Vec::new();
    for record in records {
        let key = (record.origin.input, record.origin.peer);
        let raw = u64::from(matches!(record.body, Body::Raw(_)));
        match tally.last_mut() {
            Some((input, peer, stored, raws)) if (*input, *peer) == key => {
                *stored += 1;
                *raws += raw;
            }
            _ => tally.push((key.0, key.1, 1, raw)),
        }
    }
    tally
}

/// Counts durable records per input and source.
fn count_stored(sources: &Sources, tally: Tally) {
    for (input, peer, stored, raw) in tally {
        if INPUTS.contains(&input) {
            sources.add(input, peer, Count::Stored, stored);
            sources.add(input, peer, Count::Raw, raw);
        }
    }
}

/// Counts an append that returned; while it failed (a full disk), appends the batch again
/// every [`RETRY`] until it is stored or `abandon`. `true` once the records are durable.
async fn retry(
    store: &Arc<Store>,
    sources: &Sources,
    mut joined: Result<Result<Receipt, (Error, Box<Prepared>)>, JoinError>,
    tally: Tally,
    count: u64,
    abandon: &CancellationToken,
) -> bool {
    loop {
        let prepared = match joined {
            Ok(Ok(_)) => {
                // Durable from here on; `bench/collector-syslog.sh` times ingest by this event.
                tracing::debug!(records = count, "batch stored");
                metrics::counter!("khetnet_collector_stored_records_total").increment(count);
                metrics::counter!("khetnet_collector_store_batches_total").increment(1);
                count_stored(sources, tally);
                return true;
            }
            Ok(Err((error, back))) => {
                metrics::counter!("khetnet_collector_store_errors_total").increment(1);
                tracing::error!(error = %error, records = count, "store append failed; the inputs are held back until it succeeds");
                back
            }
            Err(error) => {
                // The append panicked, and the records went with it: their senders are told
                // nothing was stored (RELP and RADIUS resend).
                metrics::counter!("khetnet_collector_store_errors_total").increment(1);
                tracing::error!(error = %error, records = count, "store append task failed; these records were not stored");
                return false;
            }
        };
        if abandon.is_cancelled() {
            tracing::error!(
                records = count,
                "shutting down with records the store refused; their senders were not acknowledged"
            );
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = abandon.cancelled() => {}
        }
        let store = store.clone();
        joined = tokio::task::spawn_blocking(move || store.try_append_prepared(*prepared)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use khetnet_retention::record::{Flow, Origin, Raw};

    fn record(body: Body) -> Record {
        Record {
            event_time: jiff::Timestamp::UNIX_EPOCH,
            receive_time: jiff::Timestamp::UNIX_EPOCH,
            origin: Origin {
                input: Input::SyslogTcp,
                peer: Some("10.1.0.1".parse().unwrap()),
                import_sha256: None,
            },
            school: None,
            body,
        }
    }

    /// The queue's room in bytes holds more flows than raw syslog lines, and at least as many
    /// raw 200-byte lines as the 16 Ki records it held when it was counted in records.
    #[test]
    fn footprint_follows_what_a_record_holds() {
        let raw = record(Body::Raw(Raw {
            protocol: "syslog".into(),
            data: vec![b'x'; 200],
            reason: Some(crate::syslog::REASON_UNRECOGNISED.into()),
        }));
        let flow = record(Body::Flow(Flow {
            protocol: 6,
            src_ip: "10.0.0.5".parse().unwrap(),
            src_port: Some(1),
            dst_ip: "1.2.3.4".parse().unwrap(),
            dst_port: Some(443),
            bytes: Some(1),
            packets: Some(1),
            start: None,
            end: None,
            exporter: None,
            nat_src_ip: None,
            nat_src_port: None,
            action: None,
            user: None,
        }));
        let (raw, flow) = (footprint(&raw), footprint(&flow));
        assert!(flow < raw && raw < 700, "raw {raw}, flow {flow}");
        assert!(QUEUE_BYTES / raw >= 2 * MAX_BATCH_RECORDS, "raw {raw}");
    }
}
