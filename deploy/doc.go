// Package deploy holds no code: its tests check the deployment files beside
// it as users run them — the container image `make image` builds, the
// Kubernetes manifests, the systemd unit, the Prometheus alerts and the
// Grafana dashboard — against the real tools (podman, systemd-analyze,
// promtool) and a running xdsbridge.
//
// The tools come from the environment: $PODMAN, $PROMTOOL and
// $SYSTEMD_ANALYZE, else PATH; the image is $XDSBRIDGE_IMAGE and the binary
// $XDSBRIDGE_BIN (built from ../cmd/xdsbridge when unset). A test whose tool
// or image is missing is skipped, unless XDSBRIDGE_REQUIRE_PEERS=1 (as
// `make test` sets), when it fails.
package deploy
