#!/usr/bin/env bash
# Makes sure BIND 9's named, which the DNS source's integration tests run, is installed, and
# prints its path. Installs the Debian package bind9 when named is missing (needs root and apt).
set -euo pipefail

if bin=$(command -v named 2>/dev/null) || bin=$(PATH=$PATH:/usr/sbin command -v named 2>/dev/null); then
	echo "$bin"
	exit 0
fi

bash "$(dirname "$0")/apt-install.sh" named bind9
# The package starts a system named on port 53; the tests run their own and need none.
sudo=
if [ "$(id -u)" -ne 0 ]; then
	sudo=sudo
fi
$sudo systemctl disable --now named >/dev/null 2>&1 || true
command -v named 2>/dev/null || PATH=$PATH:/usr/sbin command -v named
