#!/usr/bin/env bash
# Makes sure podman, which `make image` and the image test use, is installed, and prints its
# path. Installs Debian's podman when it is missing.
set -euo pipefail

if ! command -v podman >/dev/null 2>&1; then
	bash "$(dirname "$0")/apt-install.sh" podman podman
fi
command -v podman
