//! RELP over TCP: rsyslog's `omrelp` delivers, the collector answers each message only once
//! it is durable.

use std::net::IpAddr;

use khetnet_retention::record::Input;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::sources::Count;
use super::syslog::count_record;
use super::{Shared, accept_loop};
use crate::relp::{self, Decoded};
use crate::syslog;

/// Accepts RELP connections until `shared.shutdown`, one task per connection.
pub async fn run_relp(listener: TcpListener, shared: Shared) {
    accept_loop(
        listener,
        shared,
        Input::Relp,
        |stream, peer, school, shared| async move {
            session(stream, peer, school, shared).await;
        },
    )
    .await;
}

/// What one read asked for, answered in order once its messages are durable.
enum Answer {
    Open(u64),
    Stored(u64),
    Close(u64),
    Unknown(u64, String),
}

async fn session(mut stream: TcpStream, peer: IpAddr, school: Option<String>, shared: Shared) {
    let input = Input::Relp;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::select! {
            _ = shared.shutdown.cancelled() => {
                let _ = stream.write_all(relp::SERVER_CLOSE).await;
                return;
            }
            r = stream.read(&mut chunk) => r,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        shared
            .sources
            .add(input, Some(peer), Count::Bytes, n as u64);
        buf.extend_from_slice(&chunk[..n]);
        let receipt = shared.receipt(input, peer, school.clone());
        let mut answers = Vec::new();
        let mut records = Vec::new();
        let mut at = 0;
        let mut broken = None;
        loop {
            match relp::decode(&buf[at..]) {
                Decoded::Incomplete => break,
                Decoded::Malformed(reason) => {
                    broken = Some(reason);
                    break;
                }
                Decoded::Frame { frame, consumed } => {
                    at += consumed;
                    match frame.command {
                        "open" => answers.push(Answer::Open(frame.txnr)),
                        "syslog" => {
                            let data = frame.data.strip_suffix(b"\n").unwrap_or(frame.data);
                            let record = syslog::decode(data, &receipt);
                            count_record(&shared, input, peer, &record);
                            records.push(record);
                            answers.push(Answer::Stored(frame.txnr));
                        }
                        "close" => answers.push(Answer::Close(frame.txnr)),
                        other => answers.push(Answer::Unknown(frame.txnr, other.to_owned())),
                    }
                }
            }
        }
        buf.drain(..at);
        if !records.is_empty() {
            shared
                .sources
                .add(input, Some(peer), Count::Received, records.len() as u64);
            if !shared.writer.append(records).await {
                // Not stored: no answer, so the sender keeps the messages and sends them again.
                return;
            }
        }
        let mut out = Vec::new();
        let mut closing = false;
        for answer in answers {
            match answer {
                Answer::Open(txnr) => out.extend(relp::open_response(txnr)),
                Answer::Stored(txnr) => out.extend(relp::response(txnr, "200 OK")),
                Answer::Close(txnr) => {
                    out.extend(relp::response(txnr, "200 OK"));
                    closing = true;
                }
                Answer::Unknown(txnr, command) => {
                    shared.sources.add(input, Some(peer), Count::Malformed, 1);
                    out.extend(relp::response(
                        txnr,
                        &format!("500 unknown command {command}"),
                    ));
                }
            }
        }
        if stream.write_all(&out).await.is_err() || closing {
            return;
        }
        if let Some(reason) = broken {
            // The stream cannot be resynchronised; the sender reconnects and resends what was
            // not answered.
            shared.sources.add(input, Some(peer), Count::Malformed, 1);
            tracing::warn!(peer = %peer, reason, "not RELP; closing the connection");
            let _ = stream.write_all(relp::SERVER_CLOSE).await;
            return;
        }
    }
}
