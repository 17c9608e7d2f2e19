#!/usr/bin/env bash
# The whole test suite: installs what it needs, checks formatting and lints, runs every test.
# Used as is by CI (.ci/run). Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

mkdir -p target
# Property tests explore random parameter sets; CI uses a fixed exploration seed so that a run is
# repeatable (override it to explore further: PROPTEST_RNG_SEED=… bash scripts/test.sh).
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261125}"
step "toolchain"
cargo --version
rustc --version

step "system packages (a real MQTT broker, openssl for test certificates, Chromium for the UI tests)"
missing=()
command -v mosquitto >/dev/null || missing+=(mosquitto)
command -v mosquitto_sub >/dev/null || missing+=(mosquitto-clients)
command -v openssl >/dev/null || missing+=(openssl)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

step "web UI: install, build, check the committed bundle is what web/ builds, unit tests"
(cd web && npm ci --no-audit --no-fund && npm run build)
if [ -n "$(git status --porcelain -- web/dist)" ]; then
  git status --porcelain -- web/dist
  echo "web/dist differs from what web/ builds: run 'npm run build' in web/ and commit web/dist" >&2
  exit 1
fi
(cd web && npm test) 2>&1 | tee target/web-unit.txt

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --release -- -D warnings

step "PostgreSQL for the run registry tests (a throw-away cluster unless CELLFAB_TEST_POSTGRES_URL is set)"
source scripts/postgres.sh

step "tests (release build: the cell line simulates ~15 000 cells per batch)"
cargo test --workspace --release 2>&1 | tee target/test-output.txt

step "benchmarks in quick mode (every part of cellfab bench, tiny, and each divan benchmark once; fail only on errors, assert no timing)"
target/release/cellfab bench --quick
cargo bench -p cellfab-model --bench stepping -- --test

step "web UI end to end (Debian's Chromium driven by playwright-core against cellfab serve)"
cargo build --release -p cellfab
(cd web && node e2e/run.mjs) 2>&1 | tee target/e2e-output.txt

step "tables read back with pyarrow: every format of a small run against the JSON files and the manifest"
python3 -c 'import pyarrow' 2>/dev/null || python3 -m pip install --quiet pyarrow
tables_tmp=$(mktemp -d)
printf '[cell.assembly]\nmax_cells = 64\n' > "$tables_tmp/small.toml"
tables_run=$(target/release/cellfab run --quiet --seed 7 --start 2025-01-01T00:00:00Z \
  --config "$tables_tmp/small.toml" --out "$tables_tmp/out" --format json,jsonl,csv,parquet)
python3 scripts/check_tables.py "$tables_run" 2>&1 | tee target/tables-output.txt
rm -rf "$tables_tmp"

step "fuzzing: every target from its seed corpus for a short while (long campaigns: docs/RELIABILITY.md)"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
(cd fuzz && cargo fuzz build -s none)
: > target/fuzz-output.txt
for t in config_toml config_json api_bodies seed_record connection_string; do
  mkdir -p "target/fuzz-corpus/$t"
  (cd fuzz && cargo fuzz run -s none "$t" "../target/fuzz-corpus/$t" "seeds/$t" -- \
      -max_total_time="${FUZZ_SECONDS:-15}" -print_final_stats=1) > "target/fuzz-$t.txt" 2>&1 \
    && echo "ok fuzz $t: $(grep -Eo 'number_of_executed_units: [0-9]+' "target/fuzz-$t.txt")" >> target/fuzz-output.txt \
    || { echo "not ok fuzz $t" >> target/fuzz-output.txt; tail -40 "target/fuzz-$t.txt"; }
done
cat target/fuzz-output.txt

# one closing line for the whole suite
passed=$( (grep -Eo '^test result: ok\. [0-9]+ passed' target/test-output.txt || true) | awk '{s+=$4} END {print s+0}')
failed=$( (grep -Eo '[0-9]+ failed' target/test-output.txt || true) | awk '{s+=$1} END {print s+0}')
web_passed=$(sed 's/\x1b\[[0-9;]*m//g' target/web-unit.txt | grep -Eo 'Tests +[0-9]+ passed' | grep -Eo '[0-9]+' | head -1 || true)
e2e_passed=$(grep -Ec '^ok ' target/e2e-output.txt || true)
e2e_failed=$(grep -Ec '^not ok ' target/e2e-output.txt || true)
tables_passed=$(grep -Ec '^ok ' target/tables-output.txt || true)
tables_failed=$(grep -Ec '^not ok ' target/tables-output.txt || true)
fuzz_passed=$(grep -Ec '^ok fuzz' target/fuzz-output.txt || true)
fuzz_failed=$(grep -Ec '^not ok fuzz' target/fuzz-output.txt || true)

echo
echo "cellfab: $((passed + ${web_passed:-0} + e2e_passed + tables_passed + fuzz_passed)) passed, $((failed + e2e_failed + tables_failed + fuzz_failed)) failed"
[ "$((failed + e2e_failed + tables_failed + fuzz_failed))" -eq 0 ]
