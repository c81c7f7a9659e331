#!/usr/bin/env bash
# Builds the Consul agent the integration tests run against, once, and caches it outside the
# repository keyed by version. Prints the binary's path.
#
# Consul v1.16.1 is the newest MPL-2.0 release; later releases are BUSL and must not be used.
set -euo pipefail

version=${CONSUL_VERSION:-v1.16.1}
cache=${XDSBRIDGE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xdsbridge-tools}
out="$cache/consul-$version/consul"

if [ -x "$out" ]; then
	echo "$out"
	exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/consul-build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

echo "building consul $version (several minutes, once per machine)" >&2
dir=$(GOFLAGS=-mod=mod go mod download -json "github.com/hashicorp/consul@$version" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "consul.sh: go mod download gave no module directory" >&2; exit 1; }
cp -r "$dir" "$work/src"
chmod -R u+w "$work/src"
# The module's replace block points at sibling directories of the consul repository, which the
# module proxy does not ship; the published versions of those modules are used instead.
sed -i '/^replace (/,/^)/d' "$work/src/go.mod"
(cd "$work/src" && GOFLAGS=-mod=mod GONOSUMDB=github.com/hashicorp/consul GOWORK=off \
	go build -trimpath -o "$work/consul" .) >&2
mkdir -p "$(dirname "$out")"
mv "$work/consul" "$out"
echo "$out"
