package host

import (
	sourcev1 "github.com/xdsbridge/xdsbridge/proto/source/v1"
	"github.com/xdsbridge/xdsbridge/sdk"
)

// fromProto converts a wire update to the SDK's types.
func fromProto(u *sourcev1.Update) sdk.Update {
	out := sdk.Update{
		Full:            u.GetFull(),
		Clusters:        make([]sdk.Cluster, len(u.GetClusters())),
		RemovedClusters: u.GetRemovedClusters(),
	}
	for i, c := range u.GetClusters() {
		out.Clusters[i] = clusterFromProto(c)
	}
	for _, r := range u.GetResources() {
		out.Resources = append(out.Resources, sdk.Resource{
			TypeURL: r.GetResource().GetTypeUrl(),
			Value:   r.GetResource().GetValue(),
		})
	}
	for _, r := range u.GetRemovedResources() {
		out.RemovedResources = append(out.RemovedResources, sdk.ResourceRef{TypeURL: r.GetTypeUrl(), Name: r.GetName()})
	}
	if s := u.GetStatus(); s != nil {
		out.Status = &sdk.Status{State: stateFromProto(s.GetState()), Reason: s.GetReason()}
	}
	return out
}

func clusterFromProto(c *sourcev1.Cluster) sdk.Cluster {
	out := sdk.Cluster{Name: c.GetName(), Overlay: c.GetOverlay(), Endpoints: make([]sdk.Endpoint, len(c.GetEndpoints()))}
	for i, e := range c.GetEndpoints() {
		l := e.GetLocality()
		out.Endpoints[i] = sdk.Endpoint{
			Address:  e.GetAddress(),
			Port:     e.GetPort(),
			Weight:   e.GetWeight(),
			Health:   sdk.Health(e.GetHealth()),
			Locality: sdk.Locality{Region: l.GetRegion(), Zone: l.GetZone(), SubZone: l.GetSubZone()},
			Priority: e.GetPriority(),
			Hostname: e.GetHostname(),
		}
		if md := e.GetMetadata(); md != nil && len(md.GetFields()) > 0 {
			out.Endpoints[i].Metadata = md.AsMap()
		}
	}
	return out
}

func stateFromProto(s sourcev1.Status_State) sdk.State {
	switch s {
	case sourcev1.Status_CONNECTED:
		return sdk.Connected
	case sourcev1.Status_DISCONNECTED:
		return sdk.Disconnected
	default:
		return sdk.StateUnknown
	}
}
