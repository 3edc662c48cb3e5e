#!/usr/bin/env bash
# Soak with faults (docs/RELIABILITY.md, "Soak"): device runtimes spread over several
# soak_device processes, each a 10 Hz sensing loop with a deadline offloading every frame at
# the reference model's stem (when an edge can take it), against two cleave-edge
# processes in failover order, each behind a cleave-link at 50 Mbit/s. During the run edge A is
# SIGKILLed and restarted twice, link A is partitioned for 5 s, both links collapse to
# 1 Mbit/s and come back, and the bundle is hot-swapped (replaced by another version and put
# back). Every process's resident memory is sampled each second. soak_report.py then checks
# that every request was answered exactly once within its deadline plus the margin, no process
# crashed, memory stayed flat after warm-up and devices came back to edge A after each restart,
# prints a table and writes JSON; its exit code is the verdict.
#
#   flock /tmp/cleave-build.lock bench/soak.sh [RESULTS_DIR]     (default results/soak)
#
#   SOAK_DURATION_S   length of the run (default 300); fault times scale with it
#   SOAK_PROCESSES    soak_device processes (default 4)
#   SOAK_RUNTIMES     runtimes per process (default 16: 64 in all)
#   SOAK_DEADLINE_MS  per-request deadline (default 100)
#   SOAK_MARGIN_MS    lateness allowed beyond it (default 100)
#   SOAK_WARMUP_S     warm-up before the loops start (default 5; 3 uncounted requests each)
#   SOAK_BIN          the binaries (default build/bin)
#   SOAK_MODEL        the model to split (default: the reference model, trained once)
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS="$(mkdir -p "${1:-results/soak}" && cd "${1:-results/soak}" && pwd)"
DURATION="${SOAK_DURATION_S:-300}"
PROCESSES="${SOAK_PROCESSES:-4}"
RUNTIMES="${SOAK_RUNTIMES:-16}"
DEADLINE_MS="${SOAK_DEADLINE_MS:-100}"
MARGIN_MS="${SOAK_MARGIN_MS:-100}"
WARMUP="${SOAK_WARMUP_S:-5}"
BIN="$(cd "${SOAK_BIN:-build/bin}" && pwd)"
rm -rf "$RESULTS"/{bundles,edge-a,edge-b,link-a,link-b,devices,events.jsonl,memory.jsonl}
mkdir -p "$RESULTS"/{edge-a,edge-b,link-a,link-b,devices}

PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
now() { date +%s.%N; }
event() { printf '{"t": %s, "event": "%s"}\n' "$(now)" "$1" >> "$RESULTS/events.jsonl"; }

# wait_for_file FILE: until it exists and is not empty (30 s at most).
wait_for_file() {
  for _ in $(seq 1 300); do [[ -s "$1" ]] && return 0; sleep 0.1; done
  echo "soak: $1 never appeared" >&2
  exit 1
}

# start_edge NAME [PORT]: a cleave-edge over the bundles, on PORT (default: a free one).
start_edge() {
  local name="$1" port="${2:-0}" dir="$RESULTS/edge-$1"
  rm -f "$dir/port"
  "$BIN/cleave-edge" --bundles "$RESULTS/bundles" --listen "127.0.0.1:$port" \
    --port-file "$dir/port" --watch-interval-ms 500 --idle-spin-us 0 >> "$dir/edge.log" 2>&1 &
  echo $! > "$dir/pid"
  PIDS+=($!)
  wait_for_file "$dir/port"
}

# start_link NAME EDGE_PORT: a cleave-link at 50 Mbit/s in front of an edge, with a control port.
start_link() {
  local dir="$RESULTS/link-$1"
  "$BIN/cleave-link" --listen 127.0.0.1:0 --upstream "127.0.0.1:$2" --bandwidth 50mbit \
    --delay 1ms --port-file "$dir/port" --control 127.0.0.1:0 \
    --control-port-file "$dir/control" > "$dir/link.log" 2>&1 &
  echo $! > "$dir/pid"
  PIDS+=($!)
  wait_for_file "$dir/port"
  wait_for_file "$dir/control"
}

# control NAME COMMAND...: one line to a link's control socket; fails unless it answers ok.
control() {
  local name="$1"
  shift
  exec 3<> "/dev/tcp/127.0.0.1/$(cat "$RESULTS/link-$name/control")"
  echo "$*" >&3
  local reply
  read -r reply <&3
  exec 3>&-
  [[ "$reply" == ok* ]] || { echo "soak: link $name: $* -> $reply" >&2; exit 1; }
  event "link $name: $*"
}

