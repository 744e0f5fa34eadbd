#!/usr/bin/env bash
# The school agent: its footprint while probing, and its sweep speed, each beside a peer in
# the same run.
#
# (a) Footprint. A `khetnet serve` on loopback (SQLite, collector off) holds one school with
#     250 targets probed every 60 s: 200 ICMP (127.0.1.1-200), 30 TCP and 10 HTTP against the
#     server itself, 10 SNMP v2c against a Net-SNMP snmpd on a loopback port (ICMP instead when
#     snmpd is not installed). khetnet-agent is enrolled against it and runs for BENCH_SECONDS;
#     beside it zabbix-agent2 (Debian's) runs idle with a minimal configuration on a loopback
#     port. For both, from /proc/PID: peak RSS (VmHWM), steady RSS (the median VmRSS sampled
#     every 5 s after the first 60 s, once every target was probed), and CPU (utime+stime over
#     the whole run, % of one core). Then khetnet/zabbix ratios. Targets: RSS <= 10 MB and CPU
#     <= 1% of one core.
#
# (b) Sweep. A network namespace made here holds a bridge 10.212.0.1/24 and one host namespace
#     with 10 addresses (10.212.0.10-19) on a veth pair; the other 243 addresses are absent.
#     `khetnet-agent sweep --icmp 10.212.0.0/24` and `fping -a -q -g 10.212.0.0/24` run
#     alternately BENCH_SWEEPS times inside the namespace; wall time of each, the mean, and the
#     ratio khetnet/fping (below 1 is faster). Both must find the same 11 hosts.
#
# Installs only what is missing: zabbix-agent2 and fping from apt. Needs root (ICMP sockets,
# namespaces). Traffic only to loopback and to the namespaces it makes; everything is removed
# at the end (BENCH_KEEP=1 keeps the temporary directory).
#
#   bench/agent.sh                    # both parts, full figures
#   BENCH_SECONDS=90 bench/agent.sh   # a short footprint run
#
# Settings (environment):
#   BENCH_SECONDS  how long the footprint run lasts (default 300, at least 90)
#   BENCH_SWEEPS   repetitions of each sweep (default 5)
#   BENCH_PARTS    which parts (default "footprint sweep")
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

