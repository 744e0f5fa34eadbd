//! What the inputs do when the writer is behind (a stalled writer queue stands in for a slow or
//! full store): UDP drops and counts per source; TCP stops reading, so the sender's writes stall,
//! and resumes without loss once the writer catches up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use khetnet_collector::net::{self, Count, Shared, Sources, Writer};
use khetnet_collector::source::AllowList;
use khetnet_retention::record::Input;
use khetnet_retention::{Options, Store};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn shared(writer: Writer, dir: &std::path::Path) -> Shared {
    Shared {
        writer,
        sources: Arc::new(Sources::new(
            AllowList::from_entries(["127.0.0.1=S1"]).unwrap(),
        )),
        store: Arc::new(Store::open_or_init(dir.join("store"), &Options::default()).unwrap()),
        shutdown: CancellationToken::new(),
        tracker: TaskTracker::new(),
        connections: Arc::new(Semaphore::new(16)),
    }
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_drops_and_counts_when_the_writer_is_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, mut queue) = Writer::stalled(1);
    let shared = shared(writer, dir.path());
    let sources = shared.sources.clone();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let stop = shared.shutdown.clone();
    let task = tokio::spawn(net::syslog::run_syslog_udp(socket, shared));
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    client.send_to(b"<13>first", addr).await.unwrap();
    until("the first datagram", || {
        sources.get(Input::SyslogUdp, Count::Received) == 1
    })
    .await;
    // The queue (one batch) is full now: the next datagram cannot wait.
    client.send_to(b"<13>second", addr).await.unwrap();
    until("the drop", || {
        sources.get(Input::SyslogUdp, Count::Dropped) == 1
    })
    .await;
    assert_eq!(sources.get(Input::SyslogUdp, Count::Received), 2);
    // Once the writer catches up, datagrams are queued again.
    let first = queue.next().await.unwrap();
    assert_eq!(first.len(), 1);
    client.send_to(b"<13>third", addr).await.unwrap();
    let third = tokio::time::timeout(Duration::from_secs(10), queue.next())
        .await
        .unwrap()
        .unwrap();
    let raw = |r: &khetnet_retention::Record| match &r.body {
        khetnet_retention::record::Body::Raw(raw) => raw.data.clone(),
        _ => Vec::new(),
    };
    assert_eq!(raw(&first[0]), b"<13>first");
    assert_eq!(raw(&third[0]), b"<13>third");
    assert_eq!(sources.get(Input::SyslogUdp, Count::Dropped), 1);
    // What the counters snapshot (`khetnet-retention status`) shows: per input and per source.
    let udp = sources.tally(Input::SyslogUdp);
    assert_eq!((udp.received, udp.dropped), (3, 1));
    let per_source = sources.source_tallies();
    let gateway = per_source
        .iter()
        .find(|s| s.input == "syslog_udp" && s.source.to_string() == "127.0.0.1")
        .unwrap();
    assert_eq!((gateway.tally.received, gateway.tally.dropped), (3, 1));
    assert_eq!(gateway.school.as_deref(), Some("S1"));
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_stops_reading_when_the_writer_is_behind_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, mut queue) = Writer::stalled(1);
    let shared = shared(writer, dir.path());
    let sources = shared.sources.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = shared.shutdown.clone();
    let tracker = shared.tracker.clone();
    let task = tokio::spawn(net::syslog::run_syslog_tcp(listener, shared));

    // 200,000 messages of 100 bytes: 20 MB, far more than socket buffers hold.
    let total = 200_000usize;
    let line = |i: usize| {
        format!(
            "<13>Nov 21 10:59:59 host app: message {i:08} {}\n",
            "x".repeat(50)
        )
    };
    let sender = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut chunk = String::new();
        for i in 0..total {
            chunk.push_str(&line(i));
            if chunk.len() > 64 * 1024 {
                tcp.write_all(chunk.as_bytes()).await.unwrap();
                chunk.clear();
            }
        }
        tcp.write_all(chunk.as_bytes()).await.unwrap();
        tcp.shutdown().await.unwrap();
    });
    // With nobody draining, the reader fills the queue, then stops reading: the count stalls
    // and the sender cannot finish.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stalled_at = sources.get(Input::SyslogTcp, Count::Received);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sources.get(Input::SyslogTcp, Count::Received),
        stalled_at,
        "reading stopped"
    );
    assert!(
        (stalled_at as usize) < total / 4,
        "only what fits was read: {stalled_at}"
    );
    assert!(!sender.is_finished(), "the sender is held back");

    // The writer catches up: everything arrives, in order, once.
    let mut got = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < total {
        assert!(Instant::now() < deadline, "only {got} of {total} arrived");
        let Ok(Some(batch)) = tokio::time::timeout(Duration::from_secs(10), queue.next()).await
        else {
            panic!("the queue ended after {got} of {total}");
        };
        for record in batch {
            let khetnet_retention::record::Body::Raw(raw) = &record.body else {
                panic!("{record:?}");
            };
            assert_eq!(raw.data, line(got).trim_end().as_bytes());
            got += 1;
        }
    }
    sender.await.unwrap();
    stop.cancel();
    task.await.unwrap();
    tracker.close();
    tracker.wait().await;
}
