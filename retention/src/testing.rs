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
            user: None,
        }),
    }
}

/// A clock the test moves by hand.
#[derive(Clone)]
pub struct ManualClock(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(std::sync::Arc::new(
            start.as_nanosecond().try_into().unwrap_or(i64::MAX).into(),
        ))
    }

    pub fn now(&self) -> Timestamp {
        Timestamp::from_nanosecond(self.0.load(std::sync::atomic::Ordering::SeqCst).into())
            .unwrap_or(Timestamp::MAX)
    }

    pub fn set(&self, t: Timestamp) {
        self.0.store(
            t.as_nanosecond().try_into().unwrap_or(i64::MAX),
            std::sync::atomic::Ordering::SeqCst,
        );
    }

    pub fn advance(&self, d: SignedDuration) {
        self.set(self.now() + d);
    }

    pub fn clock(&self) -> Clock {
        let me = self.clone();
        Clock::from_fn(move || me.now())
    }
}

fn base(at: Timestamp, body: Body) -> Record {
    Record {
        event_time: at,
        receive_time: at,
        origin: Origin {
            input: Input::SyslogUdp,
            peer: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9))),
            import_sha256: None,
        },
        school: Some("S002".into()),
        body,
    }
}

/// A NAT translation of `inside`:40000 to `outside`:`port` at `at`.
pub fn nat(inside: IpAddr, outside: IpAddr, port: u16, at: Timestamp) -> Record {
    base(
        at,
        Body::Nat(crate::record::Nat {
            protocol: Some(6),
            inside_ip: inside,
            inside_port: Some(40000),
            outside_ip: outside,
            outside_port: Some(port),
            dst_ip: None,
            dst_port: None,
        }),
    )
}

/// A DHCP assignment of `ip` to `mac` at `at` for a day.
pub fn lease(ip: IpAddr, mac: &str, at: Timestamp) -> Record {
    base(
        at,
        Body::Lease(crate::record::Lease {
            action: crate::record::LeaseAction::Assign,
            ip,
            mac: mac.into(),
            hostname: None,
            start: Some(at),
            end: Some(at + SignedDuration::from_hours(24)),
            server: None,
        }),
    )
}

/// A RADIUS accounting record of `user` on `mac` (session `id`), with or without an address.
pub fn session(
    user: &str,
    id: &str,
    ip: Option<IpAddr>,
    mac: &str,
    status: crate::record::SessionStatus,
    at: Timestamp,
) -> Record {
    base(
        at,
        Body::Session(crate::record::Session {
            status,
            user: user.into(),
            session_id: Some(id.into()),
            ip,
            mac: Some(mac.into()),
            nas: None,
            input_octets: None,
            output_octets: None,
            duration_secs: None,
            terminate_cause: None,
        }),
    )
}
