#!/usr/bin/env bash
# replguard sandbox: a primary + two GTID replicas (MariaDB), replguard, HAProxy.
#
#   deploy/sandbox/demo.sh            bring everything up, print what to try, wait for Ctrl-C
#   deploy/sandbox/demo.sh --check    bring up, self-test, tear down; exit 0 (pass) / 1 (fail)
#                                      (same as REPLGUARD_DEMO_CHECK=1)
#   deploy/sandbox/demo.sh --galera [--check]   a three-node Galera cluster instead
#                                      (deploy/sandbox/demo-galera.sh)
#
# Everything lives under $REPLGUARD_DEMO_DIR (default /tmp/replguard-demo); on exit the
# processes are stopped and the files are left in place for inspection. A new run wipes
# and recreates the demo's own sub-directories there.
#
# Environment overrides (defaults in brackets):
#   REPLGUARD_DEMO_DIR [/tmp/replguard-demo]   PRIMARY_PORT [13306]  REPLICA1_PORT [13307]
#   REPLICA2_PORT [13308]  GUARD_PORT [31337]  RW_PORT [13300]  RO_PORT [13301]
#   STATS_PORT [8404]      REPLGUARD_BIN [<repo>/target/release/replguard, built here]
#   SKIP_BUILD=1 (do not run cargo build)      SKIP_INSTALL=1 (never run apt-get)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

WORK=${REPLGUARD_DEMO_DIR:-/tmp/replguard-demo}
PRIMARY_PORT=${PRIMARY_PORT:-13306}
REPLICA1_PORT=${REPLICA1_PORT:-13307}
REPLICA2_PORT=${REPLICA2_PORT:-13308}
GUARD_PORT=${GUARD_PORT:-31337}
RW_PORT=${RW_PORT:-13300}
RO_PORT=${RO_PORT:-13301}
STATS_PORT=${STATS_PORT:-8404}
CHECK_MODE=${REPLGUARD_DEMO_CHECK:-0}

for arg in "$@"; do
  case "$arg" in
    --check) CHECK_MODE=1 ;;
    --galera) exec "$SCRIPT_DIR/demo-galera.sh" "$@" ;;
    -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

NAMES=(primary replica1 replica2)
declare -A PORT=([primary]=$PRIMARY_PORT [replica1]=$REPLICA1_PORT [replica2]=$REPLICA2_PORT)
declare -A SERVER_ID=([primary]=1 [replica1]=2 [replica2]=3)

RUN="$WORK/run"      # sockets, pid files
DATA="$WORK/data"    # one datadir per server
LOGS="$WORK/logs"
CONFIG="$WORK/replguard.toml"
PWFILE="$WORK/replguard.password"
HAPROXY_CFG="$WORK/haproxy.cfg"

