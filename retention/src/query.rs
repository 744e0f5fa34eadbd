//! Search and attribution over a (possibly live) store.
//!
//! Through [`Store`](crate::Store), a query opens only the segments whose names' event-time
//! range meets its window (the directory listing is the catalogue). It reads only the segments
//! whose time range overlaps it and whose Bloom filter may hold every IP, port, user and MAC it
//! asks for, and within those only the blocks whose time range overlaps; the live tail is
//! always read.

use std::collections::BTreeMap;
use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::batch::Content;
use crate::error::{Error, Result};
use crate::record::{Body, LeaseAction, Record, SessionStatus, Term};
use crate::segment::{self, Chained};
use crate::store::View;

/// What to look for. Every filter given must match; the time is the event time.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Query {
    pub from: Timestamp,
    pub to: Timestamp,
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub mac: Option<String>,
    pub school: Option<String>,
    /// A public address and port a translation used: a NAT record's outside endpoint or a flow's
    /// source after NAT (attribution's NAT step).
    pub endpoint: Option<(IpAddr, u16)>,
    /// An address held by a session, lease or login (attribution's lease/session step).
    pub assigned: Option<IpAddr>,
}

impl Query {
    pub fn between(from: Timestamp, to: Timestamp) -> Query {
        Query {
            from,
            to,
            ..Query::default()
        }
    }

    /// True when `r` matches every filter.
    pub fn matches(&self, r: &Record) -> bool {
        if r.event_time < self.from || r.event_time > self.to {
            return false;
        }
        // Cheap refusals first: the live tail is matched record by record, and most records
        // are flows, which hold no assigned address and no translation for other kinds.
        if self.assigned.is_some() && matches!(r.body, Body::Flow(_) | Body::Nat(_) | Body::Raw(_))
        {
            return false;
        }
        if self.endpoint.is_some() && !matches!(r.body, Body::Flow(_) | Body::Nat(_)) {
            return false;
        }
        if let Some(s) = &self.school
            && r.school.as_deref() != Some(s.as_str())
        {
            return false;
        }
        let (mut ip, mut port, mut user, mut mac, mut endpoint, mut assigned) = (
            self.ip.is_none(),
            self.port.is_none(),
            self.user.is_none(),
            self.mac.is_none(),
            self.endpoint.is_none(),
            self.assigned.is_none(),
        );
        r.for_each_term(|t| match t {
            Term::Ip(v) => ip |= self.ip == Some(v),
            Term::Port(v) => port |= self.port == Some(v),
            Term::User(v) => user |= self.user.as_deref() == Some(v),
            Term::Mac(v) => {
                mac |= self
                    .mac
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case(v))
            }
            // Only the translated endpoint counts (see `endpoint`).
            Term::Endpoint(..) => {}
            Term::Assigned(a) => assigned |= self.assigned == Some(a),
        });
        if !endpoint {
            endpoint = self.endpoint.is_some() && segment::translated(r) == self.endpoint;
        }
        ip && port && user && mac && endpoint && assigned
    }

    /// The Bloom keys a segment must maybe hold to hold a match.
    fn keys(&self) -> Vec<Vec<u8>> {
        // Endpoints are indexed per block only.
        let mut keys = self.people_keys();
        if let Some(ip) = self.ip {
            keys.push(segment::term_key(Term::Ip(ip)));
        }
        if let Some(p) = self.port {
            keys.push(segment::term_key(Term::Port(p)));
        }
        keys
    }

    /// The Bloom key a block's endpoint filter must maybe hold.
    fn endpoint_key(&self) -> Option<Vec<u8>> {
        self.endpoint
            .map(|(a, p)| segment::term_key(Term::Endpoint(a, p)))
    }

    /// The Bloom keys a block's people filter must maybe hold (those of
    /// [`segment::people_level`] terms).
    fn people_keys(&self) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        if let Some(a) = self.assigned {
            keys.push(segment::term_key(Term::Assigned(a)));
        }
        if let Some(u) = &self.user {
            keys.push(segment::term_key(Term::User(u)));
        }
        if let Some(m) = &self.mac {
            keys.push(segment::term_key(Term::Mac(m)));
        }
        keys
    }

    /// The query as the access log and export manifests record it.
    pub fn describe(&self) -> String {
        let mut s = format!("--from {} --to {}", self.from, self.to);
        if let Some(v) = self.ip {
            s += &format!(" --ip {v}");
        }
        if let Some(v) = self.port {
            s += &format!(" --port {v}");
        }
        if let Some(v) = &self.user {
            s += &format!(" --user {v}");
        }
        if let Some(v) = &self.mac {
            s += &format!(" --mac {v}");
        }
        if let Some(v) = &self.school {
            s += &format!(" --school {v}");
        }
        if let Some((a, p)) = self.endpoint {
            s += &format!(" (endpoint {a}:{p})");
        }
        if let Some(a) = self.assigned {
            s += &format!(" (assigned {a})");
        }
        s
    }
}

