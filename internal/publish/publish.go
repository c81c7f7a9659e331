// Package publish is the glue between the aggregator and the store: it
// translates each change the aggregator hands downstream into Envoy
// resources and applies them to the store in one step, and it measures
// push latency (PushClock) from the moment the plugin host receives an
// update to the moment the xDS server writes the response that carries it.
package publish

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/xds/store"
	"github.com/xdsbridge/xdsbridge/xds/translate"
)

// Publisher turns the aggregator's changes into Envoy resources and applies
// them to the store in one step.
type Publisher struct {
	Store  *store.Store
	Logger *slog.Logger
	// GRPC, when set, generates a gRPC listener and route for every
	// cluster served (xds.grpc_listeners).
	GRPC *GRPCTargets
	// Clock, when set, learns the type versions each change publishes and
	// when the source update behind them was received, for the push
	// latency histogram. The server reads the same clock.
	Clock *PushClock
}

// Publish translates c and applies it. A cluster that fails to translate is
// logged and left as it was.
func (p *Publisher) Publish(_ context.Context, c *aggregator.Change) {
	set := make([]store.Item, 0, 2*len(c.Clusters)+len(c.Resources))
	remove := make([]store.Ref, 0, 2*len(c.RemovedClusters)+len(c.RemovedResources))
	// served is what of c is served, for GRPC.
	served := &aggregator.Change{RemovedClusters: c.RemovedClusters, RemovedResources: c.RemovedResources}
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
		served.Clusters = append(served.Clusters, cl)
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
		served.Resources = append(served.Resources, r)
	}
	for _, r := range c.RemovedResources {
		remove = append(remove, store.Ref{TypeURL: r.TypeURL, Name: r.Name})
	}
	if p.GRPC != nil {
		s, r := p.GRPC.update(served)
		set, remove = append(set, s...), append(remove, r...)
	}
	if err := p.Store.Apply(set, remove); err != nil {
		p.Logger.Error("applying resources", "err", err)
	}
	if p.Clock != nil {
		types := make([]string, 0, 4)
		for _, it := range set {
			types = append(types, it.TypeURL)
		}
		for _, r := range remove {
			types = append(types, r.TypeURL)
		}
		slices.Sort(types)
		now := time.Now()
		for _, t := range slices.Compact(types) {
			p.Clock.published(t, p.Store.TypeVersion(t), now)
		}
	}
}

// Sink is what the plugin host delivers source updates to: the
// aggregator.
type Sink interface {
	Apply(source string, u sdk.Update)
}

// PushClock measures push latency: from receiving a source update to
// writing a response that carries it. Put its Sink in front of the
// aggregator to note when updates arrive, and give it to the Publisher,
// which stamps each type version it publishes with the time the latest
// update was received, and to the xDS server (xds.Options.Clock), which
// looks the version of every response it writes up.
//
// Updates the aggregator coalesces (within its debounce) are stamped with
// the latest of them, so latency is measured from the last update of a
// burst: it leaves out at most the debounce.
type PushClock struct {
	mu       sync.Mutex
	received time.Time
	versions map[string]*versionLog
}

// versionLog is a type's last published versions.
type versionLog struct {
	stamps [versionsKept]stamp
	next   int
}

// versionsKept is how many versions per type the clock remembers: a client
// that is further behind is no longer being pushed to.
const versionsKept = 16

type stamp struct {
	version             string
	received, published time.Time
}

// NewPushClock returns a clock that has seen nothing.
func NewPushClock() *PushClock {
	return &PushClock{versions: map[string]*versionLog{}}
}

// Sink returns a Sink that notes when each update carrying data arrives,
// then hands it to next.
func (c *PushClock) Sink(next Sink) Sink { return clockSink{c: c, next: next} }

type clockSink struct {
	c    *PushClock
	next Sink
}

func (s clockSink) Apply(source string, u sdk.Update) {
	if u.Full || len(u.Clusters)+len(u.RemovedClusters)+len(u.Resources)+len(u.RemovedResources) > 0 {
		now := time.Now()
		s.c.mu.Lock()
		s.c.received = now
		s.c.mu.Unlock()
	}
	s.next.Apply(source, u)
}

func (c *PushClock) published(typeURL, version string, now time.Time) {
	if version == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	received := c.received
	if received.IsZero() || received.After(now) {
		received = now
	}
	l := c.versions[typeURL]
	if l == nil {
		l = &versionLog{}
		c.versions[typeURL] = l
	}
	l.stamps[l.next] = stamp{version: version, received: received, published: now}
	l.next = (l.next + 1) % versionsKept
}

// Lookup returns when the update behind a published type version was
// received and when the version was published.
func (c *PushClock) Lookup(typeURL, version string) (received, published time.Time, ok bool) {
	if c == nil || version == "" {
		return time.Time{}, time.Time{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.versions[typeURL]
	if l == nil {
		return time.Time{}, time.Time{}, false
	}
	for i := 1; i <= versionsKept; i++ {
		if s := l.stamps[(l.next-i+versionsKept)%versionsKept]; s.version == version {
			return s.received, s.published, true
		}
	}
	return time.Time{}, time.Time{}, false
}