say()  { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
warn() { printf '\033[1;33mwarning:\033[0m %s\n' "$*" >&2; }
die()  { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# shellcheck source=deploy/sandbox/lib-mariadb.sh
. "$SCRIPT_DIR/lib-mariadb.sh"

# ---------------------------------------------------------------------------
# 1. prerequisites
# ---------------------------------------------------------------------------
sandbox_require MARIADBD=mariadbd:/usr/sbin/mariadbd:mariadb-server \
  INSTALL_DB=mariadb-install-db:/usr/bin/mariadb-install-db:mariadb-server \
  MARIADB=mariadb:/usr/bin/mariadb:mariadb-client \
  HAPROXY=haproxy:/usr/sbin/haproxy:haproxy CURL=curl:/usr/bin/curl:curl \
  PROTOC=protoc:/usr/bin/protoc:protobuf-compiler
command -v cargo >/dev/null || [ -n "${REPLGUARD_BIN:-}" ] || die "cargo not found: install Rust from https://rustup.rs"

# ---------------------------------------------------------------------------
# 2. build replguard
# ---------------------------------------------------------------------------
if [ -n "${REPLGUARD_BIN:-}" ]; then
  REPLGUARD=$REPLGUARD_BIN
elif [ "${SKIP_BUILD:-0}" = 1 ]; then
  REPLGUARD="$REPO_ROOT/target/release/replguard"
else
  say "building replguard (cargo build --release)"
  (cd "$REPO_ROOT" && cargo build --release)
  REPLGUARD="$REPO_ROOT/target/release/replguard"
fi
[ -x "$REPLGUARD" ] || die "replguard binary not found at $REPLGUARD"

# ---------------------------------------------------------------------------
# process bookkeeping: pids we start are recorded in $RUN/*.pid; teardown only
# ever signals those pids, and only if their command line still mentions $WORK
# or is the process we started.
# ---------------------------------------------------------------------------
declare -A PIDS=()

ours() { # pid -> true if it is still a process started by this demo
  local pid=$1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$WORK"
}

alive() { # pid -> true while running (an exited, not yet reaped child is a zombie: not alive)
  kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

stop_pid() { # label pid [timeout seconds]
  local label=$1 pid=$2 t=${3:-20} i
  if ! alive "$pid"; then wait "$pid" 2>/dev/null || true; return 0; fi
  kill -CONT "$pid" 2>/dev/null || true
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < t * 10; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    warn "$label ($pid) did not stop in ${t}s, killing"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

TORN_DOWN=0
teardown() {
  [ "$TORN_DOWN" = 1 ] && return 0
  TORN_DOWN=1
  echo
  say "stopping haproxy, replguard and mariadb (files stay in $WORK)"
  for k in haproxy replguard replica2 replica1 primary; do
    if [ -n "${PIDS[$k]:-}" ]; then
      stop_pid "$k" "${PIDS[$k]}"
      rm -f "$RUN/$k.pid"
    fi
  done
}
trap 'teardown' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# leftovers of an earlier run that was killed hard (kill -9)
if [ -d "$RUN" ]; then
  for f in "$RUN"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    if [ -n "$pid" ] && ours "$pid"; then
      warn "stopping leftover $(basename "$f" .pid) (pid $pid) from an earlier run"
      stop_pid "$(basename "$f" .pid)" "$pid"
    fi
    rm -f "$f"
  done
fi

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$PRIMARY_PORT" "$REPLICA1_PORT" "$REPLICA2_PORT" "$GUARD_PORT" "$RW_PORT" "$RO_PORT" "$STATS_PORT"; do
  port_busy "$p" && die "port 127.0.0.1:$p is already in use (override with the *_PORT variables)"
done

# ---------------------------------------------------------------------------
# 3. MariaDB: one template datadir, copied three times
# ---------------------------------------------------------------------------
sandbox_prepare_dirs
#   demo/demo  everything on demo.*  (to try connections through HAProxy)
sandbox_template "CREATE USER 'demo'@'%' IDENTIFIED BY 'demo';
GRANT ALL PRIVILEGES ON demo.* TO 'demo'@'%';"

for n in "${NAMES[@]}"; do
  say "starting mariadb $n on 127.0.0.1:${PORT[$n]} (server_id ${SERVER_ID[$n]})"
  sandbox_start_mariadb "$n"
  PIDS[$n]=$SANDBOX_PID
done
rm -rf "$TEMPLATE"

say "setting up GTID replication primary -> replica1, replica2"
sandbox_replicate primary replica1 replica2
sql primary "CREATE DATABASE demo; CREATE TABLE demo.t (id INT AUTO_INCREMENT PRIMARY KEY,
             at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6), note VARCHAR(100));
             INSERT INTO demo.t (note) VALUES ('hello from the primary');"
sandbox_wait_caught_up primary replica1 replica2

# ---------------------------------------------------------------------------
# 4. replguard
# ---------------------------------------------------------------------------
cat > "$CONFIG" <<TOML
# generated by deploy/sandbox/demo.sh
listen = "127.0.0.1:$GUARD_PORT"
interval = "1s"
timeout = "500ms"
max_sample_age = "3s"
# Memory of the backup gate ("last seen caught up") survives replguard restarts here.
state_dir = "$WORK/state"

[[instance]]
name = "primary"
host = "127.0.0.1"
port = ${PORT[primary]}
user = "replguard"
password_file = "$PWFILE"
policy = "primary"

[[instance]]
name = "replica1"
host = "127.0.0.1"
port = ${PORT[replica1]}
user = "replguard"
password_file = "$PWFILE"
# replica1 is HAProxy's backup for writes: /mysqlchk/ evaluates the backup gate for it.
policy = "backup"

[[instance]]
name = "replica2"
host = "127.0.0.1"
port = ${PORT[replica2]}
user = "replguard"
password_file = "$PWFILE"
policy = "replica"
max_lag = "5s"
TOML

say "starting replguard on 127.0.0.1:$GUARD_PORT"
"$REPLGUARD" serve --config "$CONFIG" > "$LOGS/replguard.log" 2>&1 &
PIDS[replguard]=$!
echo "${PIDS[replguard]}" > "$RUN/replguard.pid"
for ((i = 0; i < 100; i++)); do
  "$CURL" -s -o /dev/null "http://127.0.0.1:$GUARD_PORT/status" && break
  alive "${PIDS[replguard]}" || { cat "$LOGS/replguard.log" >&2; die "replguard exited"; }
  sleep 0.1
done

# ---------------------------------------------------------------------------
# 5. HAProxy
# ---------------------------------------------------------------------------
# One check line serves every server: HAProxy (2.2+) expands %[srv_name] in `uri-lf`, and
# each HAProxy server is named exactly like its replguard instance, so the guard is asked
# e.g. GET /replica?instance=replica1. `check addr ... port ...` sends the check to the
# guard instead of to MySQL. (HAProxy has no srv_port fetch; if you prefer ports, give
# each server `id <port>` and use ?port=%[srv_id].)
cat > "$HAPROXY_CFG" <<CFG
# generated by deploy/sandbox/demo.sh
global
    stats socket $RUN/haproxy.sock mode 600 level admin

defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout check 1s
    default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions

# writes: the primary while its guard says "primary"; replica1 as the backup, admitted only
# while its guard's backup gate says it could take over without serving stale data.
# /mysqlchk/ evaluates each instance's configured policy (primary: primary, replica1: backup).
listen mysql_rw
    bind 127.0.0.1:$RW_PORT
    option httpchk
    http-check send meth GET uri-lf /mysqlchk/?instance=%[srv_name]
    http-check expect status 200
    server primary 127.0.0.1:${PORT[primary]} check addr 127.0.0.1 port $GUARD_PORT
    server replica1 127.0.0.1:${PORT[replica1]} check addr 127.0.0.1 port $GUARD_PORT backup

# reads: replicas that are connected, running and not lagging
listen mysql_ro
    bind 127.0.0.1:$RO_PORT
    balance leastconn
    option httpchk
    http-check send meth GET uri-lf /replica?instance=%[srv_name]
    http-check expect status 200
    server replica1 127.0.0.1:${PORT[replica1]} check addr 127.0.0.1 port $GUARD_PORT
    server replica2 127.0.0.1:${PORT[replica2]} check addr 127.0.0.1 port $GUARD_PORT

listen stats
    mode http
    bind 127.0.0.1:$STATS_PORT
    stats enable
    stats uri /
    stats refresh 2s
CFG
"$HAPROXY" -c -q -f "$HAPROXY_CFG" || die "generated $HAPROXY_CFG is invalid"
say "starting haproxy (rw 127.0.0.1:$RW_PORT, ro 127.0.0.1:$RO_PORT, stats http://127.0.0.1:$STATS_PORT/)"
"$HAPROXY" -db -f "$HAPROXY_CFG" > "$LOGS/haproxy.log" 2>&1 &
PIDS[haproxy]=$!
echo "${PIDS[haproxy]}" > "$RUN/haproxy.pid"

# ---------------------------------------------------------------------------
# helpers used by --check and handy interactively
# ---------------------------------------------------------------------------
. "$SCRIPT_DIR/lib-check.sh"

if [ "$CHECK_MODE" = 1 ]; then
  say "self-test"
  fail=0
  wait_for "GET /primary?port=${PORT[primary]} -> 200"   20 code_is 200 "/primary?port=${PORT[primary]}" || fail=1
  wait_for "GET /replica?port=${PORT[replica1]} -> 200"  20 code_is 200 "/replica?port=${PORT[replica1]}" || fail=1
  wait_for "GET /replica?port=${PORT[replica2]} -> 200"  20 code_is 200 "/replica?port=${PORT[replica2]}" || fail=1
  wait_for "GET /replica?port=${PORT[primary]} -> 503 (a primary is no replica)" 10 code_is 503 "/replica?port=${PORT[primary]}" || fail=1
  wait_for "GET /status -> 200"                          10 code_is 200 /status || fail=1
  wait_for "haproxy mysql_rw/primary UP"   20 state_is UP mysql_rw primary || fail=1
  wait_for "haproxy mysql_rw/replica1 (backup) UP" 20 state_is UP mysql_rw replica1 || fail=1
  wait_for "haproxy mysql_ro/replica1 UP"  20 state_is UP mysql_ro replica1 || fail=1
  wait_for "haproxy mysql_ro/replica2 UP"  20 state_is UP mysql_ro replica2 || fail=1
  rw=$("$MARIADB" --no-defaults -h127.0.0.1 -P"$RW_PORT" -udemo -pdemo -N -B -e 'SELECT @@server_id' 2>&1 || true)
  [ "$rw" = 1 ] && echo "  ok    mysql via haproxy rw port $RW_PORT reaches server_id 1" ||
    { echo "  FAIL  mysql via haproxy rw port $RW_PORT: $rw"; fail=1; }
  ro=$("$MARIADB" --no-defaults -h127.0.0.1 -P"$RO_PORT" -udemo -pdemo -N -B -e 'SELECT @@server_id' 2>&1 || true)
  case "$ro" in 2|3) echo "  ok    mysql via haproxy ro port $RO_PORT reaches server_id $ro" ;;
    *) echo "  FAIL  mysql via haproxy ro port $RO_PORT: $ro"; fail=1 ;; esac
  say "self-test: STOP SLAVE SQL_THREAD on replica2 must take it out of rotation"
  sql replica2 'STOP SLAVE SQL_THREAD'
  wait_for "GET /replica?port=${PORT[replica2]} -> 503" 15 code_is 503 "/replica?port=${PORT[replica2]}" || fail=1
  wait_for "haproxy mysql_ro/replica2 DOWN" 20 state_is DOWN mysql_ro replica2 || fail=1
  wait_for "haproxy mysql_ro/replica1 still UP" 5 state_is UP mysql_ro replica1 || fail=1
  sql replica2 'START SLAVE SQL_THREAD'
  wait_for "GET /replica?port=${PORT[replica2]} -> 200 again" 15 code_is 200 "/replica?port=${PORT[replica2]}" || fail=1
  wait_for "haproxy mysql_ro/replica2 UP again" 20 state_is UP mysql_ro replica2 || fail=1
  say "self-test: SIGKILL the primary; the caught-up backup replica1 must take the writes"
  POS=$(sql primary 'SELECT @@GLOBAL.gtid_binlog_pos')
  [ "$(sql replica1 "SELECT MASTER_GTID_WAIT('$POS', 30)")" = 0 ] || fail=1
  { kill -KILL "${PIDS[primary]}" && wait "${PIDS[primary]}"; } 2>/dev/null || true
  wait_for "haproxy mysql_rw/primary DOWN" 20 state_is DOWN mysql_rw primary || fail=1
  wait_for "GET /backup?instance=replica1 -> 200 (source lost, last lag 0s)" 10 code_is 200 "/backup?instance=replica1" || fail=1
  wait_for "haproxy mysql_rw/replica1 (backup) still UP" 5 state_is UP mysql_rw replica1 || fail=1
  rw=$("$MARIADB" --no-defaults -h127.0.0.1 -P"$RW_PORT" -udemo -pdemo -N -B -e 'SELECT @@server_id' 2>&1 || true)
  [ "$rw" = 2 ] && echo "  ok    mysql via haproxy rw port $RW_PORT now reaches the backup (server_id 2)" ||
    { echo "  FAIL  mysql via haproxy rw port $RW_PORT after failover: $rw"; fail=1; }
  if [ "$fail" = 0 ]; then
    say "self-test PASSED"
    exit 0
  fi
  echo "--- replguard log (tail)"; tail -n 20 "$LOGS/replguard.log" || true
  echo "--- haproxy log (tail)"; tail -n 20 "$LOGS/haproxy.log" || true
  say "self-test FAILED (logs in $LOGS)"
  exit 1
