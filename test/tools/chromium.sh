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

bash "$(dirname "$0")/apt-install.sh" chromium chromium
command -v chromium