/// A record found, with its place in the chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// The batch holding it.
    pub batch: u64,
    /// Its number among all records ever stored.
    pub record_no: u64,
    pub record: Record,
}

/// How much a scan read: the point of the segment names and filters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ScanStats {
    /// Segments whose footers were read: every segment of the view; with [`Store::search`] and
    /// [`Store::attribute`], only those whose names' event times meet the query's window.
    ///
    /// [`Store::search`]: crate::Store::search
    /// [`Store::attribute`]: crate::Store::attribute
    pub segments: u64,
    /// Segments whose Bloom filter may hold what was asked, and so whose blocks were looked at.
    pub segments_read: u64,
    /// Blocks decompressed and decoded.
    pub blocks_read: u64,
}

/// Calls `f` with every record matching `q`, in chain order.
pub fn scan(view: &View, q: &Query, mut f: impl FnMut(Hit)) -> Result<ScanStats> {
    let keys = q.keys();
    let endpoint_key = q.endpoint_key();
    let people_keys = q.people_keys();
    let mut stats = ScanStats::default();
    let emit = |c: &Chained, f: &mut dyn FnMut(Hit)| {
        if let Content::Records { records } = &c.batch.content {
            for (i, r) in records.iter().enumerate() {
                if q.matches(r) {
                    f(Hit {
                        batch: c.batch.seq,
                        record_no: c.batch.first_record + i as u64,
                        record: r.clone(),
                    });
                }
            }
        }
    };
    for s in &view.segments {
        stats.segments += 1;
        let idx = &s.index;
        if !idx.event.overlaps(q.from, q.to)
            || q.school.as_ref().is_some_and(|x| !idx.schools.contains(x))
        {
            continue;
        }
        let mut file = match std::fs::File::open(&s.path) {
            Ok(f) => f,
            // Purged between loading the view and reading it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&s.path, e)),
        };
        if !keys.is_empty() {
            let filter = segment::load_filter(&mut file, &s.path, &idx.filter)?;
            if !keys.iter().all(|k| filter.may_contain(k)) {
                continue;
            }
        }
        stats.segments_read += 1;
        for block in &idx.blocks {
            if !block.event.overlaps(q.from, q.to) {
                continue;
            }
            if let Some(k) = &endpoint_key {
                let filter = segment::load_filter(&mut file, &s.path, &block.filter)?;
                if !filter.may_contain(k) {
                    continue;
                }
            }
            if !people_keys.is_empty() {
                let filter = segment::load_filter(&mut file, &s.path, &block.people)?;
                if !people_keys.iter().all(|k| filter.may_contain(k)) {
                    continue;
                }
            }
            stats.blocks_read += 1;
            for c in segment::read_block(&mut file, &s.path, block)? {
                emit(&c, &mut f);
            }
        }
    }
    for c in &view.live {
        emit(c, &mut f);
    }
    Ok(stats)
}

/// The records matching `q`, ordered by event time.
pub fn search(view: &View, q: &Query) -> Result<(Vec<Hit>, ScanStats)> {
    let mut hits = Vec::new();
    let stats = scan(view, q, |h| hits.push(h))?;
    hits.sort_by_key(|h| (h.record.event_time, h.record_no));
    Ok((hits, stats))
}

/// How far before `at` a NAT translation may have been logged and still be the one in use.
pub const NAT_LOOKBACK: SignedDuration = SignedDuration::from_mins(10);
/// How far around `at` leases and sessions are looked for.
pub const LEASE_WINDOW: SignedDuration = SignedDuration::from_hours(24);

