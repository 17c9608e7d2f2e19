#!/usr/bin/env bash
# The whole test suite: installs what it needs, checks formatting and lints, runs every test.
# Used as is by CI (.ci/run). Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
cargo --version
rustc --version

step "system packages (MQTT tests need a real broker and openssl for certificates)"
missing=()
command -v mosquitto >/dev/null || missing+=(mosquitto)
command -v mosquitto_sub >/dev/null || missing+=(mosquitto-clients)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --release -- -D warnings

step "tests (release build: the cell line simulates ~15 000 cells per batch)"
cargo test --workspace --release 2>&1 | tee target/test-output.txt
# one closing line for the whole suite
passed=$(grep -Eo '^test result: ok\. [0-9]+ passed' target/test-output.txt | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
echo
echo "cellfab: ${passed} passed, ${failed} failed"
