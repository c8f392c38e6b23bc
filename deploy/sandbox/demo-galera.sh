#!/usr/bin/env bash
# replguard sandbox, Galera: a three-node MariaDB Galera cluster (galera-4) on loopback,
# replguard watching every node with the galera policy, and HAProxy with a single writer
# (node1, the others as backup) and a read pool over every Synced node.
#
#   deploy/sandbox/demo.sh --galera            bring everything up, print what to try, wait for Ctrl-C
#   deploy/sandbox/demo.sh --galera --check    bring up, self-test, tear down; exit 0 / 1
#
# Everything lives under $REPLGUARD_DEMO_DIR/galera (default /tmp/replguard-demo/galera); on
# exit the processes are stopped and the files are left in place for inspection.
#
# Environment overrides (defaults in brackets):
#   REPLGUARD_DEMO_DIR [/tmp/replguard-demo]   NODE1_PORT [13311] NODE2_PORT [13312]
#   NODE3_PORT [13313]  GUARD_PORT [31337]  RW_PORT [13300]  RO_PORT [13301]  STATS_PORT [8404]
#   REPLGUARD_BIN [<repo>/target/release/replguard, built here]
#   SKIP_BUILD=1 (do not run cargo build)      SKIP_INSTALL=1 (never run apt-get)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

WORK=${REPLGUARD_DEMO_DIR:-/tmp/replguard-demo}/galera
GUARD_PORT=${GUARD_PORT:-31337}
RW_PORT=${RW_PORT:-13300}
RO_PORT=${RO_PORT:-13301}
STATS_PORT=${STATS_PORT:-8404}
CHECK_MODE=${REPLGUARD_DEMO_CHECK:-0}
for arg in "$@"; do
  case "$arg" in
    --check) CHECK_MODE=1 ;;
    --galera) ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

NAMES=(node1 node2 node3)
declare -A PORT=([node1]=${NODE1_PORT:-13311} [node2]=${NODE2_PORT:-13312} [node3]=${NODE3_PORT:-13313})
declare -A SERVER_ID=([node1]=1 [node2]=2 [node3]=3)
# gcomm, IST and SST ports: client port + 100, + 200, + 300.
RUN="$WORK/run"; DATA="$WORK/data"; LOGS="$WORK/logs"
CONFIG="$WORK/replguard.toml"; PWFILE="$WORK/replguard.password"; HAPROXY_CFG="$WORK/haproxy.cfg"

