#!/usr/bin/env bash
# Runs replguard's whole test suite: unit tests, HTTP tests, and integration tests against real
# mariadbd instances started on free loopback ports. Installs what it lacks first.
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/sandbox/install-deps.sh
exec cargo test "$@"
