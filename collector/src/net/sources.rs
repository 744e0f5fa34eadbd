//! Who may send, what each input received, refused and dropped, and which sources went quiet.
//!
//! Every count is kept three times: in atomics per input and in a map per (input, source),
//! which a [`crate::net::RunningCollector`] shows, tests read and the counters snapshot
//! (`counters.json`, shown by `khetnet-retention status`) copies; and through the `metrics`
//! facade, which the server exports at `/metrics` as `khetnet_collector_<what>_total{input,
//! source}`. Refused peers are counted per input only in the metrics: anyone can spoof a UDP
//! source address, so a label per refused address would let a stranger grow the metrics
//! without bound; the snapshot names at most [`REFUSED_LISTED`] of them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use khetnet_retention::counters::{REFUSED_LISTED, Refused, SourceCounters, Tally};
use khetnet_retention::record::Input;

use crate::source::AllowList;

/// The inputs, in the order they are reported.
pub const INPUTS: [Input; 7] = [
    Input::SyslogUdp,
    Input::SyslogTcp,
    Input::SyslogTls,
    Input::Relp,
    Input::Radius,
    Input::Netflow,
    Input::Ipfix,
];

/// What is counted per input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Messages, datagrams or RADIUS requests received from allowed sources.
    Received,
    /// Records handed to the writer.
    Records,
    /// Input that was not understood (kept raw where it could be) or failed its check.
    Malformed,
    /// Records lost because the writer was behind (UDP only).
    Dropped,
    /// Datagrams or connections from sources not allowed.
    Refused,
    /// Connections accepted (TCP, TLS, RELP).
    Connections,
    /// Bytes received from allowed sources (after TLS).
    Bytes,
    /// Records the store made durable (counted by the writer).
    Stored,
    /// Of those stored, records kept `raw` (no decoder understood them).
    Raw,
}

const COUNTS: [Count; 9] = [
    Count::Received,
    Count::Records,
    Count::Malformed,
    Count::Dropped,
    Count::Refused,
    Count::Connections,
    Count::Bytes,
    Count::Stored,
    Count::Raw,
];

impl Count {
    fn metric(self) -> &'static str {
        match self {
            Count::Received => "khetnet_collector_received_total",
            Count::Records => "khetnet_collector_records_total",
            Count::Malformed => "khetnet_collector_malformed_total",
            Count::Dropped => "khetnet_collector_dropped_total",
            Count::Refused => "khetnet_collector_refused_total",
            Count::Connections => "khetnet_collector_connections_total",
            Count::Bytes => "khetnet_collector_bytes_total",
            Count::Stored => "khetnet_collector_stored_total",
            Count::Raw => "khetnet_collector_raw_total",
        }
    }
}

/// The name of an input as in the configuration (`syslog_udp`, `relp`, ...).
pub fn input_name(input: Input) -> &'static str {
    match input {
        Input::SyslogUdp => "syslog_udp",
        Input::SyslogTcp => "syslog_tcp",
        Input::SyslogTls => "syslog_tls",
        Input::Relp => "relp",
        Input::Radius => "radius",
        Input::Netflow => "netflow",
        Input::Ipfix => "ipfix",
        Input::Import => "import",
        Input::Store => "store",
    }
}

fn index(input: Input) -> usize {
    INPUTS.iter().position(|i| *i == input).unwrap_or(0)
}

fn tally(c: &Counts) -> Tally {
    let get = |count: Count| c[COUNTS.iter().position(|x| *x == count).unwrap_or(0)];
    Tally {
        received: get(Count::Received),
        bytes: get(Count::Bytes),
        records: get(Count::Records),
        stored: get(Count::Stored),
        raw: get(Count::Raw),
        malformed: get(Count::Malformed),
        dropped: get(Count::Dropped),
        refused: get(Count::Refused),
        connections: get(Count::Connections),
    }
}

/// A source that has been quiet too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silent {
    pub source: IpAddr,
    pub school: Option<String>,
    /// How long since its last message; `None`: never heard since the collector started.
    pub quiet_for: Option<Duration>,
}

#[derive(Debug)]
struct Seen {
    school: Option<String>,
    last: Instant,
    /// `last` by the wall clock, for the snapshot.
    heard: Timestamp,
}

/// The counts of one input, in [`COUNTS`] order.
type Counts = [u64; COUNTS.len()];

/// One (input, source)'s counts and its metrics handles, each made at its first count:
/// counting is then an atomic add and an increment, with no lock held and no label built.
#[derive(Debug)]
struct SourceCounts {
    input: Input,
    label: String,
    counts: [AtomicU64; COUNTS.len()],
    metrics: [std::sync::OnceLock<metrics::Counter>; COUNTS.len()],
}

