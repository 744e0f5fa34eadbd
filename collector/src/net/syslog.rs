//! Syslog over UDP (one message per datagram), TCP (RFC 6587) and TLS (RFC 5425).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use khetnet_retention::Record;
use khetnet_retention::record::{Body, Input};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_rustls::TlsAcceptor;

use super::sources::Count;
use super::{Shared, accept_loop};
use crate::syslog::{self, Framed, Framer};

/// Datagrams read in one go before the batch goes to the writer.
const UDP_BATCH: usize = 256;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Receives syslog datagrams on `socket` until `shared.shutdown`.
///
/// Datagrams from sources not allowed are counted and ignored. When the writer is behind, the
/// batch is dropped and counted per source: UDP cannot be held back.
pub async fn run_syslog_udp(socket: UdpSocket, shared: Shared) {
    let input = Input::SyslogUdp;
    let mut buf = vec![0u8; 65_536];
    loop {
        let first = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => r,
        };
        let mut records = Vec::new();
        match first {
            Ok((n, peer)) => datagram(&shared, &buf[..n], peer, &mut records),
            Err(error) => {
                tracing::warn!(error = %error, "syslog UDP receive failed");
                continue;
            }
        }
        while records.len() < UDP_BATCH {
            match socket.try_recv_from(&mut buf) {
                Ok((n, peer)) => datagram(&shared, &buf[..n], peer, &mut records),
                Err(_) => break,
            }
        }
        if records.is_empty() {
            continue;
        }
        if let Err(dropped) = shared.writer.try_send(records) {
            count_dropped(&shared, input, &dropped);
        }
    }
    drain_datagrams(&socket, &shared, &mut buf).await;
}

/// At shutdown: the datagrams the kernel already holds are still read and stored, until none
/// comes for [`super::DRAIN_IDLE`] or [`super::DRAIN_GRACE`] has passed. Here the writer may be
/// waited for (until the grace ends); what it cannot take by then is counted as dropped.
async fn drain_datagrams(socket: &UdpSocket, shared: &Shared, buf: &mut [u8]) {
    let input = Input::SyslogUdp;
    let deadline = tokio::time::Instant::now() + super::DRAIN_GRACE;
    let mut records = Vec::new();
    loop {
        let until = deadline.min(tokio::time::Instant::now() + super::DRAIN_IDLE);
        let received = tokio::time::timeout_at(until, socket.recv_from(buf)).await;
        let done = match received {
            Ok(Ok((n, peer))) => {
                datagram(shared, &buf[..n], peer, &mut records);
                false
            }
            Ok(Err(_)) | Err(_) => true,
        };
        if records.len() >= UDP_BATCH || (done && !records.is_empty()) {
            let batch = std::mem::take(&mut records);
            let peers: Vec<Option<IpAddr>> = batch.iter().map(|r| r.origin.peer).collect();
            if !matches!(
                tokio::time::timeout_at(deadline, shared.writer.send(batch)).await,
                Ok(Ok(()))
            ) {
                for peer in &peers {
                    shared.sources.add(input, *peer, Count::Dropped, 1);
                }
                tracing::error!(
                    records = peers.len(),
                    "shutting down: the store did not take these UDP records within the grace period"
                );
            }
        }
        if done {
            return;
        }
    }
}

fn datagram(shared: &Shared, data: &[u8], peer: SocketAddr, records: &mut Vec<Record>) {
    let input = Input::SyslogUdp;
    let Some(school) = shared.sources.admit(input, peer.ip()) else {
        return;
    };
    let receipt = shared.receipt(input, peer.ip(), school);
    shared
        .sources
        .add(input, Some(peer.ip()), Count::Bytes, data.len() as u64);
    // A datagram may end with the sender's LF.
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    let record = syslog::decode(data, &receipt);
    shared
        .sources
        .add(input, Some(peer.ip()), Count::Received, 1);
    count_record(shared, input, peer.ip(), &record);
    records.push(record);
}

/// Counts dropped records per source.
pub(super) fn count_dropped(shared: &Shared, input: Input, dropped: &[Record]) {
    for record in dropped {
        shared
            .sources
            .add(input, record.origin.peer, Count::Dropped, 1);
    }
    tracing::warn!(
        input = super::sources::input_name(input),
        records = dropped.len(),
        "the writer is behind; UDP records dropped"
    );
}

pub(super) fn count_record(shared: &Shared, input: Input, peer: IpAddr, record: &Record) {
    count_records(shared, input, peer, std::slice::from_ref(record));
}

/// Counts records from one peer, and the malformed among them: once per batch, not per record
/// (each count also goes to the metrics, keyed by the peer's address as text).
fn count_records(shared: &Shared, input: Input, peer: IpAddr, records: &[Record]) {
    let malformed = records
        .iter()
        .filter(|record| {
            matches!(&record.body, Body::Raw(raw) if matches!(
                raw.reason.as_deref(),
                Some(syslog::REASON_NOT_UTF8 | syslog::REASON_OVERSIZED)
            ))
        })
        .count();
    let sources = &shared.sources;
    sources.add(input, Some(peer), Count::Records, records.len() as u64);
    sources.add(input, Some(peer), Count::Malformed, malformed as u64);
}

