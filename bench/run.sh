#!/usr/bin/env bash
# replguard benchmark: is the guard cheap and fast? (issue 7)
#
#   bench/run.sh                 full run (~9 minutes on 2 cores)
#   BENCH_QUICK=1 bench/run.sh   quick smoke run (~1-2 minutes, 1 run per figure, few trials)
#
# Builds replguard (cargo build --release), starts a throw-away MariaDB primary and a GTID
# replica on free loopback ports (one initialised datadir copied per instance, as
# deploy/sandbox/demo.sh does), then bench/bench.py starts `replguard serve` with generated
# configurations and measures:
#   1. check throughput and latency under wrk (/replica vs a bare hyper's empty 200 and
#      /healthz, 1/16/256 connections); 1s: the same over HTTPS against plain
#   2. MySQL load on the replica while /replica is hammered vs an idle window
#   3. reaction time: STOP SLAVE SQL_THREAD / SIGKILL of mariadbd -> first non-200 of /replica
#   4. footprint: RSS and CPU of an idle guard watching 1 and 50 instances
#   5. scale: one guard watching 1000 instances on 4 servers (fresh samples, phase spread,
#      CPU and memory from 1 to 1000 instances)
#   6. the write handover: master-master behind a real HAProxy (deploy/haproxy.cfg's options),
#      an application at ~1000+ writes/s; failover p50/p99, failback write gap, dual writes,
#      stale reads, and the read farm's staleness (tests/handover.rs figure_6_handover)
# and prints a table (also written to $BENCH_DIR/results.md). Every process it starts is
# stopped on exit; it never touches a MariaDB already running on the machine.
#
# Environment (defaults in brackets; BENCH_QUICK=1 changes the ones marked *):
#   BENCH_DIR [/tmp/replguard-bench]    work directory (wiped and recreated)
#   BENCH_RUNS* [5 | quick 1]           runs per figure 1/2 cell; the median is reported
#   BENCH_WRK_DURATION* [5 | quick 2]   seconds per wrk run
#   BENCH_CONNECTIONS ["1 16 256"]      wrk concurrencies
#   BENCH_BREAKDOWN_DURATION* [3 | quick 1]  seconds per wrk run of figure 1b
#   BENCH_LOAD_WINDOW* [10 | quick 4]   seconds per idle/loaded window of figure 2
#   BENCH_TRIALS* [20 | quick 3]        STOP SLAVE SQL_THREAD trials (figure 3)
#   BENCH_KILL_TRIALS* [20 | quick 2]   SIGKILL trials (figure 3)
#   BENCH_FOOTPRINT_WINDOW* [20 | quick 5]  seconds of CPU accounting (figure 4)
#   BENCH_FOOTPRINT_INSTANCES ["1 50"]  instance counts for figure 4
#   BENCH_SCALE_INSTANCES [1000]        instances for figure 5
#   BENCH_SCALE_SERVERS [4]             MariaDB replicas figure 5 spreads them over (each
#                                       started with max_connections = its share + 50)
#   BENCH_SCALE_STEPS* ["1 10 100 1000" | quick "1 100"]  instance counts of figure 5's
#                                       growth table (CPU and memory from 1 to N)
#   BENCH_SCALE_WINDOW* [20 | quick 6]  seconds of /status sampling (figure 5)
#   BENCH_HANDOVER_TRIALS* [20 | quick 3]       failovers + failbacks, recommended profile (figure 6)
#   BENCH_HANDOVER_SEED_TRIALS* [3 | quick 1]   the same with the seed's inter 5000 rise 3 fall 3
#   BENCH_HANDOVER_STEADY* [60 | quick 10]      seconds of a caught-up pair under load (figure 6)
#   BENCH_READFARM_HOLD* [25 | quick 20]        seconds a read-farm replica's applier is held
#   BENCH_FIGURES ["1 1s 1b 2 3 4 5 6"] which figures to run (1s: HTTPS against plain; 1b: where a check's CPU goes;
#                                       "hold": keep the guard up for profiling until $BENCH_DIR/run/hold is removed)
#   BENCH_WAIT_QUIET [0]                wait up to this many seconds for other processes to use
#                                       < 0.25 core before measuring (a shared machine skews figure 1)
#   PRIMARY_PORT, REPLICA_PORT [free ports]   MariaDB TCP ports (127.0.0.1 only)
#   REPLGUARD_BIN [target/release/replguard, built here]   SKIP_BUILD=1   SKIP_INSTALL=1
#   BARE_HTTP [target/release/examples/bare_http, built here]   figure 1's ceiling
set -euo pipefail

