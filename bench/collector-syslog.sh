#!/usr/bin/env bash
# Syslog ingest: khetnet-collector against rsyslog and syslog-ng, measured in the same run.
#
# Each daemon in turn is started fresh on a loopback port and driven by syslog-ng's `loggen`
# (200-byte messages): over TCP with 1 and then 4 active connections, then over UDP at a fixed
# offered rate. rsyslog (omfile) and syslog-ng (file destination) write the stream to a plain
# file; khetnet-collector parses it into the durable, hash-chained retention store (every batch
# fsynced before it counts). For each run it reports:
#
#   msg/s       messages / (time from loggen's start until the last message is in the
#               destination): for a file, when it stopped growing; for the store, when the
#               last batch's append returned (the writer's `batch stored` debug event). The
#               count is checked afterwards: `wc -l`, or `khetnet-retention status` on the store.
#   CPU-s/M     the daemon's utime+stime (/proc/PID/stat) over the run, per million messages.
#   RSS MB      the daemon's peak resident memory (VmHWM), fresh process per run.
#   UDP loss    messages loggen sent minus messages stored.
#
# Then the ratios khetnet/rsyslog and khetnet/syslog-ng. Installs only what is missing: rsyslog
# from apt; syslog-ng-core (which has loggen) and the libraries it needs that are not installed
# are fetched with `apt-get download` and unpacked with `dpkg -x` into BENCH_CACHE (rsyslog and
# syslog-ng-core conflict as packages), run from there with LD_LIBRARY_PATH.
#
# Every output goes to a temporary directory that is removed at the end (BENCH_KEEP=1 keeps
# it). Traffic only to 127.0.0.1; each load is bounded by count (BENCH_MESSAGES) and time.
#
#   bench/collector-syslog.sh                       # the full run
#   BENCH_MESSAGES=300000 bench/collector-syslog.sh # a short one
#
# Settings (environment):
#   BENCH_MESSAGES   messages per TCP run, spread over the connections (default 2000000)
#   BENCH_UDP_MESSAGES messages per UDP run (default 1000000)
#   BENCH_UDP_RATE   offered UDP rate, msg/s (default: rsyslog's 1-connection TCP rate here)
#   BENCH_SECONDS    the most one loggen run may take (default 120)
#   BENCH_DAEMONS    which to run (default "rsyslog syslog-ng khetnet")
#   BENCH_CACHE      where syslog-ng is unpacked (default /var/cache/khetnet-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

MESSAGES=${BENCH_MESSAGES:-2000000}
UDP_MESSAGES=${BENCH_UDP_MESSAGES:-1000000}
UDP_RATE=${BENCH_UDP_RATE:-}
SECONDS_MAX=${BENCH_SECONDS:-120}
DAEMONS=${BENCH_DAEMONS:-rsyslog syslog-ng khetnet}
CACHE=${BENCH_CACHE:-/var/cache/khetnet-bench}
SIZE=200
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'collector-syslog.sh: %s\n' "$*" >&2; exit 1; }
# Microseconds since the epoch, without a subprocess.
now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }

# --- what the bench needs ------------------------------------------------------------------

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

install_rsyslog() {
  command -v rsyslogd >/dev/null && return
  say "apt-get install rsyslog"
  apt-get update -qq
  # Do not start the system's rsyslog: the bench starts its own.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends rsyslog >/dev/null
  rm -f /usr/sbin/policy-rc.d
}

# The first alternative of each dependency of package $1.
depends_of() {
  apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
    --no-enhances "$1" 2>/dev/null |
    awk '/^  [|]?Depends:/ { if (!skip) print $2; skip = ($1 ~ /^[|]/) }' |
    grep -v '^<' || true
}

