#!/usr/bin/env bash
# Makes sure promtool, which checks and unit-tests deploy/prometheus/alerts.yaml, is installed,
# and prints its path. Installs Debian's prometheus package (which ships promtool) when it is
# missing: a prebuilt package, where building Prometheus from the Go module proxy would take
# many minutes. The package does not need its server running; if the package started one, it is
# stopped.
set -euo pipefail

if ! command -v promtool >/dev/null 2>&1; then
	bash "$(dirname "$0")/apt-install.sh" promtool prometheus
	sudo=
	if [ "$(id -u)" -ne 0 ]; then
		sudo=sudo
	fi
	$sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
command -v promtool