say()  { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
warn() { printf '\033[1;33mwarning:\033[0m %s\n' "$*" >&2; }
die()  { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# shellcheck source=deploy/sandbox/lib-mariadb.sh
. "$SCRIPT_DIR/lib-mariadb.sh"

sandbox_require MARIADBD=mariadbd:/usr/sbin/mariadbd:mariadb-server \
  INSTALL_DB=mariadb-install-db:/usr/bin/mariadb-install-db:mariadb-server \
  MARIADB=mariadb:/usr/bin/mariadb:mariadb-client \
  HAPROXY=haproxy:/usr/sbin/haproxy:haproxy CURL=curl:/usr/bin/curl:curl \
  RSYNC=rsync:/usr/bin/rsync:rsync
galera_lib() { for g in /usr/lib/galera/libgalera_smm.so /usr/lib/libgalera_smm.so; do [ -e "$g" ] && { echo "$g"; return 0; }; done; return 1; }
if ! GALERA=$(galera_lib); then
  [ "${SKIP_INSTALL:-0}" = 1 ] && die "missing: galera-4 (and SKIP_INSTALL=1)"
  say "installing galera-4 (apt-get)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq galera-4 >/dev/null
  GALERA=$(galera_lib) || die "still missing after installation: galera-4"
fi

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

declare -A PIDS=()
stop_pid() { # label pid
  local pid=$2 i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do alive "$pid" || return 0; sleep 0.1; done
  warn "$1 ($pid) did not stop in 20s, killing"; kill -KILL "$pid" 2>/dev/null || true
}
teardown() {
  echo
  say "stopping haproxy, replguard and the cluster (files stay in $WORK)"
  for k in haproxy replguard node3 node2 node1; do
    [ -n "${PIDS[$k]:-}" ] && stop_pid "$k" "${PIDS[$k]}"
  done
  return 0
}
trap 'teardown' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for n in "${NAMES[@]}"; do
  for p in "${PORT[$n]}" $((PORT[$n] + 100)) $((PORT[$n] + 200)) $((PORT[$n] + 300)); do
    port_busy "$p" && die "port 127.0.0.1:$p is already in use (override with NODE*_PORT)"
  done
done
for p in "$GUARD_PORT" "$RW_PORT" "$RO_PORT" "$STATS_PORT"; do
  port_busy "$p" && die "port 127.0.0.1:$p is already in use"
done

sandbox_prepare_dirs
sandbox_template "CREATE USER 'demo'@'%' IDENTIFIED BY 'demo';
GRANT ALL PRIVILEGES ON demo.* TO 'demo'@'%';"
# rsync state transfers run as the server's user, who must own the datadirs: as root, mysql.
RUN_AS=()
if [ "$(id -u)" -eq 0 ]; then
  chown -R mysql:mysql "$DATA" "$RUN"
  chmod 755 "$WORK"
  RUN_AS=(--user=mysql)
fi

GCOMM=""
for n in "${NAMES[@]}"; do GCOMM+="${GCOMM:+,}127.0.0.1:$((PORT[$n] + 100))"; done
start_node() { # name [--wsrep-new-cluster]
  local n=$1; shift
  local g=$((PORT[$n] + 100)) ist=$((PORT[$n] + 200)) sst=$((PORT[$n] + 300))
  [ -d "$DATA/$n" ] || { cp -a "$TEMPLATE" "$DATA/$n"; [ ${#RUN_AS[@]} -eq 0 ] || chown -R mysql:mysql "$DATA/$n"; }
  "$MARIADBD" --no-defaults --datadir="$DATA/$n" --tmpdir="$RUN" --socket="$RUN/$n.sock" \
    --pid-file="$RUN/$n.mariadbd-pidfile" --port="${PORT[$n]}" --bind-address=127.0.0.1 \
    --server-id="${SERVER_ID[$n]}" --log-error="$LOGS/$n.err" --skip-name-resolve \
    --binlog-format=ROW --innodb-autoinc-lock-mode=2 --innodb-buffer-pool-size=16M \
    --innodb-log-file-size=8M --innodb-flush-log-at-trx-commit=2 --performance-schema=OFF \
    --wsrep-on=ON --wsrep-provider="$GALERA" --wsrep-cluster-name=replguard-demo \
    --wsrep-node-name="$n" --wsrep-cluster-address="gcomm://$GCOMM" \
    --wsrep-node-address="127.0.0.1:$g" --wsrep-sst-method=rsync \
    --wsrep-sst-receive-address="127.0.0.1:$sst" \
    --wsrep-provider-options="gmcast.listen_addr=tcp://127.0.0.1:$g;ist.recv_addr=127.0.0.1:$ist;evs.keepalive_period=PT0.5S;evs.suspect_timeout=PT2S;evs.inactive_timeout=PT3S;evs.inactive_check_period=PT0.5S;evs.install_timeout=PT2S;gmcast.peer_timeout=PT1S" \
    "$@" "${RUN_AS[@]}" >> "$LOGS/$n.stdout" 2>&1 &
  PIDS[$n]=$!
  disown "${PIDS[$n]}"
}
wait_synced() { # name
  local i
  for ((i = 0; i < 600; i++)); do
    [ "$(sql "$1" "SHOW STATUS LIKE 'wsrep_local_state_comment'" 2>/dev/null | cut -f2)" = Synced ] && return 0
    alive "${PIDS[$1]}" || break
    sleep 0.1
  done
  tail -n 30 "$LOGS/$1.err" >&2 || true
  die "galera $1 did not become Synced (log: $LOGS/$1.err)"
}
say "bootstrapping node1 on 127.0.0.1:${PORT[node1]}"
start_node node1 --wsrep-new-cluster
wait_synced node1
say "node2 and node3 join (rsync state transfer)"
start_node node2; start_node node3
wait_synced node2; wait_synced node3
sql node1 "CREATE DATABASE demo; CREATE TABLE demo.t (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(100));"

{
  echo "# generated by deploy/sandbox/demo-galera.sh"
  echo "listen = \"127.0.0.1:$GUARD_PORT\""
  echo 'interval = "1s"'
  echo 'timeout = "500ms"'
  echo 'max_sample_age = "3s"'
  for n in "${NAMES[@]}"; do
    printf '\n[[instance]]\nname = "%s"\nhost = "127.0.0.1"\nport = %s\nuser = "replguard"\npassword_file = "%s"\npolicy = "galera"\n' \
      "$n" "${PORT[$n]}" "$PWFILE"
  done
} > "$CONFIG"
say "starting replguard on 127.0.0.1:$GUARD_PORT"
"$REPLGUARD" serve --config "$CONFIG" > "$LOGS/replguard.log" 2>&1 &
PIDS[replguard]=$!
for ((i = 0; i < 100; i++)); do
  "$CURL" -s -o /dev/null "http://127.0.0.1:$GUARD_PORT/status" && break
  alive "${PIDS[replguard]}" || { cat "$LOGS/replguard.log" >&2; die "replguard exited"; }
  sleep 0.1
done

cat > "$HAPROXY_CFG" <<CFG
# generated by deploy/sandbox/demo-galera.sh (see deploy/haproxy-galera.cfg)
defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout check 1s
    default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions

# writes: one writer (node1); node2 and node3 take over, in order, when it is DOWN
listen galera_rw
    bind 127.0.0.1:$RW_PORT
    option httpchk
    http-check send meth GET uri-lf /galera-writer?instance=%[srv_name]
    http-check expect status 200
    server node1 127.0.0.1:${PORT[node1]} check addr 127.0.0.1 port $GUARD_PORT
    server node2 127.0.0.1:${PORT[node2]} check addr 127.0.0.1 port $GUARD_PORT backup
    server node3 127.0.0.1:${PORT[node3]} check addr 127.0.0.1 port $GUARD_PORT backup

# reads: every Synced node in the Primary component
listen galera_ro
    bind 127.0.0.1:$RO_PORT
    balance leastconn
    option httpchk
    http-check send meth GET uri-lf /galera?instance=%[srv_name]
    http-check expect status 200
    server node1 127.0.0.1:${PORT[node1]} check addr 127.0.0.1 port $GUARD_PORT
    server node2 127.0.0.1:${PORT[node2]} check addr 127.0.0.1 port $GUARD_PORT
    server node3 127.0.0.1:${PORT[node3]} check addr 127.0.0.1 port $GUARD_PORT

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

. "$SCRIPT_DIR/lib-check.sh"
rw() { "$MARIADB" --no-defaults -h 127.0.0.1 -P "$RW_PORT" -udemo -pdemo -N -B -e "$*" 2>/dev/null; }
writer_is() { [ "$(rw 'SELECT @@wsrep_node_name')" = "$1" ]; }

if [ "$CHECK_MODE" = 1 ]; then
  say "self-test"
  fail=0
  for n in "${NAMES[@]}"; do
    wait_for "GET /galera?instance=$n -> 200" 20 code_is 200 "/galera?instance=$n" || fail=1
  done
  for n in "${NAMES[@]}"; do
    wait_for "haproxy galera_rw/$n UP" 20 state_is UP galera_rw "$n" || fail=1
  done
  wait_for "writes go to node1" 10 writer_is node1 || fail=1
  for i in $(seq 1 50); do rw "INSERT INTO demo.t (note) VALUES ('row $i')" || fail=1; done
  sql node1 "SET GLOBAL wsrep_desync = ON"
  wait_for "node1 desynced -> 503 naming its state" 10 \
    sh -c "'$CURL' -s -i 'http://127.0.0.1:$GUARD_PORT/galera?instance=node1' | head -1 | grep -q 'Donor/Desynced'" || fail=1
  wait_for "writes move to node2" 20 writer_is node2 || fail=1
  sql node1 "SET GLOBAL wsrep_desync = OFF"
  wait_for "node1 Synced again -> writes come back to it" 20 writer_is node1 || fail=1
  kill -KILL "${PIDS[node1]}"
  wait_for "node1 killed -> a backup takes the writes" 20 sh -c "[ \"\$('$MARIADB' --no-defaults -h 127.0.0.1 -P $RW_PORT -udemo -pdemo -N -B -e 'SELECT @@wsrep_node_name' 2>/dev/null)\" = node2 ]" || fail=1
  wait_for "every row written through node1 is there" 10 sh -c "[ \"\$('$MARIADB' --no-defaults -h 127.0.0.1 -P $RW_PORT -udemo -pdemo -N -B -e 'SELECT COUNT(*) FROM demo.t' 2>/dev/null)\" = 50 ]" || fail=1
  if [ "$fail" = 0 ]; then say "self-test PASSED"; exit 0; fi
  say "self-test FAILED (logs in $LOGS)"; exit 1
fi

cat <<EOF

A three-node Galera cluster, replguard and HAProxy are running. Try:

  curl -i 'http://127.0.0.1:$GUARD_PORT/galera?instance=node1'
  mariadb -h 127.0.0.1 -P $RW_PORT -udemo -pdemo -e 'SELECT @@wsrep_node_name'   # the writer
  mariadb -S $RUN/node1.sock -uroot -e 'SET GLOBAL wsrep_desync = ON'    # node1 out, writes move
  open http://127.0.0.1:$GUARD_PORT/ui and http://127.0.0.1:$STATS_PORT/

Ctrl-C stops everything.
EOF
while alive "${PIDS[replguard]}"; do sleep 1; done
