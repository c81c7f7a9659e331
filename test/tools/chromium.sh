#!/usr/bin/env bash
# Makes sure a headless-capable Chromium, which the status page's browser test runs, is installed,
# and prints its path. Installs the Debian package chromium when it is missing (needs root and apt).
set -euo pipefail

for name in chromium chromium-browser; do
	if bin=$(command -v "$name" 2>/dev/null); then
		echo "$bin"
		exit 0
	fi
done

if ! command -v apt-get >/dev/null 2>&1; then
	echo "chromium.sh: chromium not found and apt-get unavailable; install Chromium by hand" >&2
	exit 1
fi
sudo=
if [ "$(id -u)" -ne 0 ]; then
	sudo=sudo
fi
echo "installing chromium" >&2
$sudo apt-get update >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends chromium >&2
command -v chromium
