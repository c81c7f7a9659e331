// Package sdk is everything a source plugin author imports.
//
// A plugin implements Source (and a Configure function that builds one from
// its configuration block) and calls Serve from main:
//
//	func main() {
//		sdk.Serve(sdk.Plugin{
//			Name:      "myregistry",
//			Version:   "0.1.0",
//			Configure: configure,
//		})
//	}
//
// The SDK hides go-plugin and gRPC entirely. Its types are plain Go: the
// plugin host converts them to the wire format (proto/source/v1) and back.
package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Source is a running discovery source.
//
// Run sends the source's full state first (an Update with Full set), then
// change sets or further full states as things change, and returns when ctx
// ends. It never closes up. A source that cannot reach its registry keeps
// quiet about its data (the host keeps serving the last state it sent) and
// sends a Status update saying why; it must not send an empty full state
// unless the registry really is empty.
//
// A non-nil error from Run ends the Watch stream with that error; the host
// then stops the plugin process and starts a new one.
type Source interface {
	Run(ctx context.Context, up chan<- Update) error
}

// Liveness is implemented by a Source that promises to send something at
// least once in every MaxSilence while it runs: data, a status change, or,
// with nothing new to say, an Update whose Status repeats its current
// status (the host counts it as progress and passes nothing on). Tie those
// reports to the source's own progress, such as each answer or failure from
// its registry, so that a Run that is stuck falls silent. The host marks a
// source that stays silent longer as stale in /debug/sources and the
// xdsbridge_source_stale metric, and restarts its plugin when plugins.yaml
// sets restart_on_stale. A Source without Liveness may be silent forever.
type Liveness interface {
	// MaxSilence is called once, after Configure; 0 means no promise.
	MaxSilence() time.Duration
}

// Plugin describes a plugin to Serve.
type Plugin struct {
	// Name of the implementation, e.g. "consul".
	Name string
	// Version of the plugin, shown in logs and /debug/sources.
	Version string
	// Configure validates a configuration and builds the Source. Return a
	// ConfigErrors to report field-level problems; any other error is
	// reported against the block as a whole.
	Configure func(ctx context.Context, req ConfigureRequest) (Source, error)
}

// ConfigureRequest is what the host passes to Plugin.Configure.
type ConfigureRequest struct {
	// Instance is the plugin's name in plugins.yaml.
	Instance string
	// Config is the plugin's `config` block, as YAML. Decode it with
	// DecodeConfig to get field paths in errors.
	Config []byte
	// BaseDir is the directory of plugins.yaml; resolve relative paths in
	// Config against it.
	BaseDir string
	// ValidateOnly is set by `xdsbridge validate`: check the configuration
	// and return a Source without reaching outside the process.
	ValidateOnly bool
	// Logger writes to the host's log, tagged with the plugin's name.
	Logger *slog.Logger
}

// Update is one message from a Source: a full state, a change set, or a
// status change alone.
type Update struct {
	// Full marks the update as everything the source owns: it replaces the
	// source's previous state in one step. Clusters or Resources absent from
	// a full update are removed.
	Full bool
	// Clusters are upserted by name (or are the whole set when Full).
	Clusters []Cluster
	// RemovedClusters names clusters the source no longer provides. Ignored
	// when Full.
	RemovedClusters []string
	// Resources are Envoy-native resources served as they are.
	Resources []Resource
	// RemovedResources names resources the source no longer provides.
	// Ignored when Full.
	RemovedResources []ResourceRef
	// Status, when set, reports the source's health. A status-only update
	// changes no data.
	Status *Status
}

// Cluster is one upstream service and its endpoints.
type Cluster struct {
	Name      string
	Endpoints []Endpoint
	// Overlay is a serialized envoy.config.cluster.v3.Cluster whose set fields
	// are merged onto the generated EDS cluster (connect_timeout, lb_policy,
	// circuit breakers, …). Name, type, eds_cluster_config and
	// load_assignment may not be set. Nil for none. sdk/overlay builds one
	// from configuration fields (overlay.Parse, which also carries the
	// settings of the cluster's generated gRPC route in its "route" key) and
	// checks it (overlay.Validate).
	Overlay []byte
}

// Endpoint is one address of a Cluster.
type Endpoint struct {
	// Address is an IPv4 or IPv6 address.
	Address string
	// Port is 1–65535.
	Port uint32
	// Weight is the load-balancing weight; 0 means 1.
	Weight uint32
	Health Health
	// Locality places the endpoint; clients use it for zone-aware routing.
	Locality Locality
	// Priority is the locality priority: 0 is preferred, 1 is the first
	// failover, and so on.
	Priority uint32
	// Metadata is served under filter_metadata["envoy.lb"]: keys are
	// strings, values are JSON-like (string, float64, bool, nil,
	// []any, map[string]any).
	Metadata map[string]any
	// Hostname is optional.
	Hostname string
}

// Locality is where an endpoint runs.
type Locality struct {
	Region  string
	Zone    string
	SubZone string
}

// Health is an endpoint's health as Envoy understands it.
type Health int

const (
	HealthUnknown Health = iota
	Healthy
	Unhealthy
	Draining
	Degraded
)

var healthNames = [...]string{"unknown", "healthy", "unhealthy", "draining", "degraded"}

func (h Health) String() string {
	if h < 0 || int(h) >= len(healthNames) {
		return fmt.Sprintf("Health(%d)", int(h))
	}
	return healthNames[h]
}

// ParseHealth parses the names String returns.
func ParseHealth(s string) (Health, error) {
	for i, n := range healthNames {
		if strings.EqualFold(s, n) {
			return Health(i), nil
		}
	}
	return HealthUnknown, fmt.Errorf("unknown health %q (want one of %s)", s, strings.Join(healthNames[:], ", "))
}

// Resource is an Envoy-native resource (a Listener or a RouteConfiguration,
// say), served as it is. Build one with NewResource.
type Resource struct {
	// TypeURL is the resource's full type URL, e.g.
	// "type.googleapis.com/envoy.config.listener.v3.Listener".
	TypeURL string
	// Name is the resource's name field.
	Name string
	// Value is the serialized resource.
	Value []byte
}

// ResourceRef names a Resource.
type ResourceRef struct {
	TypeURL string
	Name    string
}

// Status is a source's health as it reports it.
type Status struct {
	State  State
	Reason string
}

// State of a source.
type State int

const (
	// StateUnknown: the source has not said.
	StateUnknown State = iota
	// Connected: the source reaches its registry and its state is current.
	Connected
	// Disconnected: the source cannot reach its registry and the host keeps
	// serving the last state it sent.
	Disconnected
)

func (s State) String() string {
	switch s {
	case Connected:
		return "connected"
	case Disconnected:
		return "disconnected"
	default:
		return "unknown"
	}
}
