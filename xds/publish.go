package xds

import (
	"context"
	"log/slog"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/xds/store"
	"github.com/xdsbridge/xdsbridge/xds/translate"
)

// Publisher turns the aggregator's changes into Envoy resources and applies
// them to the store in one step.
type Publisher struct {
	Store  *store.Store
	Logger *slog.Logger
}

// Publish translates c and applies it. A cluster that fails to translate is
// logged and left as it was.
func (p *Publisher) Publish(_ context.Context, c *aggregator.Change) {
	set := make([]store.Item, 0, 2*len(c.Clusters)+len(c.Resources))
	remove := make([]store.Ref, 0, 2*len(c.RemovedClusters)+len(c.RemovedResources))
	for _, cl := range c.Clusters {
		cds, err := translate.Cluster(cl)
		if err != nil {
			p.Logger.Error("cluster not served", "cluster", cl.Name, "sources", cl.Sources, "err", err)
			continue
		}
		set = append(set,
			store.Item{TypeURL: resource.ClusterType, Name: cl.Name, Resource: cds, Sources: cl.Sources},
			store.Item{TypeURL: resource.EndpointType, Name: cl.Name, Resource: translate.LoadAssignment(cl), Sources: cl.Sources},
		)
	}
	for _, name := range c.RemovedClusters {
		remove = append(remove,
			store.Ref{TypeURL: resource.ClusterType, Name: name},
			store.Ref{TypeURL: resource.EndpointType, Name: name},
		)
	}
	for _, r := range c.Resources {
		mt, err := protoregistry.GlobalTypes.FindMessageByURL(r.TypeURL)
		if err != nil {
			p.Logger.Error("resource not served", "type", r.TypeURL, "name", r.Name, "err", err)
			continue
		}
		m := mt.New().Interface()
		if err := proto.Unmarshal(r.Value, m); err != nil {
			p.Logger.Error("resource not served", "type", r.TypeURL, "name", r.Name, "err", err)
			continue
		}
		set = append(set, store.Item{TypeURL: r.TypeURL, Name: r.Name, Resource: m, Sources: r.Sources})
	}
	for _, r := range c.RemovedResources {
		remove = append(remove, store.Ref{TypeURL: r.TypeURL, Name: r.Name})
	}
	if err := p.Store.Apply(set, remove); err != nil {
		p.Logger.Error("applying resources", "err", err)
	}
}
