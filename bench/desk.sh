#!/usr/bin/env bash
# The desk at a district's scale: 1,000,000 assets and 1,000,000 requests, on SQLite and on
# PostgreSQL. Seeds a new database per engine (`khetnet seed-desk`, bulk INSERTs through the
# real schema), starts `khetnet serve` on loopback and drives each endpoint with wrk at
# CONNECTIONS concurrent connections for DURATION, then all of them mixed. Prints p50, p99 and
# requests per second per endpoint and engine against the target p99 <= 100 ms.
#
#   bench/desk.sh                      # the full run (a few minutes of seeding per engine)
#   ASSETS=100000 REQUESTS=100000 DURATION=3s bench/desk.sh   # a quick one
#
# Environment: ASSETS, REQUESTS, DURATION (wrk -d, per endpoint), WARMUP (wrk -d of an uncounted
# run before each endpoint's, 3s), CONNECTIONS (wrk -c),
# ENGINES ("sqlite postgres"), PG_URL (a PostgreSQL server where the script may create and
# drop a database; postgres://postgres@127.0.0.1:5432), KEEP=1 keeps the temp dir and the
# PostgreSQL database, REUSE=DIR runs on the databases a KEEP=1 run left in DIR (no seeding).
# Needs: cargo, curl, python3, psql (for PostgreSQL); installs wrk from apt when missing.
set -euo pipefail

ASSETS=${ASSETS:-1000000}
REQUESTS=${REQUESTS:-1000000}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
WARMUP=${WARMUP:-3s}
ENGINES=${ENGINES:-sqlite postgres}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
TARGET_P99_MS=100
PASSWORD=bench-password-1234

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! command -v wrk >/dev/null; then
    echo "installing wrk (apt)" >&2
    apt-get install -y --no-install-recommends wrk >/dev/null
fi

cargo build --release -p khetnet-server --bin khetnet >&2
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
khetnet="$target_dir/release/khetnet"

if [[ -n "${REUSE:-}" ]]; then
    work=$REUSE
    pg_db=$(cat "$work/pg_db")
    KEEP=1
else
    work=$(mktemp -d /tmp/khetnet-desk-bench.XXXXXX)
    pg_db="khetnet_desk_bench_$$"
    echo "$pg_db" >"$work/pg_db"
fi
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    if [[ "${KEEP:-0}" != 1 ]]; then
        if [[ " $ENGINES " == *" postgres "* ]]; then
            psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $pg_db" >/dev/null 2>&1 || true
        fi
        rm -rf "$work"
    else
        echo "kept $work (PostgreSQL database $pg_db); REUSE=$work runs on them again" >&2
    fi
}
trap cleanup EXIT

# A free loopback port.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Milliseconds from a wrk latency figure (123.45us, 1.23ms, 1.02s, 2.00m).
to_ms() {
    python3 -c '
import re,sys
v=sys.argv[1]; m=re.fullmatch(r"([0-9.]+)(us|ms|s|m)",v)
f={"us":0.001,"ms":1,"s":1000,"m":60000}[m.group(2)]
print("%.1f" % (float(m.group(1))*f))' "$1"
}

# Writes a wrk script that sends GETs for random paths of a list with a bearer token.
lua_script() { # file token path...
    local file=$1 token=$2
    shift 2
    {
        echo "local paths = {"
        for p in "$@"; do printf '  %s,\n' "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$p")"; done
        echo "}"
        echo "local headers = { [\"Authorization\"] = \"Bearer $token\" }"
        echo 'request = function() return wrk.format("GET", paths[math.random(#paths)], headers) end'
    } >"$file"
}

results="$work/results.tsv"
: >"$results"
[[ -n "${REUSE:-}" ]] || : >"$work/seed.tsv"

# Runs wrk on one named endpoint: name token path...
drive() {
    local name=$1 token=$2
    shift 2
    local script="$work/$engine-$name.lua" out="$work/$engine-$name.wrk"
    lua_script "$script" "$token" "$@"
    # Warm-up, not counted: the first reads of a freshly started server fault the database's
    # pages in from disk (a cold cache after the seed), which is not the steady state measured.
    wrk -t2 -c"$CONNECTIONS" -d"$WARMUP" --timeout 10s -s "$script" "$base" >/dev/null
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --timeout 10s --latency -s "$script" "$base" >"$out"
    local p50 p99 rps errors
    p50=$(to_ms "$(awk '$1=="50%"{print $2}' "$out")")
    p99=$(to_ms "$(awk '$1=="99%"{print $2}' "$out")")
    rps=$(awk '/^Requests\/sec/{printf "%.0f", $2}' "$out")
    errors=$(awk '/Non-2xx/{print $NF}' "$out")
    local verdict=ok
    if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= $TARGET_P99_MS else 1)" "$p99"; then :; else verdict=MISSED; fi
    if [[ -n "$errors" ]]; then verdict="ERRORS($errors)"; fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$engine" "$name" "$p50" "$p99" "$rps" "$verdict" >>"$results"
    printf '%-9s %-26s p50 %7s ms  p99 %7s ms  %6s req/s  %s\n' "$engine" "$name" "$p50" "$p99" "$rps" "$verdict" >&2
}

login() { # username
    curl -fsS -H 'content-type: application/json' \
        -d "{\"username\":\"$1\",\"password\":\"$PASSWORD\"}" "$base/api/v1/auth/login" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}

