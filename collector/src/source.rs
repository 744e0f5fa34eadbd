//! Which peers may send to the collector, and which school each belongs to.
//!
//! Configured as `ADDRESS[/PREFIX][=SCHOOL]` entries (`--allow 10.1.0.0/16=1010100001`). A peer
//! that matches no entry is refused and counted by the listener; one that matches an entry
//! without a school is accepted and its records carry no school. The most specific entry wins,
//! so a district-wide range can be refined school by school.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::{Error, Result};

/// One allowed network and the school it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    network: IpAddr,
    prefix: u8,
    school: Option<String>,
}

impl AllowEntry {
    /// The network address (host bits zero).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The school code, when the entry names one.
    pub fn school(&self) -> Option<&str> {
        self.school.as_deref()
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask_u32(self.prefix);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask_u128(self.prefix);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

impl fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)?;
        if let Some(school) = &self.school {
            write!(f, "={school}")?;
        }
        Ok(())
    }
}

impl FromStr for AllowEntry {
    type Err = Error;

    fn from_str(entry: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidSource {
            entry: entry.to_owned(),
            reason,
        };
        let trimmed = entry.trim();
        let (net, school) = match trimmed.split_once('=') {
            Some((net, school)) => {
                let school = school.trim();
                if school.is_empty() {
                    return Err(invalid("the school code after `=` is empty".into()));
                }
                (net.trim(), Some(school.to_owned()))
            }
            None => (trimmed, None),
        };
        let (addr, prefix) = match net.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (net, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| invalid(format!("`{addr}` is not an IP address")))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(invalid(format!("prefix `/{p}` is not between 0 and {max}"))),
            },
        };
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask_u32(prefix)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask_u128(prefix)).into()),
        };
        if network != addr {
            return Err(invalid(format!(
                "host bits are set; did you mean {network}/{prefix}?"
            )));
        }
        Ok(AllowEntry {
            network,
            prefix,
            school,
        })
    }
}

/// The configured sources. Empty means nobody is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<AllowEntry>,
}

impl AllowList {
    /// Parses a comma-separated list of `ADDRESS[/PREFIX][=SCHOOL]` entries.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSource`] naming the first bad entry, or a network listed twice.
    pub fn parse(list: &str) -> Result<Self> {
        Self::from_entries(list.split(',').filter(|e| !e.trim().is_empty()))
    }

    /// Builds the list from separate entries (one per `--allow` flag).
    ///
    /// # Errors
    ///
    /// As [`AllowList::parse`].
    pub fn from_entries<I, S>(entries: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = AllowList::default();
        for entry in entries {
            let parsed: AllowEntry = entry.as_ref().parse()?;
            if list
                .entries
                .iter()
                .any(|e| e.network == parsed.network && e.prefix == parsed.prefix)
            {
                return Err(Error::InvalidSource {
                    entry: entry.as_ref().to_owned(),
                    reason: format!("{}/{} is listed twice", parsed.network, parsed.prefix),
                });
            }
            list.entries.push(parsed);
        }
        Ok(list)
    }

    /// Whether `peer` may send, and its school.
    ///
    /// `None`: not allowed (refuse and count). `Some(None)`: allowed, no school.
    /// `Some(Some(code))`: allowed, records belong to school `code`. The longest matching prefix
    /// decides. IPv4-mapped IPv6 peers (as dual-stack sockets report them) match IPv4 entries.
    pub fn lookup(&self, peer: IpAddr) -> Option<Option<&str>> {
        let peer = canonical(peer);
        self.entries
            .iter()
            .filter(|e| e.contains(peer))
            .max_by_key(|e| e.prefix)
            .map(|e| e.school.as_deref())
    }

    /// The entries, in configuration order.
    pub fn entries(&self) -> &[AllowEntry] {
        &self.entries
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

fn mask_u32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_u128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIST: &str = "10.0.0.0/8, 10.1.0.0/16=1010100001, 10.1.2.0/24=1010100002, \
                        192.0.2.7=1010100003, 2001:db8::/32=1010100004";

    fn check(peer: &str, expected: Option<Option<&str>>) {
        let list = AllowList::parse(LIST).unwrap();
        assert_eq!(list.lookup(peer.parse().unwrap()), expected, "peer {peer}");
    }

    #[test]
    fn lookup() {
        check("10.9.9.9", Some(None));
        check("10.1.9.9", Some(Some("1010100001")));
        check("10.1.2.200", Some(Some("1010100002")));
        check("10.1.3.1", Some(Some("1010100001")));
        check("192.0.2.7", Some(Some("1010100003")));
        check("192.0.2.8", None);
        check("11.0.0.1", None);
        check("::ffff:10.1.2.3", Some(Some("1010100002")));
        check("2001:db8:1::5", Some(Some("1010100004")));
        check("2001:db9::5", None);
    }

    #[test]
    fn order_does_not_decide() {
        let a = AllowList::parse("10.1.2.0/24=B,10.0.0.0/8=A").unwrap();
        let b = AllowList::parse("10.0.0.0/8=A,10.1.2.0/24=B").unwrap();
        for list in [a, b] {
            assert_eq!(list.lookup("10.1.2.3".parse().unwrap()), Some(Some("B")));
            assert_eq!(list.lookup("10.1.3.3".parse().unwrap()), Some(Some("A")));
        }
    }

    #[test]
    fn everything() {
        let list = AllowList::parse("0.0.0.0/0=X").unwrap();
        assert_eq!(list.lookup("203.0.113.1".parse().unwrap()), Some(Some("X")));
        assert_eq!(list.lookup("2001:db8::1".parse().unwrap()), None);
        assert_eq!(
            AllowList::default().lookup("10.0.0.1".parse().unwrap()),
            None
        );
    }

    fn check_err(list: &str, reason_contains: &str) {
        let err = AllowList::parse(list).unwrap_err().to_string();
        assert!(err.contains(reason_contains), "{list}: {err}");
    }

    #[test]
    fn refused() {
        check_err("10.1.0.0/33", "prefix `/33`");
        check_err("10.1.0.0/x", "prefix `/x`");
        check_err("school-a", "not an IP address");
        check_err("10.1.0.0/16=", "school code");
        check_err("10.1.2.3/16", "did you mean 10.1.0.0/16");
        check_err("10.1.0.0/16=A,10.1.0.0/16=B", "listed twice");
    }

    #[test]
    fn display_round_trips() {
        let list = AllowList::parse("10.1.0.0/16=1010100001,192.0.2.7").unwrap();
        let shown: Vec<String> = list.entries().iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.1.0.0/16=1010100001", "192.0.2.7/32"]);
    }

    proptest! {
        #[test]
        fn parse_never_panics(list in "\\PC{0,80}") {
            let _ = AllowList::parse(&list);
        }

        /// Against a model: an address matches `a.b.c.d/p` exactly when its first p bits agree.
        #[test]
        fn v4_prefix_matches_model(net in any::<u32>(), prefix in 0u8..=32, ip in any::<u32>()) {
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
            let network = std::net::Ipv4Addr::from(net & mask);
            let list = AllowList::parse(&format!("{network}/{prefix}=S")).unwrap();
            let expected = (ip & mask == net & mask).then_some(Some("S"));
            prop_assert_eq!(list.lookup(IpAddr::V4(ip.into())), expected);
        }
    }
}
