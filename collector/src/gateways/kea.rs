//! ISC Kea DHCPv4 lease messages (logger `kea-dhcp4.leases`):
//!
//! ```text
//! INFO  [kea-dhcp4.leases/2154.140] DHCP4_LEASE_ALLOC [hwtype=1 aa:bb:cc:dd:ee:ff], cid=[01:aa:bb:cc:dd:ee:ff], tid=0x5a4e3b2c: lease 10.0.0.5 has been allocated for 4000 seconds
//! INFO  [kea-dhcp4.leases/2154.140] DHCP4_RELEASE [hwtype=1 aa:bb:cc:dd:ee:ff], cid=[no info], tid=0x1a2b3c4d: address 10.0.0.5 was released properly.
//! ```
//!
//! An allocation runs from the line's time for the logged number of seconds; a release ends
//! the lease at the line's time.

use jiff::SignedDuration;
use khetnet_retention::record::{Body, Lease, LeaseAction};

use super::{Line, Needle, Parsed};
use crate::mac;

static DHCP4_LEASE_ALLOC: Needle = Needle::new("DHCP4_LEASE_ALLOC ");
static DHCP4_RELEASE: Needle = Needle::new("DHCP4_RELEASE ");

/// Recognises a Kea DHCP4_LEASE_ALLOC or DHCP4_RELEASE line.
pub fn parse(line: &Line<'_>) -> Option<Parsed> {
    let text = line.text;
    let (action, at) = if let Some(at) = DHCP4_LEASE_ALLOC.find(text) {
        (LeaseAction::Assign, at)
    } else if let Some(at) = DHCP4_RELEASE.find(text) {
        (LeaseAction::Release, at)
    } else {
        return None;
    };
    let rest = &text[at..];
    let hw = rest.split_once("[hwtype=")?.1.split_once(']')?.0;
    let mac = mac::normalise(hw.split_once(' ')?.1)?;
    let (ip, tail) = match action {
        LeaseAction::Assign => rest.split_once(": lease ")?.1.split_once(' ')?,
        _ => rest.split_once(": address ")?.1.split_once(' ')?,
    };
    let ip = ip.parse().ok()?;
    let (start, end) = match action {
        LeaseAction::Assign => {
            let secs: i64 = tail
                .strip_prefix("has been allocated for ")?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            let end = line.time.checked_add(SignedDuration::from_secs(secs)).ok();
            (Some(line.time), end)
        }
        _ => (None, Some(line.time)),
    };
    Some(Parsed::new(Body::Lease(Lease {
        action,
        ip,
        mac,
        hostname: None,
        start,
        end,
        server: line.host.map(str::to_owned),
    })))
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;

    fn check(text: &str, expected: &str) {
        assert_eq!(
            run(super::parse, Some("kea-dhcp4"), text),
            expected,
            "text {text:?}"
        );
    }

    #[test]
    fn kea_fixtures() {
        check(
            "INFO  [kea-dhcp4.leases/2154.140] DHCP4_LEASE_ALLOC [hwtype=1 aa:bb:cc:dd:ee:ff], cid=[01:aa:bb:cc:dd:ee:ff], tid=0x5a4e3b2c: lease 10.0.0.5 has been allocated for 4000 seconds",
            "lease assign 10.0.0.5 aa:bb:cc:dd:ee:ff host=- start=2026-11-21T04:00:00Z end=2026-11-21T05:06:40Z server=gw",
        );
        check(
            "DHCP4_LEASE_ALLOC [hwtype=1 00:1A:2B:3C:4D:5E], cid=[no info], tid=0x1: lease 10.0.0.6 has been allocated for 86400 seconds",
            "lease assign 10.0.0.6 00:1a:2b:3c:4d:5e host=- start=2026-11-21T04:00:00Z end=2026-11-22T04:00:00Z server=gw",
        );
        check(
            "INFO  [kea-dhcp4.leases/2154.140] DHCP4_RELEASE [hwtype=1 aa:bb:cc:dd:ee:ff], cid=[no info], tid=0x1a2b3c4d: address 10.0.0.5 was released properly.",
            "lease release 10.0.0.5 aa:bb:cc:dd:ee:ff host=- start=- end=2026-11-21T04:00:00Z server=gw",
        );
    }

    #[test]
    fn kea_near_misses() {
        check(
            "DHCP4_LEASE_ADVERT [hwtype=1 aa:bb:cc:dd:ee:ff], cid=[no info], tid=0x1: lease 10.0.0.5 will be advertised",
            "none",
        );
        check(
            "DHCP4_LEASE_ALLOC [hwtype=1 aa:bb:cc:dd:ee:ff], tid=0x1: lease 10.0.0.5 has been allocated for ever",
            "none",
        );
        check(
            "DHCP4_LEASE_ALLOC [hwtype=1 zz], tid=0x1: lease 10.0.0.5 has been allocated for 60 seconds",
            "none",
        );
        check(
            "DHCP4_LEASE_ALLOC [hwtype=1 aa:bb:cc:dd:ee:ff], tid=0x1: lease nowhere has been allocated for 60 seconds",
            "none",
        );
    }
}