install_syslog_ng() {
  ROOT=$CACHE/root
  export LD_LIBRARY_PATH=$ROOT/usr/lib/syslog-ng:$ROOT/usr/lib/x86_64-linux-gnu
  export SYSLOGNG_PREFIX=$ROOT/usr  # where loggen finds its plugins
  SYSLOG_NG=$ROOT/usr/sbin/syslog-ng
  LOGGEN=$ROOT/usr/bin/loggen
  if [ ! -x "$SYSLOG_NG" ] || [ ! -x "$LOGGEN" ]; then
    say "apt-get download syslog-ng-core and its missing libraries into $CACHE"
    mkdir -p "$CACHE/debs" "$ROOT"
    apt-cache show syslog-ng-core >/dev/null 2>&1 || apt-get update -qq
    # Packages to fetch: syslog-ng-core and, transitively, each dependency not installed.
    local queue=(syslog-ng-core) seen=" " p
    while [ ${#queue[@]} -gt 0 ]; do
      p=${queue[0]}
      queue=("${queue[@]:1}")
      case "$seen" in *" $p "*) continue ;; esac
      seen="$seen$p "
      if [ "$p" != syslog-ng-core ] && installed "$p"; then continue; fi
      (cd "$CACHE/debs" && apt-get download -qq "$p" 2>/dev/null) || die "apt-get download $p failed"
      for d in $(depends_of "$p"); do queue+=("$d"); done
    done
    for deb in "$CACHE"/debs/*.deb; do dpkg -x "$deb" "$ROOT"; done
  fi
  if ldd "$SYSLOG_NG" "$LOGGEN" "$ROOT"/usr/lib/syslog-ng/3.*/libafsocket.so \
    "$ROOT"/usr/lib/syslog-ng/3.*/libaffile.so | grep -q "not found"; then
    die "syslog-ng in $CACHE misses libraries (ldd says 'not found'); remove $CACHE and run again"
  fi
  MODULES=$(dirname "$ROOT"/usr/lib/syslog-ng/3.*/libaffile.so)
  SYSLOG_NG_VERSION=$(basename "$MODULES")
}

build_khetnet() {
  say "cargo build --release -p khetnet-collector -p khetnet-retention"
  cargo build --release -q -p khetnet-collector -p khetnet-retention
  COLLECTOR=$TARGET_DIR/release/khetnet-collector
  RETENTION=$TARGET_DIR/release/khetnet-retention
}

# --- one daemon ----------------------------------------------------------------------------

# A loopback port free for both TCP and UDP.
free_port() {
  local p
  for p in $(shuf -i 20000-59999 -n 100); do
    if [ -z "$(ss -Htuln "sport = :$p")" ]; then echo "$p"; return; fi
  done
  die "no free port"
}

# Starts daemon $1 listening on $PORT (TCP and UDP), output in $RUN; sets PID.
start_daemon() {
  local name=$1
  case "$name" in
    rsyslog)
      cat > "$RUN/rsyslog.conf" <<EOF
global(workDirectory="$RUN")
module(load="imtcp")
module(load="imudp")
input(type="imtcp" address="127.0.0.1" port="$PORT")
input(type="imudp" address="127.0.0.1" port="$PORT")
action(type="omfile" file="$RUN/out.log")
EOF
      rsyslogd -n -f "$RUN/rsyslog.conf" -i "$RUN/rsyslog.pid" > "$RUN/daemon.err" 2>&1 &
      ;;
    syslog-ng)
      # flow-control: TCP senders are held back rather than messages dropped when the
      # destination lags, as for the other two.
      cat > "$RUN/syslog-ng.conf" <<EOF
@version: ${SYSLOG_NG_VERSION}
options { stats-freq(0); };
source s_net {
  network(ip("127.0.0.1") port($PORT) transport("tcp") max-connections(10) log-iw-size(10000));
  network(ip("127.0.0.1") port($PORT) transport("udp"));
};
destination d_file { file("$RUN/out.log"); };
log { source(s_net); destination(d_file); flags(flow-control); };
EOF
      "$SYSLOG_NG" -F -f "$RUN/syslog-ng.conf" --module-path="$MODULES" -R "$RUN/syslog-ng.persist" \
        -c "$RUN/syslog-ng.ctl" -p "$RUN/syslog-ng.pid" > "$RUN/daemon.err" 2>&1 &
      ;;
    khetnet)
      cat > "$RUN/khetnet.toml" <<EOF
[collector]
enabled = true
syslog_udp = "127.0.0.1:$PORT"
syslog_tcp = "127.0.0.1:$PORT"
syslog_tls = ""
relp = ""
radius = ""
netflow = ""
ipfix = ""
allow = ["127.0.0.1/32"]

