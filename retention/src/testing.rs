//! Record and option builders for tests (this crate's and the workspace's end-to-end tests).

use std::net::{IpAddr, Ipv4Addr};

use jiff::{SignedDuration, Timestamp};

use crate::record::{Body, Flow, Input, Origin, Record};
use crate::store::{Clock, Options};

/// Options with a fixed clock, long seal intervals and default retention.
pub fn opts_at(now: Timestamp) -> Options {
    Options {
        clock: Clock::fixed(now),
        ..Options::default()
    }
}

/// A TCP flow from `10.0.<n/256>.<n%256>:40000` to `203.0.113.1:443` at 2026-01-01 plus `n`
/// seconds.
pub fn flow(n: u32) -> Record {
    let at = Timestamp::from_second(1_767_225_600).unwrap() + SignedDuration::from_secs(n.into());
    Record {
        event_time: at,
        receive_time: at,
        origin: Origin {
            input: Input::Netflow,
            peer: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
            import_sha256: None,
        },
        school: Some("S001".into()),
        body: Body::Flow(Flow {
            protocol: 6,
            src_ip: IpAddr::V4(Ipv4Addr::new(10, 0, (n / 256 % 256) as u8, (n % 256) as u8)),
            src_port: Some(40000),
            dst_ip: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 1)),
            dst_port: Some(443),
            bytes: Some(1500),
            packets: Some(3),
            start: Some(at),
            end: Some(at),
            exporter: None,
            nat_src_ip: None,
            nat_src_port: None,
            action: None,
        }),
    }
}
