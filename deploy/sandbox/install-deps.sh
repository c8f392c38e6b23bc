#!/usr/bin/env bash
# Installs what replguard's tests and demo need from Debian/Ubuntu packages, when missing:
# mariadb-server (mariadbd, mariadb-install-db, mariadb client), haproxy and percona-toolkit
# (pt-heartbeat, for the heartbeat tests); chromium (the /ui test drives it headless) and
# prometheus (for promtool, which lints /metrics); systemd (systemd-analyze checks the unit);
# galera-4 and rsync (a three-node Galera cluster on loopback); etcd-server (the writer lease's
# tests run a three-member cluster on loopback) and protobuf-compiler (protoc: the etcd client
# crate compiles etcd's API definitions when it builds).
set -euo pipefail

missing=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have mariadbd || missing+=(mariadb-server)
have mariadb-install-db || missing+=(mariadb-server)
have mariadb || missing+=(mariadb-client)
have haproxy || missing+=(haproxy)
have chromium || missing+=(chromium)
have promtool || missing+=(prometheus)
have pt-heartbeat || missing+=(percona-toolkit)
have systemd-analyze || missing+=(systemd)
# A real Galera cluster for the galera tests: the provider, and rsync for state transfers.
[ -e /usr/lib/galera/libgalera_smm.so ] || [ -e /usr/lib/libgalera_smm.so ] || missing+=(galera-4)
have rsync || missing+=(rsync)
have etcd || missing+=(etcd-server)
have protoc || missing+=(protobuf-compiler)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  # Only promtool is wanted from the prometheus package: do not leave its server running.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
  # Only the etcd binary is wanted: the tests start their own members on free ports.
  if [[ " ${missing[*]} " == *" etcd-server "* ]] && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install a Rust toolchain (https://rustup.rs) and run this again" >&2
  exit 1
fi