fi

cat <<EOF

  replguard sandbox is up.            work dir: $WORK
    primary   127.0.0.1:${PORT[primary]}   replica1 127.0.0.1:${PORT[replica1]}   replica2 127.0.0.1:${PORT[replica2]}
    replguard http://127.0.0.1:$GUARD_PORT  (config $CONFIG, log $LOGS/replguard.log)
    haproxy   rw 127.0.0.1:$RW_PORT  ro 127.0.0.1:$RO_PORT  stats http://127.0.0.1:$STATS_PORT/

  What to try (in another terminal):
    curl -s http://127.0.0.1:$GUARD_PORT/status
    curl -i 'http://127.0.0.1:$GUARD_PORT/primary?port=${PORT[primary]}'
    curl -i 'http://127.0.0.1:$GUARD_PORT/replica?port=${PORT[replica1]}'
    curl -i 'http://127.0.0.1:$GUARD_PORT/replica?port=${PORT[primary]}'      # 503: not a replica

    # break replication on replica1 and watch it go 503 and DOWN in HAProxy:
    $MARIADB --no-defaults -S $RUN/replica1.sock -uroot -e 'STOP SLAVE SQL_THREAD'
    watch -n1 "curl -s -o /dev/null -w '%{http_code}\n' 'http://127.0.0.1:$GUARD_PORT/replica?port=${PORT[replica1]}'"
    curl -s 'http://127.0.0.1:$STATS_PORT/;csv' | cut -d, -f1,2,18
    $MARIADB --no-defaults -S $RUN/replica1.sock -uroot -e 'START SLAVE SQL_THREAD'

    # failover: replica1 is the backup in mysql_rw. Is it fit to take over right now?
    curl -i 'http://127.0.0.1:$GUARD_PORT/backup?instance=replica1'
    # kill the primary: HAProxy marks it DOWN; the backup stays UP because its guard saw it
    # caught up just before ("ok source_lost since ..., last lag 0s, relay log applied")
    kill -9 \$(cat $RUN/primary.pid)
    curl -s 'http://127.0.0.1:$GUARD_PORT/backup?instance=replica1'
    $MARIADB --no-defaults -h127.0.0.1 -P$RW_PORT -udemo -pdemo -e 'SELECT @@server_id'   # 2
    # the other story (restart the demo first): stop replica1's SQL thread, write on the
    # primary, then kill it: replica1 lags, so HAProxy has no server instead of stale data.

    # through HAProxy (user demo / password demo):
    $MARIADB --no-defaults -h127.0.0.1 -P$RW_PORT -udemo -pdemo -e 'SELECT @@server_id; INSERT INTO demo.t (note) VALUES ("hi")'
    $MARIADB --no-defaults -h127.0.0.1 -P$RO_PORT -udemo -pdemo -e 'SELECT @@server_id, COUNT(*) FROM demo.t'

  Press Ctrl-C to stop everything (files stay in $WORK).
EOF

# Wait until Ctrl-C, or until replguard or haproxy dies.
declare -A GONE=()
while :; do
  for k in replguard haproxy; do
    if ! alive "${PIDS[$k]}"; then
      warn "$k exited unexpectedly (logs in $LOGS)"
      exit 1
    fi
  done
  # A database may be killed on purpose (the failover story): say so once, keep running.
  for k in primary replica1 replica2; do
    if [ -z "${GONE[$k]:-}" ] && ! alive "${PIDS[$k]}"; then
      warn "mariadb $k is gone; replguard and HAProxy keep running"
      GONE[$k]=1
    fi
  done
  sleep 1 & wait $! || true
done
