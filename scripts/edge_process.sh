# Shell helpers (sourced) for scripts that run a cleave-edge process on a free loopback port.
#
#   start_edge BIN_DIR BUNDLES_DIR WORK_DIR [FLAGS...]
#                                            starts it (extra cleave-edge FLAGS appended),
#                                            waits for its port; sets EDGE_PID and EDGE_PORT
#                                            (exits 1 if it does not come up)
#   stop_edge                                SIGTERM, wait; fails unless it exits 0
#   kill_edge                                for EXIT traps: SIGTERM if still running

start_edge() {
  local bin="$1" bundles="$2" work="$3"
  shift 3
  rm -f "$work/port"
  "$bin/cleave-edge" --bundles "$bundles" --listen 127.0.0.1:0 --port-file "$work/port" "$@" \
    2> "$work/edge.log" &
  EDGE_PID=$!
  for _ in $(seq 1 600); do
    [[ -s "$work/port" ]] && break
    if ! kill -0 "$EDGE_PID" 2>/dev/null; then
      echo "cleave-edge failed to start:" >&2
      cat "$work/edge.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  [[ -s "$work/port" ]] || { echo "cleave-edge did not report its port" >&2; exit 1; }
  EDGE_PORT="$(cat "$work/port")"
}

stop_edge() {
  kill -TERM "$EDGE_PID"
  wait "$EDGE_PID"
  EDGE_PID=""
}

kill_edge() {
  if [[ -n "${EDGE_PID:-}" ]] && kill -0 "$EDGE_PID" 2>/dev/null; then kill -TERM "$EDGE_PID"; fi
}