/// The answer to "who used this public IP (and port) at that time".
#[derive(Debug, Clone, Serialize)]
pub struct Attribution {
    pub ip: IpAddr,
    pub port: Option<u16>,
    pub at: Timestamp,
    /// The NAT translations (and flows with post-NAT source) that map the public address to an
    /// inside one; empty when the address is not translated.
    pub nat: Vec<Hit>,
    pub inside: Vec<Inside>,
    /// One line a person can read.
    pub summary: String,
    pub scanned: ScanStats,
}

/// What is known of one inside address at the time.
#[derive(Debug, Clone, Serialize)]
pub struct Inside {
    pub ip: IpAddr,
    pub macs: Vec<String>,
    pub users: Vec<String>,
    /// Leases of the inside IP in force at the time.
    pub leases: Vec<Hit>,
    /// Sessions with the inside IP open at the time.
    pub sessions: Vec<Hit>,
    /// Sessions and authentications of the MACs, when no session named the user by IP.
    pub by_mac: Vec<Hit>,
}

/// Follows public IP:port at `at` -> NAT -> inside IP -> lease/session -> MAC and user.
pub fn attribute(view: &View, ip: IpAddr, port: Option<u16>, at: Timestamp) -> Result<Attribution> {
    let mut scanned = ScanStats::default();
    let mut add = |s: ScanStats| {
        scanned.segments = scanned.segments.max(s.segments);
        scanned.segments_read += s.segments_read;
        scanned.blocks_read += s.blocks_read;
    };
    let window = Query::between(at - NAT_LOOKBACK, at + SignedDuration::from_mins(1));
    let q = match port {
        Some(p) => Query {
            endpoint: Some((ip, p)),
            ..window
        },
        None => Query {
            ip: Some(ip),
            ..window
        },
    };
    let (hits, s) = search(view, &q)?;
    add(s);
    let translates = |h: &Hit| match &h.record.body {
        Body::Nat(n) => n.outside_ip == ip && (port.is_none() || n.outside_port == port),
        Body::Flow(x) => x.nat_src_ip == Some(ip) && (port.is_none() || x.nat_src_port == port),
        _ => false,
    };
    let mut nat: Vec<Hit> = hits.into_iter().filter(translates).collect();
    // The translation in force is the last one logged at or before `at`, else the first after.
    let inside_of = |h: &Hit| match &h.record.body {
        Body::Nat(n) => n.inside_ip,
        Body::Flow(x) => x.src_ip,
        _ => ip,
    };
    let chosen: Vec<IpAddr> = match nat
        .iter()
        .rev()
        .find(|h| h.record.event_time <= at)
        .or(nat.first())
    {
        Some(h) => {
            let t = h.record.event_time;
            let mut v: Vec<IpAddr> = nat
                .iter()
                .filter(|x| x.record.event_time == t)
                .map(inside_of)
                .collect();
            v.dedup();
            v
        }
        None => vec![ip],
    };
    nat.retain(|h| chosen.contains(&inside_of(h)));

    let mut inside = Vec::new();
    for inside_ip in chosen {
        let q = Query {
            assigned: Some(inside_ip),
            ..Query::between(at - LEASE_WINDOW, at + LEASE_WINDOW)
        };
        let (hits, s) = search(view, &q)?;
        add(s);
        let leases = leases_in_force(&hits, inside_ip, at);
        let sessions = sessions_open(
            &hits,
            |r| match &r.body {
                Body::Session(x) => x.ip == Some(inside_ip),
                _ => false,
            },
            at,
        );
        let mut macs: Vec<String> = Vec::new();
        let mut users: Vec<String> = Vec::new();
        for h in leases.iter().chain(&sessions) {
            match &h.record.body {
                Body::Lease(l) => push_unique(&mut macs, l.mac.to_ascii_lowercase()),
                Body::Session(x) => {
                    if let Some(m) = &x.mac {
                        push_unique(&mut macs, m.to_ascii_lowercase());
                    }
                    push_unique(&mut users, x.user.clone());
                }
                _ => {}
            }
        }
        let mut by_mac = Vec::new();
        if users.is_empty() {
            for mac in macs.clone() {
                let q = Query {
                    mac: Some(mac.clone()),
                    ..Query::between(at - LEASE_WINDOW, at + LEASE_WINDOW)
                };
                let (hits, s) = search(view, &q)?;
                add(s);
                let mut found = sessions_open(
                    &hits,
                    |r| matches!(&r.body, Body::Session(x) if x.mac.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(&mac))),
                    at,
                );
                // A successful login from the MAC before the time also names the user.
                if let Some(h) = hits.iter().rev().find(|h| {
                    h.record.event_time <= at
                        && matches!(&h.record.body, Body::Auth(a) if a.success)
                }) {
                    found.push(h.clone());
                }
                for h in &found {
                    match &h.record.body {
                        Body::Session(x) => push_unique(&mut users, x.user.clone()),
                        Body::Auth(a) => push_unique(&mut users, a.user.clone()),
                        _ => {}
                    }
                }
                by_mac.extend(found);
            }
        }
        inside.push(Inside {
            ip: inside_ip,
            macs,
            users,
            leases,
            sessions,
            by_mac,
        });
    }
    let port_s = port.map_or(String::new(), |p| format!(":{p}"));
    let at_s = crate::store::shown(at);
    let summary = match inside.iter().find(|i| !i.users.is_empty()) {
        Some(i) => format!(
            "{ip}{port_s} at {at_s} was used by {} (inside {}{})",
            i.users.join(", "),
            i.ip,
            if i.macs.is_empty() {
                String::new()
            } else {
                format!(", MAC {}", i.macs.join(", "))
            }
        ),
        None => match inside.iter().find(|i| !i.macs.is_empty()) {
            Some(i) => format!(
                "{ip}{port_s} at {at_s} was inside {} with MAC {}; no session names a user",
                i.ip,
                i.macs.join(", ")
            ),
            None => format!(
                "{ip}{port_s} at {at_s}: no lease or session names who used it (inside {})",
                inside
                    .iter()
                    .map(|i| i.ip.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    Ok(Attribution {
        ip,
        port,
        at,
        nat,
        inside,
        summary,
        scanned,
    })
}

fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

/// The last assign/renew of `ip` at or before `at`, unless it ended or was released before.
fn leases_in_force(hits: &[Hit], ip: IpAddr, at: Timestamp) -> Vec<Hit> {
    let mut last: Option<&Hit> = None;
    for h in hits.iter().filter(|h| h.record.event_time <= at) {
        if let Body::Lease(l) = &h.record.body
            && l.ip == ip
        {
            last = match l.action {
                LeaseAction::Assign | LeaseAction::Renew => Some(h),
                LeaseAction::Release | LeaseAction::Expire => None,
            };
        }
    }
    last.filter(|h| match &h.record.body {
        Body::Lease(l) => l.end.is_none_or(|e| e >= at),
        _ => false,
    })
    .into_iter()
    .cloned()
    .collect()
}

/// Sessions (grouped by session id, else user) that started by `at` and had not stopped before.
fn sessions_open(hits: &[Hit], select: impl Fn(&Record) -> bool, at: Timestamp) -> Vec<Hit> {
    let mut groups: BTreeMap<String, Vec<&Hit>> = BTreeMap::new();
    for h in hits.iter().filter(|h| select(&h.record)) {
        if let Body::Session(s) = &h.record.body {
            let key = s.session_id.clone().unwrap_or_else(|| s.user.clone());
            groups.entry(key).or_default().push(h);
        }
    }
    let mut out = Vec::new();
    for (_, g) in groups {
        let started = g.iter().any(|h| h.record.event_time <= at);
        let stopped_before = g.iter().any(|h| {
            h.record.event_time < at
                && matches!(&h.record.body, Body::Session(s) if s.status == SessionStatus::Stop)
        });
        if started && !stopped_before {
            out.extend(g.into_iter().cloned());
        }
    }
    out
}

impl crate::store::Store {
    /// Searches, after recording who asked what in the access log.
    pub fn search(&self, actor: &str, q: &Query) -> Result<(Vec<Hit>, ScanStats)> {
        self.log_access(actor, "search", &q.describe())?;
        search(&self.view_between(q.from, q.to)?, q)
    }

    /// Attributes, after recording who asked what in the access log.
    pub fn attribute(
        &self,
        actor: &str,
        ip: IpAddr,
        port: Option<u16>,
        at: Timestamp,
    ) -> Result<Attribution> {
        let port_s = port.map_or(String::new(), |p| format!(" --port {p}"));
        self.log_access(actor, "attribute", &format!("--ip {ip}{port_s} --at {at}"))?;
        // Every step looks within the lease window around `at` (the NAT window lies inside it).
        let view = self.view_between(at - LEASE_WINDOW, at + LEASE_WINDOW)?;
        attribute(&view, ip, port, at)
    }
}
