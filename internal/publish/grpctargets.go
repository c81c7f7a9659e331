package publish

import (
	"bytes"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"text/template"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/xds/store"
	"github.com/xdsbridge/xdsbridge/xds/translate"
)

// GRPCTargets generates, for every served cluster, the Listener and
// RouteConfiguration a proxyless gRPC client needs to dial it by name
// (translate.GRPCListener), and keeps them in step with the clusters and
// with the passthrough listeners and routes, which win over generated ones
// of the same type and name. Give it to a Publisher.
type GRPCTargets struct {
	name   *template.Template
	logger *slog.Logger

	mu sync.Mutex
	// clusters are the served clusters, and targets their target names.
	clusters map[string]*aggregator.Cluster
	targets  map[string]string
	// byTarget holds the clusters of each target name: one, unless the
	// template gives two clusters the same name (the first by name wins).
	byTarget map[string]map[string]struct{}
	// passthrough holds the passthrough Listeners and RouteConfigurations.
	passthrough map[store.Ref]struct{}
	// served holds the generated resources in the store.
	served map[store.Ref]struct{}
	// collisions are the generated resources a passthrough one replaces,
	// each with its cluster; each was logged once when it began.
	collisions map[store.Ref]string
	// shared are the target names several clusters share, logged once.
	shared map[string]struct{}
}

// NewGRPCTargets returns a generator naming each cluster's target by name,
// a template over translate.TargetData.
func NewGRPCTargets(name *template.Template, logger *slog.Logger) *GRPCTargets {
	return &GRPCTargets{
		name:        name,
		logger:      logger,
		clusters:    map[string]*aggregator.Cluster{},
		targets:     map[string]string{},
		byTarget:    map[string]map[string]struct{}{},
		passthrough: map[store.Ref]struct{}{},
		served:      map[store.Ref]struct{}{},
		collisions:  map[store.Ref]string{},
		shared:      map[string]struct{}{},
	}
}

// grpcTypes are the types GRPCTargets generates, in the order a client
// needs them.
var grpcTypes = [...]string{resource.ListenerType, resource.RouteType}

// update follows c and returns the generated resources to set and remove
// in the same store.Apply as c's own. Passthrough resources are in c's own
// set, so a generated resource they replace is neither set nor removed.
func (g *GRPCTargets) update(c *aggregator.Change) (set []store.Item, remove []store.Ref) {
	g.mu.Lock()
	defer g.mu.Unlock()
	dirty := map[string]struct{}{}
	for _, r := range c.Resources {
		if slices.Contains(grpcTypes[:], r.TypeURL) {
			g.passthrough[store.Ref{TypeURL: r.TypeURL, Name: r.Name}] = struct{}{}
			dirty[r.Name] = struct{}{}
		}
	}
	for _, r := range c.RemovedResources {
		if slices.Contains(grpcTypes[:], r.TypeURL) {
			delete(g.passthrough, store.Ref{TypeURL: r.TypeURL, Name: r.Name})
			dirty[r.Name] = struct{}{}
		}
	}
	for _, cl := range c.Clusters {
		target, err := translate.TargetName(g.name, cl.Name)
		if err != nil {
			g.logger.Error("no gRPC listener for cluster", "cluster", cl.Name, "sources", cl.Sources, "err", err)
		}
		if old := g.clusters[cl.Name]; err == nil && old != nil && g.targets[cl.Name] == target &&
			bytes.Equal(old.Overlay, cl.Overlay) && slices.Equal(old.Sources, cl.Sources) {
			// Only the endpoints changed: the listener and route are as
			// they were.
			g.clusters[cl.Name] = cl
			continue
		}
		g.forget(cl.Name, dirty)
		if err != nil {
			continue
		}
		g.clusters[cl.Name], g.targets[cl.Name] = cl, target
		if g.byTarget[target] == nil {
			g.byTarget[target] = map[string]struct{}{}
		}
		g.byTarget[target][cl.Name] = struct{}{}
		dirty[target] = struct{}{}
	}
	for _, name := range c.RemovedClusters {
		g.forget(name, dirty)
	}

	for _, target := range slices.Sorted(maps.Keys(dirty)) {
		s, r := g.resolve(target)
		set, remove = append(set, s...), append(remove, r...)
	}
	return set, remove
}

// forget drops cluster name, marking its target dirty.
func (g *GRPCTargets) forget(name string, dirty map[string]struct{}) {
	target, ok := g.targets[name]
	if !ok {
		return
	}
	delete(g.clusters, name)
	delete(g.targets, name)
	delete(g.byTarget[target], name)
	if len(g.byTarget[target]) == 0 {
		delete(g.byTarget, target)
	}
	dirty[target] = struct{}{}
}

// resolve works out what the store must hold under target's name.
func (g *GRPCTargets) resolve(target string) (set []store.Item, remove []store.Ref) {
	owners := slices.Sorted(maps.Keys(g.byTarget[target]))
	var gt *translate.GRPCTarget
	if len(owners) > 0 {
		if _, logged := g.shared[target]; len(owners) > 1 && !logged {
			g.shared[target] = struct{}{}
			g.logger.Warn("clusters share a gRPC target name: the first is served", "target", target, "clusters", owners)
		} else if len(owners) == 1 {
			delete(g.shared, target)
		}
		cl := g.clusters[owners[0]]
		var err error
		gt, err = translate.GRPCListener(g.name, cl, func(typeURL, name string) bool {
			_, ok := g.passthrough[store.Ref{TypeURL: typeURL, Name: name}]
			return ok
		})
		if err != nil {
			g.logger.Error("no gRPC listener for cluster", "cluster", cl.Name, "sources", cl.Sources, "err", err)
			gt = nil
		}
	} else {
		delete(g.shared, target)
	}

	for _, typeURL := range grpcTypes {
		ref := store.Ref{TypeURL: typeURL, Name: target}
		_, passthrough := g.passthrough[ref]
		if len(owners) > 0 && passthrough {
			if _, logged := g.collisions[ref]; !logged {
				g.logger.Warn("a passthrough resource replaces a generated gRPC one of the same name",
					"type", typeURL, "name", target, "cluster", owners[0])
			}
			g.collisions[ref] = owners[0]
		} else {
			delete(g.collisions, ref)
		}

		var item *store.Item
		if gt != nil {
			cl := g.clusters[owners[0]]
			switch {
			case typeURL == resource.ListenerType && gt.Listener != nil:
				item = &store.Item{TypeURL: typeURL, Name: target, Resource: gt.Listener, Sources: cl.Sources}
			case typeURL == resource.RouteType && gt.Route != nil:
				item = &store.Item{TypeURL: typeURL, Name: target, Resource: gt.Route, Sources: cl.Sources}
			}
		}
		_, served := g.served[ref]
		switch {
		case item != nil:
			set = append(set, *item)
			g.served[ref] = struct{}{}
		case served:
			delete(g.served, ref)
			if !passthrough { // else the passthrough resource replaces it
				remove = append(remove, ref)
			}
		}
	}
	return set, remove
}

// Replaced returns the generated resources that passthrough resources of
// the same type and name replace, each with the cluster it was generated
// for.
func (g *GRPCTargets) Replaced() map[store.Ref]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return maps.Clone(g.collisions)
}