[retention]
store = "$RUN/store"
EOF
      # The writer's `batch stored` events say when each append returned, and how much it held.
      NO_COLOR=1 RUST_LOG=info,khetnet_collector::net::writer=debug \
        "$COLLECTOR" run --config "$RUN/khetnet.toml" > "$RUN/daemon.out" 2> "$RUN/daemon.err" &
      ;;
  esac
  PID=$!
  local i
  for i in $(seq 1 150); do
    [ -n "$(ss -Htln "sport = :$PORT")" ] && [ -n "$(ss -Huln "sport = :$PORT")" ] && return
    kill -0 "$PID" 2>/dev/null || { cat "$RUN/daemon.err" >&2; die "$name did not start"; }
    sleep 0.1
  done
  die "$name is not listening on $PORT after 15 s"
}

stop_daemon() {
  kill -TERM "$PID" 2>/dev/null || true
  local i
  for i in $(seq 1 300); do
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
peak_rss_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# What the destination holds, for watching it grow: bytes of the file, or the records the
# store's appends have returned for.
progress() {
  case "$1" in
    khetnet) sed -n 's/.*batch stored records=\([0-9]*\).*/\1/p' "$RUN/daemon.err" | awk '{ s += $1 } END { print s + 0 }' ;;
    *) stat -c %s "$RUN/out.log" 2>/dev/null || echo 0 ;;
  esac
}

# The time (µs) the last message reached the destination.
last_write_us() {
  case "$1" in
    khetnet)
      local ts
      ts=$(grep 'batch stored' "$RUN/daemon.err" | tail -1 | awk '{ print $1 }')
      date -d "$ts" +%s%6N
      ;;
    *) stat -c %.6Y "$RUN/out.log" | tr -d . ;;
  esac
}

# Messages in the destination, counted after the daemon stopped.
stored_count() {
  case "$1" in
    khetnet)
      "$RETENTION" --store "$RUN/store" status --json | grep -o '"records": *[0-9]*' | head -1 | grep -o '[0-9]*$'
      ;;
    *) wc -l < "$RUN/out.log" ;;
  esac
}

# Runs loggen ($1: tcp or udp, $2: connections, $3: messages per connection, $4: rate per
# connection) against daemon $5 until everything sent is in the destination, or the
# destination has not grown for a while after loggen ended. Prints one result line.
measure() {
  local proto=$1 conns=$2 per=$3 rate=$4 name=$5
  RUN=$WORK/$name-$proto-$conns
  mkdir -p "$RUN"
  PORT=$(free_port)
  start_daemon "$name"
  sleep 0.5
  local flag=-S
  [ "$proto" = udp ] && flag=-D
  local ticks0 t0 t_end
  ticks0=$(cpu_ticks "$PID")
  t0=$(now_us)
  "$LOGGEN" -i "$flag" --size "$SIZE" -r "$rate" -n "$per" -I "$SECONDS_MAX" \
    --active-connections "$conns" 127.0.0.1 "$PORT" > "$RUN/loggen.out" 2>&1 &
  local sender=$!
  # Watch the destination: done when loggen has ended and nothing changed for a while
  # (TCP: and everything sent has arrived).
  local last=-1 changed cur quiet_us
  changed=$(now_us)
  local want=$((conns * per))
  while :; do
    cur=$(progress "$name")
    local t
    t=$(now_us)
    if [ "$cur" != "$last" ]; then last=$cur; changed=$t; fi
    if ! kill -0 "$sender" 2>/dev/null; then
      quiet_us=$((t - changed))
      if [ "$name" = khetnet ] && [ "$cur" -ge "$want" ]; then break; fi
      [ "$quiet_us" -gt 3000000 ] && break
      [ "$proto" = tcp ] && [ "$name" != khetnet ] && [ "$quiet_us" -gt 500000 ] &&
        [ "$(wc -l < "$RUN/out.log")" -ge "$want" ] && break
    fi
    if [ $((t - t0)) -gt $(((SECONDS_MAX + 60) * 1000000)) ]; then
      say "$name: gave up waiting"
      break
    fi
    sleep 0.05
  done
  wait "$sender" || true
  local ticks1 rss
  ticks1=$(cpu_ticks "$PID")
  rss=$(peak_rss_kb "$PID")
  t_end=$(last_write_us "$name")
  stop_daemon
  local sent stored
  sent=$(sed -n 's/.*average rate.*count=\([0-9]*\),.*/\1/p' "$RUN/loggen.out" | tail -1)
  sent=${sent:-$want}
  stored=$(stored_count "$name")
  awk -v n="$name" -v p="$proto" -v c="$conns" -v sent="$sent" -v stored="$stored" \
    -v us=$((t_end - t0)) -v ticks=$((ticks1 - ticks0)) -v hz="$(getconf CLK_TCK)" -v rss="$rss" \
    'BEGIN {
       secs = us / 1e6; if (secs <= 0) secs = 1e-6
       printf "%s %s %d %d %d %.0f %.2f %.1f %.2f\n", n, p, c, sent, stored, stored / secs,
         (ticks / hz) / (stored > 0 ? stored / 1e6 : 1), rss / 1024, secs
     }'
  rm -rf "$RUN"
}

