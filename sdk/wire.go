package sdk

import (
	"fmt"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	sourcev1 "github.com/xdsbridge/xdsbridge/proto/source/v1"
)

// toProto converts an SDK update to its wire form. It fails only on metadata
// that is not JSON-like.
func toProto(u Update) (*sourcev1.Update, error) {
	out := &sourcev1.Update{
		Full:            u.Full,
		Clusters:        make([]*sourcev1.Cluster, 0, len(u.Clusters)),
		RemovedClusters: u.RemovedClusters,
	}
	for i := range u.Clusters {
		c, err := clusterToProto(&u.Clusters[i])
		if err != nil {
			return nil, err
		}
		out.Clusters = append(out.Clusters, c)
	}
	for _, r := range u.Resources {
		out.Resources = append(out.Resources, &sourcev1.Resource{Resource: &anypb.Any{TypeUrl: r.TypeURL, Value: r.Value}})
	}
	for _, r := range u.RemovedResources {
		out.RemovedResources = append(out.RemovedResources, &sourcev1.ResourceRef{TypeUrl: r.TypeURL, Name: r.Name})
	}
	if u.Status != nil {
		out.Status = &sourcev1.Status{State: stateToProto(u.Status.State), Reason: u.Status.Reason}
	}
	return out, nil
}

func clusterToProto(c *Cluster) (*sourcev1.Cluster, error) {
	pc := &sourcev1.Cluster{Name: c.Name, Overlay: c.Overlay, Endpoints: make([]*sourcev1.Endpoint, len(c.Endpoints))}
	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		pe := &sourcev1.Endpoint{
			Address:  e.Address,
			Port:     e.Port,
			Weight:   e.Weight,
			Health:   sourcev1.Health(e.Health),
			Priority: e.Priority,
			Hostname: e.Hostname,
		}
		if e.Locality != (Locality{}) {
			pe.Locality = &sourcev1.Locality{Region: e.Locality.Region, Zone: e.Locality.Zone, SubZone: e.Locality.SubZone}
		}
		if len(e.Metadata) > 0 {
			s, err := structpb.NewStruct(e.Metadata)
			if err != nil {
				return nil, fmt.Errorf("cluster %q endpoint %s:%d: metadata: %w", c.Name, e.Address, e.Port, err)
			}
			pe.Metadata = s
		}
		pc.Endpoints[i] = pe
	}
	return pc, nil
}

func stateToProto(s State) sourcev1.Status_State {
	switch s {
	case Connected:
		return sourcev1.Status_CONNECTED
	case Disconnected:
		return sourcev1.Status_DISCONNECTED
	default:
		return sourcev1.Status_STATE_UNSPECIFIED
	}
}