# split CUTS: the bundle the edges serve, written in place (atomically) at those cuts.
split() {
  "$BIN/cleave" split "$MODEL" --input-shape 1,1,28,28 --cuts "$1" -o "$RESULTS/bundles/fashion/1" \
    --name fashion --codec int8 --zstd-level 1 \
    --calibration-data /usr/share/datasets/fashion-mnist > "$RESULTS/split.log"
}

# at FRACTION: sleeps until that share of the run has passed.
at() {
  local target
  target=$(awk -v s="$START" -v d="$DURATION" -v f="$1" 'BEGIN { printf "%.3f", s + d * f }')
  local wait
  wait=$(awk -v t="$target" -v n="$(now)" 'BEGIN { w = t - n; printf "%.3f", (w > 0 ? w : 0) }')
  sleep "$wait"
}

# sample_memory: every second, each live process's resident bytes, until the run ends.
sample_memory() {
  while [[ ! -e "$RESULTS/done" ]]; do
    for pidfile in "$RESULTS"/{edge-a,edge-b,link-a,link-b}/pid "$RESULTS"/devices/*.pid; do
      [[ -e "$pidfile" ]] || continue
      local pid rss
      pid="$(cat "$pidfile")"
      rss="$(awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$pid/status" 2>/dev/null || true)"
      [[ -n "$rss" ]] || continue
      printf '{"t": %s, "process": "%s", "pid": %s, "rss": %s}\n' "$(now)" \
        "$(basename "$(dirname "$pidfile")")/$(basename "$pidfile" .pid)" "$pid" "$rss" \
        >> "$RESULTS/memory.jsonl"
    done
    sleep 1
  done
}

MODEL="${SOAK_MODEL:-$(scripts/reference_model.sh)}"
split stem,layer2
start_edge a
start_edge b
PORT_A="$(cat "$RESULTS/edge-a/port")"
start_link a "$PORT_A"
start_link b "$(cat "$RESULTS/edge-b/port")"
LINK_A="127.0.0.1:$(cat "$RESULTS/link-a/port")"
LINK_B="127.0.0.1:$(cat "$RESULTS/link-b/port")"
rm -f "$RESULTS/done"
sample_memory &
SAMPLER=$!

# The runtimes warm up for WARMUP seconds (uncounted requests); their loops, and the faults'
# schedule, start after it.
START="$(awk -v n="$(now)" -v w="$WARMUP" 'BEGIN { printf "%.3f", n + w }')"
DEVICE_PIDS=()
for p in $(seq 1 "$PROCESSES"); do
  "$BIN/soak_device" --bundle "$RESULTS/bundles/fashion/1" --edge "$LINK_A" --edge "$LINK_B" \
    --cut stem --runtimes "$RUNTIMES" --rate-hz 10 --duration-s "$DURATION" --deadline-ms "$DEADLINE_MS" \
    --margin-ms "$MARGIN_MS" --warmup-s "$WARMUP" --json "$RESULTS/devices/$p.json" > "$RESULTS/devices/$p.log" 2>&1 &
  echo $! > "$RESULTS/devices/$p.pid"
  DEVICE_PIDS+=($!)
  PIDS+=($!)
done

at 0; event start
kill_edge_a() { kill -KILL "$(cat "$RESULTS/edge-a/pid")"; event "edge a killed"; }
restart_edge_a() { start_edge a "$PORT_A"; event "edge a restarted"; }

at 0.15; kill_edge_a
at 0.22; restart_edge_a
at 0.32; control a partition on
sleep 5; control a partition off
at 0.45; control a bandwidth 1mbit; control b bandwidth 1mbit
at 0.55; control a bandwidth 50mbit; control b bandwidth 50mbit
at 0.62; kill_edge_a
at 0.69; restart_edge_a
at 0.78; split stem; event "bundle swapped"
at 0.88; split stem,layer2; event "bundle restored"

status=0
for pid in "${DEVICE_PIDS[@]}"; do wait "$pid" || status=1; done
event end
touch "$RESULTS/done"
wait "$SAMPLER" || true
for name in a b; do
  kill -TERM "$(cat "$RESULTS/edge-$name/pid")"
  wait "$(cat "$RESULTS/edge-$name/pid")" || { echo "soak: edge $name did not exit 0" >&2; status=1; }
  kill -TERM "$(cat "$RESULTS/link-$name/pid")"
  wait "$(cat "$RESULTS/link-$name/pid")" || { echo "soak: link $name did not exit 0" >&2; status=1; }
done
trap - EXIT
/usr/bin/python3 bench/soak_report.py "$RESULTS" --device-exit "$status"
