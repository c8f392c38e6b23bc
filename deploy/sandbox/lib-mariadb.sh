# Shared by deploy/sandbox/demo.sh and bench/run.sh (sourced, not run): throw-away MariaDB
# servers on loopback from one pre-initialised data directory, with GTID replication and the
# least-privilege check user.
#
# The caller defines say, die and alive, and the variables WORK, DATA, RUN, LOGS, PWFILE,
# MARIADBD, INSTALL_DB, MARIADB and the associative arrays PORT and SERVER_ID (by server name).

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# sandbox_require VAR=binary:fallback_path:package ...: sets each VAR to the binary's path,
# installing the packages of the missing ones with apt-get first (unless SKIP_INSTALL=1).
sandbox_require() {
  local spec var bin path pkg found pass missing
  for pass in 1 2; do
    missing=()
    for spec in "$@"; do
      var=${spec%%=*}
      IFS=: read -r bin path pkg <<< "${spec#*=}"
      found=""
      if [ -x "$path" ]; then found=$path; else found=$(command -v "$bin" 2>/dev/null || true); fi
      printf -v "$var" '%s' "$found"
      [ -n "$found" ] || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$pass" = 2 ] && die "still missing after installation: ${missing[*]}"
    [ "${SKIP_INSTALL:-0}" = 1 ] && die "missing: ${missing[*]} (and SKIP_INSTALL=1)"
    command -v apt-get >/dev/null || die "missing: ${missing[*]}; install them with your package manager"
    say "installing ${missing[*]} (apt-get)"
    as_root apt-get update -qq
    # shellcheck disable=SC2046
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
  done
}

# Fresh DATA, RUN and LOGS under WORK; USER_ARGS runs mariadbd as root when we are root.
sandbox_prepare_dirs() {
  mkdir -p "$WORK"
  rm -rf "$DATA" "$RUN" "$LOGS"
  mkdir -p "$DATA" "$RUN" "$LOGS"
  [ ${#RUN} -lt 90 ] || die "the work directory is too long for unix socket paths: $WORK"
  USER_ARGS=()
  if [ "$(id -u)" -eq 0 ]; then USER_ARGS=(--user=root); fi
}

# sandbox_template [EXTRA_SQL]: initialises TEMPLATE once, with users created in bootstrap mode
# (no networking), so every server copied from it starts with identical grants and an empty
# binlog: GTID replication then starts from nothing.
#   repl       REPLICATION SLAVE     (used by the replicas)
#   replguard  SLAVE MONITOR only    (the health-check user: least privilege; password in PWFILE)
sandbox_template() {
  local extra_sql=${1:-}
  GUARD_PASSWORD=$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 20)
  (umask 077 && printf '%s' "$GUARD_PASSWORD" > "$PWFILE")
  chmod 600 "$PWFILE"
  say "initialising a template datadir (mariadb-install-db)"
  TEMPLATE="$DATA/template"
  "$INSTALL_DB" --no-defaults --auth-root-authentication-method=normal --skip-test-db \
    --datadir="$TEMPLATE" --tmpdir="$RUN" --innodb-log-file-size=8M "${USER_ARGS[@]}" \
    > "$LOGS/install-db.log" 2>&1 || { tail -n 30 "$LOGS/install-db.log"; die "mariadb-install-db failed"; }
  if ! "$MARIADBD" --no-defaults --bootstrap --datadir="$TEMPLATE" --tmpdir="$RUN" \
    --innodb-log-file-size=8M --log-error="$LOGS/bootstrap.log" "${USER_ARGS[@]}" \
    > "$LOGS/bootstrap.out" 2>&1 <<SQL
FLUSH PRIVILEGES;
CREATE USER 'repl'@'%' IDENTIFIED BY 'repl';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
CREATE USER 'replguard'@'%' IDENTIFIED BY '$GUARD_PASSWORD';
GRANT SLAVE MONITOR ON *.* TO 'replguard'@'%';
CREATE USER 'replguard'@'localhost' IDENTIFIED BY '$GUARD_PASSWORD';
GRANT SLAVE MONITOR ON *.* TO 'replguard'@'localhost';
$extra_sql
SQL
  then
    tail -n 30 "$LOGS/bootstrap.log"; die "creating users failed"
  fi
}

sql() { # name, sql...   (as root over the unix socket)
  local n=$1; shift
  "$MARIADB" --no-defaults -S "$RUN/$n.sock" -uroot -N -B -e "$*"
}

# sandbox_start_mariadb NAME [EXTRA_MARIADBD_ARGS...]: copies the template, starts mariadbd on
# 127.0.0.1:${PORT[NAME]} and waits until it answers. Sets SANDBOX_PID and writes
# RUN/NAME.pid, and RUN/NAME.argv (NUL-separated) so the server can be started again after a
# SIGKILL. The process is disowned: a deliberate SIGKILL prints no job notice.
sandbox_start_mariadb() {
  local n=$1 i; shift
  cp -a "$TEMPLATE" "$DATA/$n"
  local argv=("$MARIADBD" --no-defaults --datadir="$DATA/$n" --tmpdir="$RUN"
    --socket="$RUN/$n.sock" --pid-file="$RUN/$n.mariadbd-pidfile"
    --port="${PORT[$n]}" --bind-address=127.0.0.1 --server-id="${SERVER_ID[$n]}"
    --log-bin=mysql-bin --log-slave-updates --binlog-format=ROW --gtid-domain-id=0
    --skip-name-resolve --log-error="$LOGS/$n.err" --skip-slave-start
    --innodb-buffer-pool-size=16M --innodb-log-file-size=8M
    --innodb-flush-log-at-trx-commit=2 --performance-schema=OFF
    "$@" "${USER_ARGS[@]}")
  printf '%s\0' "${argv[@]}" > "$RUN/$n.argv"
  "${argv[@]}" >> "$LOGS/$n.stdout" 2>&1 &
  SANDBOX_PID=$!
  disown "$SANDBOX_PID"
  echo "$SANDBOX_PID" > "$RUN/$n.pid"
  for ((i = 0; i < 300; i++)); do
    sql "$n" 'SELECT 1' >/dev/null 2>&1 && return 0
    alive "$SANDBOX_PID" || break
    sleep 0.1
  done
  tail -n 30 "$LOGS/$n.err" >&2 || true
  die "mariadb $n did not start (log: $LOGS/$n.err)"
}

# sandbox_replicate PRIMARY REPLICA...: GTID replication from PRIMARY.
sandbox_replicate() {
  local primary=$1 n; shift
  for n in "$@"; do
    sql "$n" "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${PORT[$primary]},
              MASTER_USER='repl', MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos,
              MASTER_CONNECT_RETRY=1; START SLAVE;"
  done
}

# sandbox_wait_caught_up PRIMARY REPLICA...: waits (30 s at most) until every replica has
# applied the primary's current binlog position.
sandbox_wait_caught_up() {
  local primary=$1 n r pos; shift
  pos=$(sql "$primary" 'SELECT @@GLOBAL.gtid_binlog_pos')
  for n in "$@"; do
    r=$(sql "$n" "SELECT MASTER_GTID_WAIT('$pos', 30)")
    [ "$r" = 0 ] || { sql "$n" 'SHOW SLAVE STATUS\G' >&2 || true; die "$n did not catch up with $primary"; }
  done
}
