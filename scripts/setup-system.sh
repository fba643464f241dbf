#!/usr/bin/env bash
# Installs the system tools otter's end-to-end tests drive, when missing:
# curl (a real HTTP client), unshare (util-linux) and ip (iproute2) for the
# mDNS tests, which run in a private network namespace; Chromium for the
# Update page's browser tests; nginx, the static web server the pull tests
# download releases from; openssl; qemu-system-misc for the device core's
# riscv32 scenario; PostgreSQL, which the fleet server's tests start in a
# temporary data directory (initdb/pg_ctl). Debian packages. (Building otter itself needs only the
# Rust toolchain.)
set -euo pipefail
need=()
command -v curl >/dev/null || need+=(curl)
command -v unshare >/dev/null || need+=(util-linux)
command -v ip >/dev/null || need+=(iproute2)
command -v sha256sum >/dev/null || need+=(coreutils)
command -v chromium >/dev/null || need+=(chromium)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v openssl >/dev/null || need+=(openssl)
# The fleet server on PostgreSQL (crates/otter-server/tests/support/pg.rs).
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# The device core's bare-metal scenario (scripts/qemu-device.sh).
command -v qemu-system-riscv32 >/dev/null || need+=(qemu-system-misc)
# The browser-test driver (playwright-core) needs Node.js 20 or later.
node_major=$(node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/' || true)
[ "${node_major:-0}" -ge 20 ] 2>/dev/null || need+=(nodejs npm)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
echo "installing ${need[*]}"
if [ "$(id -u)" -ne 0 ]; then
    sudo=sudo
else
    sudo=
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
node_major=$(node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/' || true)
if [ "${node_major:-0}" -lt 20 ] 2>/dev/null; then
    echo "Node.js $(node --version 2>/dev/null || echo missing) is too old for the browser tests' driver (playwright-core needs 20+): install Node.js 20 or later (e.g. from nodejs.org or NodeSource) and run again" >&2
    exit 1
fi
