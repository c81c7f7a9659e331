#!/usr/bin/env bash
# Makes sure systemd-analyze, which verifies deploy/systemd/xdsbridge.service, is installed, and
# prints its path. Installs Debian's systemd package when it is missing (the test only reads
# unit files; nothing needs systemd to be running).
set -euo pipefail

if ! command -v systemd-analyze >/dev/null 2>&1; then
	bash "$(dirname "$0")/apt-install.sh" systemd-analyze systemd
fi
command -v systemd-analyze