# --- the runs ------------------------------------------------------------------------------

install_rsyslog
install_syslog_ng
build_khetnet
WORK=$(mktemp -d /tmp/khetnet-bench.XXXXXX)
if [ -z "${BENCH_KEEP:-}" ]; then trap 'rm -rf "$WORK"' EXIT; else say "outputs kept in $WORK"; fi
RESULTS=$WORK/results
: > "$RESULTS"

for conns in 1 4; do
  for d in $DAEMONS; do
    say "$d: TCP, $conns connection(s), $MESSAGES messages"
    measure tcp "$conns" $((MESSAGES / conns)) 100000000 "$d" | tee -a "$RESULTS" >&2
  done
done
if [ -z "$UDP_RATE" ]; then
  UDP_RATE=$(awk '$1 == "rsyslog" && $2 == "tcp" && $3 == 1 { print int($6 / 1000) * 1000 }' "$RESULTS")
  UDP_RATE=${UDP_RATE:-200000}
fi
for d in $DAEMONS; do
  say "$d: UDP at $UDP_RATE msg/s, $UDP_MESSAGES messages"
  measure udp 1 "$UDP_MESSAGES" "$UDP_RATE" "$d" | tee -a "$RESULTS" >&2
done

echo
echo "Syslog ingest, loggen --size $SIZE over loopback; $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
echo "rsyslog $(rsyslogd -v | head -1 | awk '{ print $2 }' | tr -d ,) (omfile), syslog-ng $("$SYSLOG_NG" -V 2>/dev/null | head -1 | awk '{ print $3 }') (file), khetnet-collector (retention store)"
echo
awk '$2 == "tcp"' "$RESULTS" | awk 'BEGIN {
    printf "%-10s %5s %10s %10s %10s %9s %8s\n", "TCP", "conns", "messages", "stored", "msg/s", "CPU-s/M", "RSS MB"
  }
  { printf "%-10s %5d %10d %10d %10d %9.2f %8.1f\n", $1, $3, $4, $5, $6, $7, $8 }'
echo
awk '$2 == "udp"' "$RESULTS" | awk -v rate="$UDP_RATE" 'BEGIN {
    printf "%-10s %10s %10s %10s %10s %8s %8s\n", "UDP", "offered/s", "sent", "stored", "lost", "loss %", "RSS MB"
  }
  { lost = $4 - $5; printf "%-10s %10d %10d %10d %10d %8.2f %8.1f\n", $1, rate, $4, $5, lost, ($4 > 0 ? 100 * lost / $4 : 0), $8 }'
echo
awk '$2 == "tcp" { rate[$1, $3] = $6; cpu[$1, $3] = $7; rss[$1, $3] = $8; seen[$1] = 1 }
  END {
    if (!seen["khetnet"]) exit
    for (c = 1; c <= 4; c += 3) {
      for (peer in seen) {
        if (peer == "khetnet" || !((peer, c) in rate) || rate[peer, c] == 0) continue
        printf "khetnet/%-9s %d conn: throughput x%.2f, CPU-s/M x%.2f, peak RSS x%.2f\n", peer, c,
          rate["khetnet", c] / rate[peer, c], cpu["khetnet", c] / cpu[peer, c], rss["khetnet", c] / rss[peer, c]
      }
    }
  }' "$RESULTS"