/// Accepts syslog TCP connections (RFC 6587 octet counting or LF framing) until
/// `shared.shutdown`, one task per connection, at most `shared.connections` at once.
pub async fn run_syslog_tcp(listener: TcpListener, shared: Shared) {
    accept_loop(
        listener,
        shared,
        Input::SyslogTcp,
        |stream, peer, school, shared| async move {
            read_stream(stream, peer, school, Input::SyslogTcp, shared).await;
        },
    )
    .await;
}

/// Accepts syslog TLS connections (RFC 5425) until `shared.shutdown`. A failed handshake is
/// counted as malformed and ends only that connection.
pub async fn run_syslog_tls(listener: TcpListener, acceptor: TlsAcceptor, shared: Shared) {
    let acceptor = Arc::new(acceptor);
    accept_loop(
        listener,
        shared,
        Input::SyslogTls,
        move |stream, peer, school, shared| {
            let acceptor = acceptor.clone();
            async move {
                let handshake =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                match handshake {
                    Ok(Ok(tls)) => read_stream(tls, peer, school, Input::SyslogTls, shared).await,
                    Ok(Err(error)) => {
                        shared
                            .sources
                            .add(Input::SyslogTls, Some(peer), Count::Malformed, 1);
                        tracing::warn!(peer = %peer, error = %error, "TLS handshake failed");
                    }
                    Err(_) => {
                        shared
                            .sources
                            .add(Input::SyslogTls, Some(peer), Count::Malformed, 1);
                        tracing::warn!(peer = %peer, "TLS handshake timed out");
                    }
                }
            }
        },
    )
    .await;
}

/// Reads one syslog stream until EOF, an error or shutdown. Records go to the writer with
/// backpressure: while the writer is behind, this stops reading and the sender buffers.
async fn read_stream<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: IpAddr,
    school: Option<String>,
    input: Input,
    shared: Shared,
) {
    let mut framer = Framer::default();
    let mut buf: Vec<u8> = Vec::with_capacity(128 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    // Set at shutdown: until then, what the sender already sent is still read and stored.
    let mut draining: Option<tokio::time::Instant> = None;
    // Messages in the last read: the next read's vector is made that large at once, rather
    // than grown (and copied) by doubling for every read.
    let mut last_count = 0;
    loop {
        let read = match draining {
            None => tokio::select! {
                _ = shared.shutdown.cancelled() => {
                    draining = Some(tokio::time::Instant::now() + super::DRAIN_GRACE);
                    continue;
                }
                r = stream.read(&mut chunk) => r,
            },
            Some(deadline) => {
                let until = deadline.min(tokio::time::Instant::now() + super::DRAIN_IDLE);
                match tokio::time::timeout_at(until, stream.read(&mut chunk)).await {
                    Ok(r) => r,
                    // The sender went quiet, or the grace period is over.
                    Err(_) => break,
                }
            }
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) => {
                tracing::debug!(peer = %peer, error = %error, "syslog stream ended with an error");
                break;
            }
        };
        shared
            .sources
            .add(input, Some(peer), Count::Bytes, n as u64);
        buf.extend_from_slice(&chunk[..n]);
        let receipt = shared.receipt(input, peer, school.clone());
        let mut records = Vec::with_capacity(last_count + last_count / 8);
        let mut at = 0;
        loop {
            let framed = framer.decode(&buf[at..]);
            let consumed = framed.consumed();
            match framed {
                Framed::Incomplete => break,
                Framed::Message { message, .. } => records.push(syslog::decode(message, &receipt)),
                Framed::Oversized { head, .. } => records.push(syslog::oversized(head, &receipt)),
                Framed::Skipped { .. } => {}
            }
            at += consumed;
        }
        buf.drain(..at);
        last_count = records.len();
        let submitted = submit_until(&shared, input, peer, records, draining).await;
        if !submitted {
            return;
        }
    }
    // What is left of a stream that ended without a final LF is still a message.
    let receipt = shared.receipt(input, peer, school);
    let rest: Vec<Record> = framer
        .finish(&buf)
        .map(|m| syslog::decode(m, &receipt))
        .into_iter()
        .collect();
    submit_until(&shared, input, peer, rest, draining).await;
    // TLS: close_notify, so the sender knows the stream ended cleanly.
    let _ = stream.shutdown().await;
}

/// As [`submit`]; once shutting down, waits for the queue only until `deadline`.
async fn submit_until(
    shared: &Shared,
    input: Input,
    peer: IpAddr,
    records: Vec<Record>,
    deadline: Option<tokio::time::Instant>,
) -> bool {
    let Some(deadline) = deadline else {
        return submit(shared, input, peer, records).await;
    };
    let count = records.len() as u64;
    match tokio::time::timeout_at(deadline, submit(shared, input, peer, records)).await {
        Ok(done) => done,
        Err(_) => {
            // The store is stuck at shutdown: count and say so, never lose data silently.
            shared.sources.add(input, Some(peer), Count::Dropped, count);
            tracing::error!(input = super::sources::input_name(input), peer = %peer, records = count,
                "shutting down: the store did not take these records within the grace period");
            false
        }
    }
}

async fn submit(shared: &Shared, input: Input, peer: IpAddr, records: Vec<Record>) -> bool {
    if records.is_empty() {
        return true;
    }
    shared
        .sources
        .add(input, Some(peer), Count::Received, records.len() as u64);
    count_records(shared, input, peer, &records);
    shared.writer.send(records).await.is_ok()
}
