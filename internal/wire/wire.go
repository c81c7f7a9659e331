// Package wire holds what the SDK (plugin side) and the plugin host share:
// the go-plugin handshake (this file), the plugin map and gRPC adapters
// (plugin.go), and the splitting of large updates into messages and their
// reassembly (chunk.go). Each side converts between the SDK's Go types and
// proto/source/v1 itself: sdk/wire.go to the wire, internal/host/convert.go
// from it.
package wire

import (
	"github.com/hashicorp/go-plugin"
)

// ProtocolVersion is the go-plugin protocol version. It changes only when
// proto/source/v1's service changes incompatibly.
//
//	1: Info, Configure, Watch (proto/source/v1).
const ProtocolVersion = 1

// APIVersion is the source API version this host and SDK speak (see
// InfoResponse.api_versions).
const APIVersion = 1

// PluginName is the key of the source plugin in go-plugin's plugin map.
const PluginName = "source"

// Handshake guards against running a plugin binary by hand, or a binary that
// is not an xdsbridge plugin at all. It is not a security measure.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "XDSBRIDGE_PLUGIN",
	MagicCookieValue: "c1f3a0c2-source-plugin",
}

// EnvHostPID names the environment variable in which the host passes its
// process id to every plugin it starts. A plugin whose host is gone (the
// process with that id no longer exists, or the plugin's parent changed)
// stops its source and exits.
const EnvHostPID = "XDSBRIDGE_PLUGIN_HOST_PID"

// MaxMessageSize bounds one gRPC message between host and plugin. Updates
// larger than ChunkSize are split into several messages (Update.more).
const (
	MaxMessageSize = 16 << 20
	ChunkSize      = 1 << 20
)