impl SourceCounts {
    fn new(input: Input, source: IpAddr) -> SourceCounts {
        SourceCounts {
            input,
            label: source.to_string(),
            counts: Default::default(),
            metrics: Default::default(),
        }
    }

    fn add(&self, i: usize, n: u64) {
        self.counts[i].fetch_add(n, Ordering::Relaxed);
        self.metrics[i]
            .get_or_init(|| {
                metrics::counter!(COUNTS[i].metric(), "input" => input_name(self.input), "source" => self.label.clone())
            })
            .increment(n);
    }

    fn load(&self) -> Counts {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }
}

/// The allow-list, the counters and when each source was last heard.
#[derive(Debug)]
pub struct Sources {
    allow: AllowList,
    counts: [[AtomicU64; COUNTS.len()]; INPUTS.len()],
    seen: Mutex<HashMap<IpAddr, Seen>>,
    per_source: RwLock<HashMap<(Input, IpAddr), Arc<SourceCounts>>>,
    refused: Mutex<HashMap<(Input, IpAddr), (u64, Timestamp)>>,
    started: Instant,
}

impl Sources {
    pub fn new(allow: AllowList) -> Sources {
        Sources {
            allow,
            counts: Default::default(),
            seen: Mutex::new(HashMap::new()),
            per_source: RwLock::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            started: Instant::now(),
        }
    }

    /// The allow-list.
    pub fn allow_list(&self) -> &AllowList {
        &self.allow
    }

    /// Whether `peer` may send on `input`: `Some(school)` when allowed (and it is marked as
    /// heard now), `None` when refused (and counted).
    pub fn admit(&self, input: Input, peer: IpAddr) -> Option<Option<String>> {
        let Some(school) = self.allow.lookup(peer) else {
            self.refuse(input, peer);
            tracing::debug!(input = input_name(input), peer = %peer, "refused a source not in the allow-list");
            return None;
        };
        let school = school.map(str::to_owned);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(
            peer,
            Seen {
                school: school.clone(),
                last: Instant::now(),
                heard: Timestamp::now(),
            },
        );
        Some(school)
    }

    /// Counts a datagram or connection from `peer` refused on `input`; the first
    /// [`REFUSED_LISTED`] addresses are also remembered by name for the snapshot.
    pub fn refuse(&self, input: Input, peer: IpAddr) {
        self.add(input, None, Count::Refused, 1);
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        let listed = refused.len();
        match refused.get_mut(&(input, peer)) {
            Some((n, last)) => {
                *n += 1;
                *last = Timestamp::now();
            }
            None if listed < REFUSED_LISTED => {
                refused.insert((input, peer), (1, Timestamp::now()));
            }
            None => {}
        }
    }

    /// Adds `n` to a count of `input` (and of `source`, in the metrics).
    pub fn add(&self, input: Input, source: Option<IpAddr>, count: Count, n: u64) {
        if n == 0 {
            return;
        }
        let i = COUNTS.iter().position(|c| *c == count).unwrap_or(0);
        self.counts[index(input)][i].fetch_add(n, Ordering::Relaxed);
        match source {
            Some(source) => {
                self.source_counts(input, source).add(i, n);
            }
            None => metrics::counter!(count.metric(), "input" => input_name(input)).increment(n),
        }
    }

