#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 30) on its corpus in fuzz/corpus/<target>,
# without a sanitizer (Rust is memory-safe here: the fuzzers look for panics, and that build is
# quick). Installs cargo-fuzz when missing. Exits non-zero on the first crash; the input is then
# in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh                    # every target, 30 s each
#   FUZZ_SECONDS=300 fuzz/run.sh http_query
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-30}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(gtid_parse http_query agent_line config_toml policy_file state_file)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP unlocks them on the stable toolchain.
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O -s none
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "==> fuzz $t for ${seconds}s"
  log="$(mktemp)"
  status=0
  cargo fuzz run -O -s none "$t" "fuzz/corpus/$t" -- -max_total_time="$seconds" >"$log" 2>&1 || status=$?
  grep -E "^Done|panicked|SUMMARY|crash-" "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$log" >&2
    echo "fuzz $t: failed (exit $status); a crash's input is in fuzz/artifacts/$t/" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
done
echo "==> fuzzing: no crash"
