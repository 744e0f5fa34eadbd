#!/bin/sh
# Device-report ingestion: a release `khetnet serve` on loopback, fed reports of 50 samples from
# concurrent bounded clients, on SQLite and (when KHETNET_TEST_DATABASE_URL is set) PostgreSQL.
# Prints reports/s, samples/s and latency percentiles per engine against the 5,000 reports/s
# target. Knobs: BENCH_REPORTS (60000), BENCH_SECS (60), BENCH_CLIENTS (32), BENCH_AGENTS (16).
set -eu
cd "$(dirname "$0")/.."
exec cargo bench -p khetnet-server --bench device_ingest
