//! NetFlow v5/v9 and IPFIX over UDP, with one decoder (and so one template cache) per exporter.

use std::collections::HashMap;
use std::net::IpAddr;

use khetnet_retention::record::{Body, Input};
use tokio::net::UdpSocket;

use super::Shared;
use super::sources::Count;
use super::syslog::count_dropped;
use crate::netflow::FlowDecoder;

/// Receives flow export datagrams on `socket` until `shared.shutdown`. `input` names the port
/// ([`Input::Netflow`] or [`Input::Ipfix`]); records are marked by what each datagram is.
///
/// When the writer is behind, the datagram's flows are dropped and counted: UDP cannot be held
/// back.
pub async fn run_netflow(socket: UdpSocket, input: Input, shared: Shared) {
    let mut decoders: HashMap<IpAddr, FlowDecoder> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let received = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => r,
        };
        let (n, peer) = match received {
            Ok(x) => x,
            Err(error) => {
                tracing::warn!(error = %error, "NetFlow receive failed");
                continue;
            }
        };
        let ip = peer.ip();
        let Some(school) = shared.sources.admit(input, ip) else {
            continue;
        };
        let data = &buf[..n];
        // Version 10 is IPFIX; the rest is NetFlow.
        let kind = if data.get(..2) == Some(&[0, 10]) {
            Input::Ipfix
        } else {
            Input::Netflow
        };
        shared.sources.add(input, Some(ip), Count::Received, 1);
        shared.sources.add(input, Some(ip), Count::Bytes, n as u64);
        let receipt = shared.receipt(kind, ip, school);
        let decoder = decoders.entry(ip).or_insert_with(|| FlowDecoder::new(ip));
        let records = decoder.decode(data, &receipt);
        let malformed = records
            .iter()
            .filter(|r| matches!(r.body, Body::Raw(_)))
            .count() as u64;
        shared
            .sources
            .add(input, Some(ip), Count::Malformed, malformed);
        shared
            .sources
            .add(input, Some(ip), Count::Records, records.len() as u64);
        if records.is_empty() {
            continue;
        }
        if let Err(dropped) = shared.writer.try_send(records) {
            count_dropped(&shared, input, &dropped);
        }
    }
}
