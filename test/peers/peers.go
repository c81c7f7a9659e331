// Package peers decides what a test does when a real peer it runs against
// (a Consul agent, BIND's named, root for network namespaces) is missing.
//
// A developer's plain `go test` skips such a test, saying what is missing.
// `make test`, and so CI, sets XDSBRIDGE_REQUIRE_PEERS=1: there the test
// fails instead, naming the peer, because a suite that promised to run
// against the real thing must not pass without it. CI=true does the same.
package peers

import (
	"fmt"
	"os"
	"testing"
)

// EnvRequire names the variable that turns a missing peer into a failure.
const EnvRequire = "XDSBRIDGE_REQUIRE_PEERS"

// Required reports whether a missing peer fails the test.
func Required() bool {
	return os.Getenv(EnvRequire) == "1" || os.Getenv("CI") == "true"
}

// Missing ends t because peer cannot be had: it fails t when peers are
// required, and skips it otherwise. why says what is missing and how to
// get it.
func Missing(t testing.TB, peer, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf("%s unavailable: %s", peer, fmt.Sprintf(format, args...))
	if Required() {
		t.Fatalf("%s (%s=1: the real peers are required)", msg, EnvRequire)
		return
	}
	t.Skip(msg)
}
