#!/usr/bin/env bash
# The README's quick start: on a fresh Debian machine, as root, install what is missing and run
# the main job — the lab with overlapping sites (two over WireGuard, one over IPsec with strongSwan),
# traffic from all at once, what each site got back with Automatic Return Routing on and off.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "quickstart: run as root (the lab creates network namespaces and TUN devices)" >&2
  exit 1
fi
source scripts/debian-deps.sh
install_missing_debian_packages
[ -d node_modules ] && [ -f native/build/Release/tether_io.node ] || npm ci --no-audit --no-fund
exec node --import tsx src/cli/tether.ts lab demo "$@"