    /// The counts of `source` on `input`, made on first use.
    fn source_counts(&self, input: Input, source: IpAddr) -> Arc<SourceCounts> {
        let key = (input, source);
        if let Some(counts) = self
            .per_source
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return counts.clone();
        }
        self.per_source
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert_with(|| Arc::new(SourceCounts::new(input, source)))
            .clone()
    }

    /// The counts of `input` so far, as the snapshot shows them.
    pub fn tally(&self, input: Input) -> Tally {
        let counts: Counts =
            std::array::from_fn(|i| self.counts[index(input)][i].load(Ordering::Relaxed));
        tally(&counts)
    }

    /// A count of `input` from `source` so far.
    pub fn get_source(&self, input: Input, source: IpAddr, count: Count) -> u64 {
        let i = COUNTS.iter().position(|c| *c == count).unwrap_or(0);
        self.per_source
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(input, source))
            .map_or(0, |c| c.counts[i].load(Ordering::Relaxed))
    }

    /// Every source's counts, by input and address.
    pub fn source_tallies(&self) -> Vec<SourceCounters> {
        let per_source: Vec<((Input, IpAddr), Counts)> = self
            .per_source
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(key, counts)| (*key, counts.load()))
            .collect();
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<SourceCounters> = per_source
            .into_iter()
            .map(|((input, source), counts)| SourceCounters {
                input: input_name(input).to_owned(),
                source,
                school: seen.get(&source).and_then(|s| s.school.clone()),
                last_heard: seen.get(&source).map(|s| s.heard),
                tally: tally(&counts),
            })
            .collect();
        out.sort_by(|a, b| (&a.input, a.source).cmp(&(&b.input, b.source)));
        out
    }

    /// The refused addresses remembered by name.
    pub fn refused(&self) -> Vec<Refused> {
        let mut out: Vec<Refused> = self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((input, source), (count, last))| Refused {
                input: input_name(*input).to_owned(),
                source: *source,
                count: *count,
                last: Some(*last),
            })
            .collect();
        out.sort_by(|a, b| (&a.input, a.source).cmp(&(&b.input, b.source)));
        out
    }

    /// A count of `input` so far.
    pub fn get(&self, input: Input, count: Count) -> u64 {
        let i = COUNTS.iter().position(|c| *c == count).unwrap_or(0);
        self.counts[index(input)][i].load(Ordering::Relaxed)
    }

    /// Sources quiet for longer than `after` at `now`: those heard before, and single-address
    /// entries of the allow-list never heard since the collector started that long ago.
    pub fn silent(&self, after: Duration, now: Instant) -> Vec<Silent> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut silent: Vec<Silent> = seen
            .iter()
            .filter_map(|(ip, s)| {
                let quiet = now.saturating_duration_since(s.last);
                (quiet > after).then(|| Silent {
                    source: *ip,
                    school: s.school.clone(),
                    quiet_for: Some(quiet),
                })
            })
            .collect();
        if now.saturating_duration_since(self.started) > after {
            for entry in self.allow.entries() {
                let host = entry.prefix() == if entry.network().is_ipv4() { 32 } else { 128 };
                if host && !seen.contains_key(&entry.network()) {
                    silent.push(Silent {
                        source: entry.network(),
                        school: entry.school().map(str::to_owned),
                        quiet_for: None,
                    });
                }
            }
        }
        silent.sort_by_key(|s| s.source);
        silent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_only_allowed_sources_and_counts_the_rest() {
        let sources =
            Sources::new(AllowList::from_entries(["10.1.0.0/16=S1", "192.0.2.7"]).unwrap());
        assert_eq!(
            sources.admit(Input::SyslogUdp, "10.1.2.3".parse().unwrap()),
            Some(Some("S1".into()))
        );
        assert_eq!(
            sources.admit(Input::SyslogUdp, "192.0.2.7".parse().unwrap()),
            Some(None)
        );
        assert_eq!(
            sources.admit(Input::SyslogUdp, "192.0.2.8".parse().unwrap()),
            None
        );
        assert_eq!(
            sources.admit(Input::Radius, "10.2.0.1".parse().unwrap()),
            None
        );
        assert_eq!(sources.get(Input::SyslogUdp, Count::Refused), 1);
        assert_eq!(sources.get(Input::Radius, Count::Refused), 1);
        assert_eq!(sources.get(Input::SyslogTcp, Count::Refused), 0);
    }

    #[test]
    fn reports_sources_quiet_too_long() {
        let sources = Sources::new(
            AllowList::from_entries(["10.1.0.0/16=S1", "192.0.2.7=S2", "192.0.2.9=S3"]).unwrap(),
        );
        let start = sources.started;
        sources.admit(Input::SyslogUdp, "10.1.2.3".parse().unwrap());
        sources.admit(Input::SyslogUdp, "192.0.2.9".parse().unwrap());
        let hour = Duration::from_secs(3600);
        // Nothing is silent before the threshold has passed.
        assert_eq!(
            sources.silent(hour, start + Duration::from_secs(60)),
            vec![]
        );
        let later = Instant::now() + hour + Duration::from_secs(1);
        let silent = sources.silent(hour, later);
        let shown: Vec<String> = silent
            .iter()
            .map(|s| format!("{} {:?} {}", s.source, s.school, s.quiet_for.is_some()))
            .collect();
        assert_eq!(
            shown,
            [
                "10.1.2.3 Some(\"S1\") true",
                "192.0.2.7 Some(\"S2\") false",
                "192.0.2.9 Some(\"S3\") true"
            ]
        );
        // A source heard again is no longer silent.
        sources.admit(Input::SyslogUdp, "192.0.2.9".parse().unwrap());
        assert!(sources.silent(hour, Instant::now()).is_empty());
    }
}