RUN_SECONDS=${BENCH_SECONDS:-300}
SWEEPS=${BENCH_SWEEPS:-5}
PARTS=${BENCH_PARTS:-footprint sweep}
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
(( RUN_SECONDS >= 90 )) || RUN_SECONDS=90

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'agent.sh: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "run as root: ICMP sockets and network namespaces need it"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
need_apt() {
  local missing=()
  for p in "$@"; do installed "$p" || missing+=("$p"); done
  (( ${#missing[@]} == 0 )) && return
  say "apt-get install ${missing[*]}"
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

TMP=$(mktemp -d /tmp/khetnet-bench-agent.XXXXXX)
PIDS=()
NETNS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in "${NETNS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  if [[ ${BENCH_KEEP:-} == 1 ]]; then say "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# zabbix-agent2 takes ListenPort 1024-32767 only.
free_low_port() { python3 -c '
import random, socket
for p in random.sample(range(20000, 32000), 200):
    try:
        s = socket.socket(); s.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass'; }
free_udp_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The agent is measured, so it is built as shipped (release); the server only receives its
# reports, so its debug build (the one the tests make) will do.
say "cargo build --release -p khetnet-agent; cargo build -p khetnet-server"
cargo build --release -q -p khetnet-agent
cargo build -q -p khetnet-server
SERVER=$TARGET_DIR/debug/khetnet
AGENT=$TARGET_DIR/release/khetnet-agent

# kB of a /proc/PID/status field.
status_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
# utime+stime of a process in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

footprint() {
  need_apt zabbix-agent2
  local port zport admin_password=bench-admin-password
  port=$(free_port)
  zport=$(free_low_port)
  mkdir -p "$TMP/server" "$TMP/agent" "$TMP/zabbix"
  cat >"$TMP/khetnet.toml" <<EOF
[server]
listen = "127.0.0.1:$port"
data_dir = "$TMP/server"
[collector]
enabled = false
[logging]
level = "warn"
[agent]
state_dir = "$TMP/agent"
EOF
  say "khetnet serve on 127.0.0.1:$port"
  KHETNET_ADMIN_PASSWORD=$admin_password "$SERVER" serve --config "$TMP/khetnet.toml" \
    >"$TMP/server.log" 2>&1 &
  PIDS+=($!)
  local url="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -fs "$url/healthz" >/dev/null && break; sleep 0.2; done
  curl -fs "$url/healthz" >/dev/null || die "the server did not start: $(tail -5 "$TMP/server.log")"
  api() { curl -fsS -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' "$@"; }
  TOKEN=$(curl -fsS -H 'content-type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$admin_password\"}" "$url/api/v1/auth/login" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  local school
  school=$(api -d '{"code":"1057019999","name_th":"โรงเรียนทดสอบ","name_en":"Bench school"}' \
    "$url/api/v1/schools" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

  local snmp_port=""
  if [[ -x /usr/sbin/snmpd ]]; then
    snmp_port=$(free_udp_port)
    printf 'agentAddress udp:127.0.0.1:%s\nrocommunity bench 127.0.0.1\n' "$snmp_port" >"$TMP/snmpd.conf"
    SNMP_PERSISTENT_DIR=$TMP MIBS= /usr/sbin/snmpd -f -Lo -C -c "$TMP/snmpd.conf" -p "$TMP/snmpd.pid" \
      >/dev/null 2>&1 &
    PIDS+=($!)
  fi
  say "250 targets every 60 s"
  {
    for i in $(seq 1 200); do
      printf '{"school_id":%s,"name":"ping-%s","probe":"icmp","address":"127.0.1.%s"}\n' "$school" "$i" "$i"
    done
    for i in $(seq 1 30); do
      printf '{"school_id":%s,"name":"tcp-%s","probe":"tcp","address":"127.0.0.1","port":%s}\n' "$school" "$i" "$port"
    done
    for i in $(seq 1 10); do
      printf '{"school_id":%s,"name":"http-%s","probe":"http","address":"%s/healthz"}\n' "$school" "$i" "$url"
    done
    for i in $(seq 1 10); do
      if [[ -n $snmp_port ]]; then
        printf '{"school_id":%s,"name":"snmp-%s","probe":"snmp","address":"127.0.0.1","port":%s,"snmp_community":"bench"}\n' "$school" "$i" "$snmp_port"
      else
        printf '{"school_id":%s,"name":"snmp-%s","probe":"icmp","address":"127.0.2.%s"}\n' "$school" "$i" "$i"
      fi
    done
  } | while read -r body; do api -o /dev/null -d "$body" "$url/api/v1/devices"; done
  local enrollment
  enrollment=$(api -d "{\"school_id\":$school}" "$url/api/v1/agents/enrollment-tokens" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  "$AGENT" --config "$TMP/khetnet.toml" enroll --server "$url" --token "$enrollment" --name bench >/dev/null

  cat >"$TMP/zabbix/zabbix_agent2.conf" <<EOF
Server=127.0.0.1
ServerActive=
ListenIP=127.0.0.1
ListenPort=$zport
Hostname=khetnet-bench
LogType=file
LogFile=$TMP/zabbix/zabbix_agent2.log
PidFile=$TMP/zabbix/zabbix_agent2.pid
ControlSocket=$TMP/zabbix/agent.sock
PluginSocket=$TMP/zabbix/agent.plugin.sock
EOF
  say "zabbix-agent2 idle on 127.0.0.1:$zport; khetnet-agent for ${RUN_SECONDS} s"
  zabbix_agent2 -c "$TMP/zabbix/zabbix_agent2.conf" >"$TMP/zabbix/stdout.log" 2>&1 &
  local zpid=$!
  PIDS+=($zpid)
  "$AGENT" --config "$TMP/khetnet.toml" run >"$TMP/agent.log" 2>&1 &
  local apid=$!
  PIDS+=($apid)
  sleep 1
  kill -0 "$zpid" 2>/dev/null || die "zabbix-agent2 did not start: $(tail -5 "$TMP/zabbix/"*.log)"
  kill -0 "$apid" 2>/dev/null || die "khetnet-agent did not start: $(tail -5 "$TMP/agent.log")"
  local a0 z0 t0 elapsed a_rss=() z_rss=()
  a0=$(cpu_ticks "$apid"); z0=$(cpu_ticks "$zpid"); t0=$EPOCHREALTIME
  for ((s = 5; s <= RUN_SECONDS; s += 5)); do
    sleep 5
    if (( s > 60 )); then
      a_rss+=("$(status_kb "$apid" VmRSS)")
      z_rss+=("$(status_kb "$zpid" VmRSS)")
    fi
  done
  local a1 z1 a_hwm z_hwm
  a1=$(cpu_ticks "$apid"); z1=$(cpu_ticks "$zpid")
  elapsed=$(python3 -c "import time; print(time.time() - $t0)")
  a_hwm=$(status_kb "$apid" VmHWM); z_hwm=$(status_kb "$zpid" VmHWM)
  local samples
  samples=$(api "$url/api/v1/devices" | python3 -c 'import json,sys; print(sum(1 for d in json.load(sys.stdin) if d["last_sample_at"]))')
  local up
  up=$(api "$url/api/v1/devices" | python3 -c 'import json,sys; print(sum(1 for d in json.load(sys.stdin) if d["status"] == "up"))')
  python3 - "$elapsed" "$(getconf CLK_TCK)" "$a0" "$a1" "$z0" "$z1" "$a_hwm" "$z_hwm" "$samples" "$up" \
    "${a_rss[*]}" "${z_rss[*]}" <<'EOF'
import statistics, sys
elapsed, tck = float(sys.argv[1]), int(sys.argv[2])
a0, a1, z0, z1, a_hwm, z_hwm, reported, up = map(int, sys.argv[3:11])
a_rss = [int(x) for x in sys.argv[11].split()]
z_rss = [int(x) for x in sys.argv[12].split()]
a_cpu = 100 * (a1 - a0) / tck / elapsed
z_cpu = 100 * (z1 - z0) / tck / elapsed
a_st, z_st = statistics.median(a_rss), statistics.median(z_rss)
print(f"\nfootprint over {elapsed:.0f} s; 250 targets every 60 s; {reported} targets reported, {up} up")
print(f"{'':24} {'VmHWM MB':>9} {'VmRSS MB':>9} {'CPU %':>7}")
print(f"{'khetnet-agent (probing)':24} {a_hwm/1024:9.2f} {a_st/1024:9.2f} {a_cpu:7.3f}")
print(f"{'zabbix-agent2 (idle)':24} {z_hwm/1024:9.2f} {z_st/1024:9.2f} {z_cpu:7.3f}")
ratio = lambda a, b: f"{a / b:.2f}" if b else "n/a"
print(f"{'ratio khetnet/zabbix':24} {ratio(a_hwm, z_hwm):>9} {ratio(a_st, z_st):>9} {ratio(a_cpu, z_cpu):>7}")
ok = a_hwm <= 10 * 1024 and a_cpu <= 1.0
print(f"target (RSS <= 10 MB, CPU <= 1% of one core): {'met' if ok else 'NOT MET'}")
EOF
  # The agent stops first (its last report goes to the live server), then the rest.
  kill "$apid" 2>/dev/null || true
  wait "$apid" 2>/dev/null || true
  kill "$zpid" 2>/dev/null || true
}

sweep() {
  need_apt fping
  local ns=khn-bench-$$ host=khn-bench-$$-h net=10.212.0
  NETNS+=("$host" "$ns")
  ip netns add "$ns"
  ip netns add "$host"
  ip -n "$ns" link set lo up
  ip -n "$ns" link add br0 type bridge
  ip -n "$ns" addr add "$net.1/24" dev br0
  ip -n "$ns" link set br0 up
  ip -n "$ns" link add p0 type veth peer name eth0 netns "$host"
  ip -n "$ns" link set p0 master br0
  ip -n "$ns" link set p0 up
  for i in $(seq 10 19); do ip -n "$host" addr add "$net.$i/24" dev eth0; done
  ip -n "$host" link set eth0 up
  sleep 1
  say "254-host ICMP sweep of $net.0/24 (11 present), $SWEEPS times each"
  local k f kt=() ft=() t0 kn fn
  for ((i = 0; i < SWEEPS; i++)); do
    ip -n "$ns" neigh flush all 2>/dev/null || true
    t0=$EPOCHREALTIME
    kn=$(ip netns exec "$ns" "$AGENT" sweep --icmp "$net.0/24" 2>/dev/null | wc -l)
    kt+=("$(python3 -c "import time; print(time.time() - $t0)")")
    ip -n "$ns" neigh flush all 2>/dev/null || true
    t0=$EPOCHREALTIME
    fn=$(ip netns exec "$ns" fping -a -q -g "$net.0/24" 2>/dev/null | wc -l || true)
    ft+=("$(python3 -c "import time; print(time.time() - $t0)")")
    (( kn == 11 )) || die "khetnet-agent found $kn hosts, not 11"
    (( fn == 11 )) || die "fping found $fn hosts, not 11"
  done
  python3 - "${kt[*]}" "${ft[*]}" <<'EOF'
import statistics, sys
k = [float(x) for x in sys.argv[1].split()]
f = [float(x) for x in sys.argv[2].split()]
print(f"\n254-host ICMP sweep, {len(k)} runs each, 11 hosts present")
print(f"{'':28} {'mean s':>7} {'min s':>7} {'max s':>7}")
print(f"{'khetnet-agent sweep --icmp':28} {statistics.mean(k):7.2f} {min(k):7.2f} {max(k):7.2f}")
print(f"{'fping -a -q -g':28} {statistics.mean(f):7.2f} {min(f):7.2f} {max(f):7.2f}")
r = statistics.mean(k) / statistics.mean(f)
print(f"ratio khetnet/fping (mean): {r:.2f} ({'at least as fast' if r <= 1 else 'SLOWER'})")
EOF
}

for part in $PARTS; do
  case $part in
    footprint) footprint ;;
    sweep) sweep ;;
    *) die "unknown part $part (footprint, sweep)" ;;
  esac
done
