#!/usr/bin/env bash
# Runs every test of the workspace: starts the services the tests need when they are down,
# then the unit and integration tests (nextest) and the doc tests (README snippets included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
# Chromium and playwright-core for the browser tests (installed when missing; never skipped).
bash scripts/browser-deps.sh
# The client tests run against Python websockets too (a venv is made under target/); never skip.
export WHARF_CLIENT_REQUIRE_PYTHON=1
cargo nextest run --workspace --all-targets --no-fail-fast
cargo test --workspace --doc
