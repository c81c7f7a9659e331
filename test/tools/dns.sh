#!/usr/bin/env bash
# Makes sure BIND 9's named, which the DNS source's integration tests run, is installed, and
# prints its path. Installs the Debian package bind9 when named is missing (needs root and apt).
set -euo pipefail

if bin=$(command -v named 2>/dev/null) || bin=$(PATH=$PATH:/usr/sbin command -v named 2>/dev/null); then
	echo "$bin"
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "dns.sh: named not found and apt-get unavailable; install BIND 9 (named) by hand" >&2
	exit 1
fi
sudo=
if [ "$(id -u)" -ne 0 ]; then
	sudo=sudo
fi
echo "installing bind9 (named)" >&2
$sudo apt-get update >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends bind9 >&2
# The package starts a system named on port 53; the tests run their own and need none.
$sudo systemctl disable --now named >/dev/null 2>&1 || true
command -v named 2>/dev/null || PATH=$PATH:/usr/sbin command -v named
