# Shared by deploy/sandbox/demo.sh and demo-galera.sh (sourced, not run): the self-test's
# helpers. The caller defines CURL, GUARD_PORT and STATS_PORT.
# shellcheck shell=bash

# The status code of GET path on the guard.
http_code() { "$CURL" -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$GUARD_PORT$1" || true; }
haproxy_status() { # proxy server -> UP / DOWN / ...
  "$CURL" -s --max-time 2 "http://127.0.0.1:$STATS_PORT/;csv" |
    awk -F, -v px="$1" -v sv="$2" '$1 == px && $2 == sv { print $18 }'
}
wait_for() { # description, seconds, command...
  local what=$1 secs=$2 i; shift 2
  for ((i = 0; i < secs * 5; i++)); do
    "$@" && { printf '  ok    %s\n' "$what"; return 0; }
    sleep 0.2
  done
  printf '  FAIL  %s\n' "$what"; return 1
}
code_is() { [ "$(http_code "$2")" = "$1" ]; }
state_is() { [ "$(haproxy_status "$2" "$3")" = "$1" ]; }
