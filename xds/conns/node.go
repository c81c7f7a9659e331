package conns

import (
	"fmt"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// Node is what a client says about itself in its requests' node field.
type Node struct {
	ID       string    `json:"id"`
	Cluster  string    `json:"cluster"`
	Locality *Locality `json:"locality,omitempty"`
	// UserAgentName is "envoy", "grpc-go", "grpc-java", … as the client
	// reports it.
	UserAgentName string `json:"user_agent_name,omitempty"`
	// UserAgentVersion is the client's user_agent_version, or its
	// user_agent_build_version as major.minor.patch.
	UserAgentVersion string `json:"user_agent_version,omitempty"`
}

// Locality is a node's region, zone and sub-zone.
type Locality struct {
	Region  string `json:"region,omitempty"`
	Zone    string `json:"zone,omitempty"`
	SubZone string `json:"sub_zone,omitempty"`
}

func nodeOf(n *core.Node) *Node {
	out := &Node{
		ID:               n.GetId(),
		Cluster:          n.GetCluster(),
		UserAgentName:    n.GetUserAgentName(),
		UserAgentVersion: n.GetUserAgentVersion(),
	}
	if l := n.GetLocality(); l != nil {
		out.Locality = &Locality{Region: l.GetRegion(), Zone: l.GetZone(), SubZone: l.GetSubZone()}
	}
	if out.UserAgentVersion == "" {
		if v := n.GetUserAgentBuildVersion().GetVersion(); v != nil {
			out.UserAgentVersion = fmt.Sprintf("%d.%d.%d", v.GetMajorNumber(), v.GetMinorNumber(), v.GetPatch())
		}
	}
	return out
}

// Client types, for the connected-clients gauge. The user agent name is
// client-controlled, so it is reduced to a few values.
const (
	ClientEnvoy   = "envoy"
	ClientGRPC    = "grpc"
	ClientOther   = "other"
	ClientUnknown = "unknown"
)

// ClientType reduces a node's user agent name to one of the Client* values.
func ClientType(n *Node) string {
	if n == nil {
		return ClientUnknown
	}
	switch name := strings.ToLower(n.UserAgentName); {
	case name == "":
		return ClientUnknown
	case name == "envoy":
		return ClientEnvoy
	case strings.HasPrefix(name, "grpc"):
		return ClientGRPC
	default:
		return ClientOther
	}
}
