#!/usr/bin/env bash
# Installs what the browser tests (crates/wharf-app/tests/browser.rs) need when it is
# missing: Debian's chromium (and node/npm), and npm's playwright-core in tests/browser.
# Fails loudly when an install fails: the browser tests are never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "browser-deps: installing ${need_apt[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
fi

if [ ! -f tests/browser/node_modules/playwright-core/package.json ]; then
  echo "browser-deps: installing playwright-core (npm ci in tests/browser)"
  # playwright-core downloads no browser; Debian's chromium is used instead.
  (cd tests/browser && npm ci --no-audit --no-fund)
fi

[ -x /usr/bin/chromium ] || { echo "browser-deps: /usr/bin/chromium is still missing" >&2; exit 1; }
command -v node >/dev/null 2>&1 || { echo "browser-deps: node is still missing" >&2; exit 1; }
echo "browser-deps: $(/usr/bin/chromium --version 2>/dev/null || echo chromium), node $(node --version)"
