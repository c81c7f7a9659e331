#!/usr/bin/env bash
# Installs Debian packages for the test tools: apt-install.sh TOOL PACKAGE. Prints nothing on
# stdout; fails loudly when apt-get is missing or the install fails. Used by the other scripts
# here when their tool is not on PATH (needs root, or sudo, and apt).
set -euo pipefail

tool=$1
pkg=$2
if ! command -v apt-get >/dev/null 2>&1; then
	echo "$tool not found and apt-get unavailable; install Debian's $pkg (or your system's) by hand" >&2
	exit 1
fi
sudo=
if [ "$(id -u)" -ne 0 ]; then
	sudo=sudo
fi
echo "installing $pkg ($tool)" >&2
$sudo apt-get update >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "$pkg" >&2
