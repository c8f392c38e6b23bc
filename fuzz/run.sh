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
  cargo fuzz run -O -s none "$t" "fuzz/corpus/$t" -- -max_total_time="$seconds" 2>&1 | grep -E "^Done|panicked|SUMMARY|crash-" || true
  # The pipeline above hides the fuzzer's status: ask again from its artifacts.
  if ls "fuzz/artifacts/$t"/crash-* >/dev/null 2>&1; then
    echo "fuzz $t: crash, input in fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
echo "==> fuzzing: no crash"