# The command line as run, with the BENCH_*/SKIP_* settings given, for the results.
BENCH_COMMAND=$( (env | grep -E '^(BENCH_[A-Z_]+|SKIP_BUILD|SKIP_INSTALL|REPLGUARD_BIN|PRIMARY_PORT|REPLICA_PORT)=' | sort | tr '\n' ' ') || true)
BENCH_COMMAND="${BENCH_COMMAND}$0${*:+ $*}"

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

case "${1:-}" in
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0 ;;
  "") ;;
  *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
esac

WORK=${BENCH_DIR:-/tmp/replguard-bench}
RUN="$WORK/run"      # sockets, pid files
DATA="$WORK/data"
LOGS="$WORK/logs"
PWFILE="$WORK/replguard.password"

say()  { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
warn() { printf '\033[1;33mwarning:\033[0m %s\n' "$*" >&2; }
die()  { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }
# shellcheck source=deploy/sandbox/lib-mariadb.sh
. "$REPO_ROOT/deploy/sandbox/lib-mariadb.sh"

# ---------------------------------------------------------------------------
# 1. prerequisites: mariadb-server, wrk, python3
# ---------------------------------------------------------------------------
sandbox_require MARIADBD=mariadbd:/usr/sbin/mariadbd:mariadb-server \
  INSTALL_DB=mariadb-install-db:/usr/bin/mariadb-install-db:mariadb-server \
  MARIADB=mariadb:/usr/bin/mariadb:mariadb-client \
  WRK=wrk:/usr/bin/wrk:wrk PYTHON=python3:/usr/bin/python3:python3 \
  PROTOC=protoc:/usr/bin/protoc:protobuf-compiler OPENSSL=openssl:/usr/bin/openssl:openssl

# ---------------------------------------------------------------------------
# 2. build replguard
# ---------------------------------------------------------------------------
if [ -n "${REPLGUARD_BIN:-}" ]; then
  REPLGUARD=$REPLGUARD_BIN
elif [ "${SKIP_BUILD:-0}" = 1 ]; then
  REPLGUARD="$REPO_ROOT/target/release/replguard"
else
  command -v cargo >/dev/null || die "cargo not found: install Rust from https://rustup.rs"
  say "building replguard (cargo build --release)"
  (cd "$REPO_ROOT" && cargo build --release && cargo build --release --example bare_http) >&2
  REPLGUARD="$REPO_ROOT/target/release/replguard"
fi
# Figure 1's ceiling: the same hyper serving an empty 200, nothing else (examples/bare_http.rs).
BARE_HTTP=${BARE_HTTP:-$REPO_ROOT/target/release/examples/bare_http}
[ -x "$BARE_HTTP" ] || { warn "no $BARE_HTTP (cargo build --release --example bare_http): figure 1 without its ceiling"; BARE_HTTP=""; }
[ -x "$REPLGUARD" ] || die "replguard binary not found at $REPLGUARD"

# ---------------------------------------------------------------------------
# process bookkeeping: every pid we (or bench.py) start is recorded in $RUN/*.pid;
# teardown signals only those pids, and only while their command line mentions $WORK.
# ---------------------------------------------------------------------------
ours() { [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" | grep -qF -- "$WORK"; }
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

stop_pid() { # label pid [timeout seconds]
  local label=$1 pid=$2 t=${3:-20} i
  if ! alive "$pid"; then wait "$pid" 2>/dev/null || true; return 0; fi
  ours "$pid" || return 0
  kill -CONT "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < t * 10; i++)); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then
    warn "$label ($pid) did not stop in ${t}s, killing"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

stop_recorded() { # stop everything with a pid file in $RUN: guards first, then mariadbd
  local f pid
  [ -d "$RUN" ] || return 0
  for f in "$RUN"/guard-*.pid "$RUN"/bare-*.pid "$RUN"/fleet*.pid "$RUN"/replica.pid "$RUN"/primary.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    [ -n "$pid" ] && stop_pid "$(basename "$f" .pid)" "$pid"
    rm -f "$f"
  done
}

TORN_DOWN=0
teardown() {
  [ "$TORN_DOWN" = 1 ] && return 0
  TORN_DOWN=1
  say "stopping every process the benchmark started (files stay in $WORK)"
  stop_recorded
}
trap 'teardown' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# leftovers of an earlier run that was killed hard
stop_recorded

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PRIMARY_PORT=${PRIMARY_PORT:-$(free_port)}
REPLICA_PORT=${REPLICA_PORT:-$(free_port)}
while [ "$REPLICA_PORT" = "$PRIMARY_PORT" ]; do REPLICA_PORT=$(free_port); done
declare -A PORT=([primary]=$PRIMARY_PORT [replica]=$REPLICA_PORT)
declare -A SERVER_ID=([primary]=1 [replica]=2)
# Figure 5's fleet: BENCH_SCALE_SERVERS more replicas of the primary, reached by socket.
SCALE_INSTANCES=${BENCH_SCALE_INSTANCES:-1000}
SCALE_SERVERS=${BENCH_SCALE_SERVERS:-4}
FLEET=()
if [[ " ${BENCH_FIGURES:-5} " == *" 5 "* ]]; then
  for ((k = 0; k < SCALE_SERVERS; k++)); do
    FLEET+=("fleet$k")
    PORT[fleet$k]=$(free_port)
    SERVER_ID[fleet$k]=$((10 + k))
  done
fi
for p in "${PORT[@]}"; do
  port_busy "$p" && die "port 127.0.0.1:$p is already in use"
done

# ---------------------------------------------------------------------------
# 3. MariaDB: one template datadir, copied for a primary and a replica
# ---------------------------------------------------------------------------
sandbox_prepare_dirs
sandbox_template

for n in primary replica; do
  say "starting mariadb $n on 127.0.0.1:${PORT[$n]} (server_id ${SERVER_ID[$n]})"
  # max_connections 300: figure 4 opens 50 persistent check connections to the replica.
  # The saved argv (RUN/replica.argv) lets bench.py restart it after SIGKILL (figure 3).
  sandbox_start_mariadb "$n" --max-connections=300
done
# Figure 5 spreads its instances over the fleet: each server holds its share of persistent
# check connections plus room for the root clients reading counters.
fleet_conns=$(( (SCALE_INSTANCES + SCALE_SERVERS - 1) / SCALE_SERVERS + 50 ))
for n in "${FLEET[@]}"; do
  say "starting mariadb $n on 127.0.0.1:${PORT[$n]} (figure 5, max_connections $fleet_conns)"
  sandbox_start_mariadb "$n" --max-connections="$fleet_conns"
done
rm -rf "$TEMPLATE"

say "setting up GTID replication primary -> replica ${FLEET[*]}"
sandbox_replicate primary replica "${FLEET[@]}"
sql primary "CREATE DATABASE bench; CREATE TABLE bench.t (id INT PRIMARY KEY); INSERT INTO bench.t VALUES (1);"
sandbox_wait_caught_up primary replica "${FLEET[@]}"

# ---------------------------------------------------------------------------
# 4. measure
# ---------------------------------------------------------------------------
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  d_runs=1 d_wrk=2 d_bd=1 d_load=4 d_trials=3 d_kill=2 d_fp=5 d_scale=6
  d_ho=3 d_ho_seed=1 d_ho_steady=10 d_rf_hold=20 d_steps="1 100"
else
  d_runs=5 d_wrk=5 d_bd=3 d_load=10 d_trials=20 d_kill=20 d_fp=20 d_scale=20
  d_ho=20 d_ho_seed=3 d_ho_steady=60 d_rf_hold=25 d_steps="1 10 100 1000"
fi
export BENCH_WORK="$WORK" BENCH_RUN="$RUN" BENCH_LOGS="$LOGS" BENCH_PWFILE="$PWFILE"
export BENCH_REPLGUARD="$REPLGUARD" BENCH_MARIADB="$MARIADB" BENCH_MARIADBD="$MARIADBD" BENCH_WRK="$WRK"
export BENCH_PRIMARY_PORT="$PRIMARY_PORT" BENCH_REPLICA_PORT="$REPLICA_PORT" BENCH_REPO="$REPO_ROOT"
export BENCH_RUNS=${BENCH_RUNS:-$d_runs}
export BENCH_WRK_DURATION=${BENCH_WRK_DURATION:-$d_wrk}
export BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-"1 16 256"}
export BENCH_BREAKDOWN_DURATION=${BENCH_BREAKDOWN_DURATION:-$d_bd}
export BENCH_LOAD_WINDOW=${BENCH_LOAD_WINDOW:-$d_load}
export BENCH_TRIALS=${BENCH_TRIALS:-$d_trials}
export BENCH_KILL_TRIALS=${BENCH_KILL_TRIALS:-$d_kill}
export BENCH_FOOTPRINT_WINDOW=${BENCH_FOOTPRINT_WINDOW:-$d_fp}
export BENCH_FOOTPRINT_INSTANCES=${BENCH_FOOTPRINT_INSTANCES:-"1 50"}
export BENCH_SCALE_INSTANCES=$SCALE_INSTANCES
export BENCH_SCALE_STEPS=${BENCH_SCALE_STEPS:-$d_steps}
export BENCH_SCALE_SOCKETS="$(for n in "${FLEET[@]}"; do printf '%s ' "$RUN/$n.sock"; done)"
export BENCH_SCALE_WINDOW=${BENCH_SCALE_WINDOW:-$d_scale}
export BENCH_FIGURES=${BENCH_FIGURES:-"1 1s 1b 2 3 4 5 6"}
export BENCH_BARE_HTTP="$BARE_HTTP"
export BENCH_QUICK=${BENCH_QUICK:-0}
export BENCH_WAIT_QUIET=${BENCH_WAIT_QUIET:-0}
export BENCH_COMMAND

say "measuring (bench/bench.py); logs in $LOGS"
"$PYTHON" -u "$SCRIPT_DIR/bench.py"

# ---------------------------------------------------------------------------
# 5. figure 6: the write handover, on the test harness's servers and a real HAProxy
# ---------------------------------------------------------------------------
if [[ " $BENCH_FIGURES " == *" 6 "* ]]; then
  sandbox_require HAPROXY=haproxy:/usr/sbin/haproxy:haproxy
  say "figure 6: the write handover (cargo test --test handover figure_6_handover -- --ignored)"
  (cd "$REPO_ROOT" && RUST_LOG=error BENCH_FIGURE6_OUT="$WORK/figure6.md" \
    BENCH_HANDOVER_TRIALS=${BENCH_HANDOVER_TRIALS:-$d_ho} \
    BENCH_HANDOVER_SEED_TRIALS=${BENCH_HANDOVER_SEED_TRIALS:-$d_ho_seed} \
    BENCH_HANDOVER_STEADY=${BENCH_HANDOVER_STEADY:-$d_ho_steady} \
    BENCH_READFARM_HOLD=${BENCH_READFARM_HOLD:-$d_rf_hold} \
    cargo test --test handover figure_6_handover -- --ignored --exact --nocapture) >"$LOGS/figure6.log" 2>&1 \
    || die "figure 6 failed; see $LOGS/figure6.log"
  tee -a "$WORK/results.md" < "$WORK/figure6.md"
fi