for engine in $ENGINES; do
    mkdir -p "$work/$engine"
    case $engine in
    sqlite) url="sqlite:$work/$engine/khetnet.db" ;;
    postgres) url="$PG_URL/$pg_db" ;;
    *) echo "unknown engine $engine" >&2; exit 2 ;;
    esac
    if [[ -z "${REUSE:-}" ]]; then
        [[ $engine != postgres ]] || psql "$PG_URL/postgres" -qc "CREATE DATABASE $pg_db" >/dev/null
        echo "== $engine: seeding $ASSETS assets and $REQUESTS requests" >&2
        seed_start=$(date +%s)
        "$khetnet" seed-desk --database "$url" --assets "$ASSETS" --requests "$REQUESTS" --password "$PASSWORD"
        seed_s=$(($(date +%s) - seed_start))
        echo "$engine: seeded in ${seed_s}s" >&2
        printf '%s\tseed\t%s\n' "$engine" "$seed_s" >>"$work/seed.tsv"
    fi

    port=$(free_port)
    base="http://127.0.0.1:$port"
    KHETNET_DATABASE_URL="$url" KHETNET_LOGGING_LEVEL=warn KHETNET_ADMIN_PASSWORD="$PASSWORD" \
        "$khetnet" serve --data "$work/$engine" --listen "127.0.0.1:$port" --no-collector \
        >"$work/$engine/serve.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 300); do
        curl -fsS "$base/healthz" >/dev/null 2>&1 && break
        sleep 0.2
    done
    tech=$(login tech)
    teacher=$(login teacher)

    # Real values to search for: serials and asset numbers of assets spread over the register.
    mapfile -t samples < <(
        for before in 977001 731013 500999 250501 120077 33331 9999; do
            curl -fsS -H "authorization: Bearer $tech" "$base/api/v1/assets?limit=3&before_id=$before"
        done | python3 -c '
import json,sys
for line in sys.stdin.read().replace("][", "]\n[").splitlines():
    for a in json.loads(line):
        print(a["serial"], a["asset_number"][:14], a["id"])'
    )
    serials=() numbers=() ids=()
    for s in "${samples[@]}"; do
        read -r serial number id <<<"$s"
        serials+=("/api/v1/assets?q=$serial")
        numbers+=("/api/v1/assets?q=$number")
        ids+=("/api/v1/assets/$id")
    done
    deep=()
    for before in 999001 800123 612345 400000 275000 123456 50000 2000; do
        deep+=("/api/v1/assets?before_id=$before")
    done

    drive assets-first-page "$tech" /api/v1/assets
    drive assets-school-state "$tech" "/api/v1/assets?school_id=17&state=in_repair" \
        "/api/v1/assets?school_id=5&state=in_use" "/api/v1/assets?school_id=250&state=lost" \
        "/api/v1/assets?school_id=120&state=on_loan&before_id=500000"
    drive assets-number-prefix "$tech" "${numbers[@]}"
    drive assets-serial "$tech" "${serials[@]}"
    drive assets-word "$tech" "/api/v1/assets?q=optiplex" "/api/v1/assets?q=Epson" \
        "/api/v1/assets?q=%E0%B8%AB%E0%B9%89%E0%B8%AD%E0%B8%87%E0%B8%AA%E0%B8%A1%E0%B8%B8%E0%B8%94" \
        "/api/v1/assets?q=thinkpad%20e14" "/api/v1/assets?q=CBS350" "/api/v1/assets?q=2530-24g" \
        "/api/v1/assets?q=u6-pro&state=in_repair" "/api/v1/assets?q=server%20room"
    drive assets-deep-page "$tech" "${deep[@]}"
    drive assets-detail "$tech" "${ids[@]}"
    drive assets-as-requester "$teacher" /api/v1/assets "/api/v1/assets?q=dell" \
        "/api/v1/assets?q=projector" "/api/v1/assets?state=in_repair" "/api/v1/assets?before_id=600000"
    drive queue-first-page "$tech" /api/v1/requests
    drive queue-filtered "$tech" "/api/v1/requests?state=submitted" \
        "/api/v1/requests?state=in_progress&kind=repair" "/api/v1/requests?assignee_id=1&state=assigned" \
        "/api/v1/requests?school_id=42&state=waiting" "/api/v1/requests?kind=account" \
        "/api/v1/requests?state=closed&before_id=400000" "/api/v1/requests?kind=data_service&state=rejected"
    drive queue-as-requester "$teacher" /api/v1/requests "/api/v1/requests?state=closed" \
        "/api/v1/requests?state=submitted" "/api/v1/requests?before_id=300000"
    # Everything at once, as technicians would (the requester's share goes through the token of
    # the technician here: wrk sends one header set per script).
    drive mixed "$tech" /api/v1/assets "/api/v1/assets?school_id=17&state=in_repair" \
        "${numbers[@]:0:3}" "${serials[@]:0:3}" "/api/v1/assets?q=optiplex" "/api/v1/assets?q=CBS350" \
        "${deep[@]:0:3}" "${ids[@]:0:3}" /api/v1/requests "/api/v1/requests?state=submitted" \
        "/api/v1/requests?assignee_id=1&state=assigned" "/api/v1/requests?school_id=42&state=waiting"

    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
done

echo
echo "khetnet desk benchmark, $(date -u +%Y-%m-%dT%H:%MZ): $ASSETS assets, $REQUESTS requests, wrk -t2 -c$CONNECTIONS -d$DURATION per endpoint, $(nproc) cores"
echo "target: p99 <= ${TARGET_P99_MS} ms (Snipe-IT users report 20 s lists at 1.4M assets, GLPI 18 s)"
while IFS=$'\t' read -r engine _ seconds; do echo "seed $engine: ${seconds}s"; done <"$work/seed.tsv"
printf '%-9s %-22s %9s %9s %8s  %s\n' engine endpoint "p50 ms" "p99 ms" "req/s" "p99<=100ms"
while IFS=$'\t' read -r engine name p50 p99 rps verdict; do
    printf '%-9s %-22s %9s %9s %8s  %s\n' "$engine" "$name" "$p50" "$p99" "$rps" "$verdict"
done <"$results"
