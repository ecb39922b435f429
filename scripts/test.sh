#!/usr/bin/env bash
# The whole test suite: provision the real test environment (cached: seconds
# after the first run), then formatting, lints and every test of the
# workspace. Tests that need the control plane fail (not skip) under CI=true
# when it cannot start.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/provision-test-env.sh >/dev/null
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast
