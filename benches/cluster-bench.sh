#!/usr/bin/env bash
# Three nodes against one, back to back in one run: durable produce and mixed
# (produce + consume/ack) through the DMS API with http-load, 1 KiB bodies.
#
#   benches/cluster-bench.sh SLUICE_BIN HTTP_LOAD_BIN [SECONDS] [RUNS]
#
# The single node is `sluice server` on its defaults (a Raft group of one per partition);
# the cluster is `sluice cluster local` (three processes on 127.0.0.1, every partition
# replicated three ways, a write answered once a majority fsynced it), with http-load's
# connections spread over the three nodes. Everything shares this machine's cores and
# disk. Results: one JSON line per run in $OUT/results.jsonl (labels single-*/cluster-*),
# and a summary table with the ratios on stdout. docs/replication.md has the figures.
set -euo pipefail

BIN=$(realpath "$1")
LOAD=$(realpath "$2")
SECONDS_PER_RUN=${3:-10}
RUNS=${4:-2}
OUT=${OUT:-/tmp/cluster-bench}
SINGLE_PORT=${SINGLE_PORT:-18300}
HTTP_BASE=${HTTP_BASE:-18301}
CLUSTER_BASE=${CLUSTER_BASE:-19301}
PRODUCERS=${PRODUCERS:-32}
CONSUMERS=${CONSUMERS:-16}
# Partitions of both set-ups: a multiple of three, so every node leads as many.
PARTITIONS=${PARTITIONS:-6}

rm -rf "$OUT"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"

loads() {
    local label=$1 endpoints=$2 data=$3
    shift 3
    # A run with refused sends (a 503 while a lead moves) reports them and exits 1; the
    # summary shows them, the script goes on.
    "$LOAD" --endpoint "$endpoints" --data-dir "$data" "$@" --workload produce \
        --producers "$PRODUCERS" --batch 10 --seconds "$SECONDS_PER_RUN" --runs "$RUNS" \
        --label "$label-produce" --json-out "$RESULTS" || true
    "$LOAD" --endpoint "$endpoints" --data-dir "$data" "$@" --workload mixed \
        --producers "$((PRODUCERS / 2))" --consumers "$CONSUMERS" --batch 10 \
        --seconds "$SECONDS_PER_RUN" --runs "$RUNS" --label "$label-mixed" \
        --json-out "$RESULTS" || true
}

wait_for() {
    local what=$1 check=$2
    for _ in $(seq 1 600); do
        if eval "$check" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "cluster-bench: $what did not happen within 60 s" >&2
    exit 1
}

# --- one node
"$BIN" server --data-dir "$OUT/single" --http-listen "127.0.0.1:$SINGLE_PORT" \
    --set "partitions=$PARTITIONS" >"$OUT/single.log" 2>&1 &
single=$!
trap 'kill "$single" 2>/dev/null || true' EXIT
wait_for "the single node's default tenant" "test -s '$OUT/single/tenants.json'"
wait_for "the single node's readiness" "curl -sf http://127.0.0.1:$SINGLE_PORT/readyz"
loads single "http://127.0.0.1:$SINGLE_PORT" "$OUT/single" --server-pid "$single"
kill -TERM "$single"
wait "$single" || true
trap - EXIT

# --- three nodes
"$BIN" cluster local --dir "$OUT/cluster" --http-base "$HTTP_BASE" \
    --cluster-base "$CLUSTER_BASE" --set "partitions=$PARTITIONS" >"$OUT/cluster.out" 2>&1 &
cluster=$!
trap 'pkill -TERM -P "$cluster" 2>/dev/null || true; kill "$cluster" 2>/dev/null || true' EXIT
wait_for "the cluster's readiness" "grep -q 'is ready' '$OUT/cluster.out'"
# The leads spread (every 3 s a leader hands partitions to their preferred nodes).
spread_ok() {
    # /readyz: each partition's leader as node 1 sees it (`sluice cluster status` adds
    # the admin view, which needs the admin secrets).
    curl -sf "http://127.0.0.1:$HTTP_BASE/readyz" | python3 -c '
import json, sys
partitions = json.load(sys.stdin)["partitions"]
sys.exit([p["leader"] for p in partitions] != [p % 3 + 1 for p in range(len(partitions))])'
}
wait_for "the leaders' spread" spread_ok
# The cluster's first start creates the tenant "default" (as one node does); older
# builds did not.
grep -q '"default"' "$OUT/cluster/node1/tenants.json" 2>/dev/null ||
    "$BIN" tenant create default --data-dir "$OUT/cluster/node1" --json >/dev/null
endpoints="http://127.0.0.1:$HTTP_BASE,http://127.0.0.1:$((HTTP_BASE + 1)),http://127.0.0.1:$((HTTP_BASE + 2))"
loads cluster "$endpoints" "$OUT/cluster/node1"
pkill -TERM -P "$cluster" || true
wait "$cluster" || true
trap - EXIT

python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def median(label, key):
    values = [r[key] for r in rows if r.get("label") == label and r.get(key) is not None]
    return statistics.median(values) if values else float("nan")
print(f"{'workload':<9} {'metric':<16} {'single':>10} {'cluster':>10} {'cluster/single':>15}")
for workload, keys in [("produce", ["producer_msg_s", "send_p50_ms", "send_p99_ms",
                                    "publish_errors"]),
                       ("mixed", ["producer_msg_s", "consume_msg_s", "send_p50_ms",
                                  "send_p99_ms", "receive_p50_ms", "ack_p99_ms",
                                  "publish_errors", "lost"])]:
    for key in keys:
        one = median(f"single-{workload}", key)
        three = median(f"cluster-{workload}", key)
        ratio = three / one if one else float("nan")
        print(f"{workload:<9} {key:<16} {one:>10.2f} {three:>10.2f} {ratio:>15.2f}")
EOF
