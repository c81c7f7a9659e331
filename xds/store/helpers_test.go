package store

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	cdsType = resource.ClusterType
	edsType = resource.EndpointType
	ldsType = resource.ListenerType
	rdsType = resource.RouteType
	// otherType is a type go-control-plane does not know.
	otherType = "type.googleapis.com/google.protobuf.StringValue"
)

// cluster returns an EDS cluster; rev distinguishes versions of it.
func cluster(name string, rev int) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
		},
		ConnectTimeout: durationpb.New(time.Second + time.Duration(rev)),
	}
}

// cla returns a load assignment with n endpoints; rev shifts their ports.
func cla(name string, n, rev int) *endpointv3.ClusterLoadAssignment {
	lbs := make([]*endpointv3.LbEndpoint, n)
	for i := range lbs {
		lbs[i] = &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address:       fmt.Sprintf("10.%d.%d.%d", i/65536%256, i/256%256, i%256),
					PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(8000 + rev)},
				}}},
			}},
		}
	}
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			Locality:    &corev3.Locality{Region: "r1", Zone: "z1"},
			LbEndpoints: lbs,
		}},
	}
}

func listener(name string, rev int) *listenerv3.Listener {
	return &listenerv3.Listener{Name: name, StatPrefix: name + strconv.Itoa(rev)}
}

func routeConfig(name string, rev int) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{Name: "vh" + strconv.Itoa(rev), Domains: []string{"*"}}}}
}

func other(name string, rev int) proto.Message {
	return wrapperspb.String(name + strconv.Itoa(rev))
}

// res is a resource of a test, by type, name and revision.
type res struct {
	typeURL string
	name    string
	rev     int
}

func (r res) msg() proto.Message {
	switch r.typeURL {
	case cdsType:
		return cluster(r.name, r.rev)
	case edsType:
		return cla(r.name, 2, r.rev)
	case ldsType:
		return listener(r.name, r.rev)
	case rdsType:
		return routeConfig(r.name, r.rev)
	default:
		return other(r.name, r.rev)
	}
}

func (r res) item(sources ...string) Item {
	return Item{TypeURL: r.typeURL, Name: r.name, Resource: r.msg(), Sources: sources}
}

func items(rs ...res) []Item {
	out := make([]Item, len(rs))
	for i, r := range rs {
		out[i] = r.item("test")
	}
	return out
}

func refs(typeURL string, names ...string) []Ref {
	out := make([]Ref, len(names))
	for i, n := range names {
		out[i] = Ref{TypeURL: typeURL, Name: n}
	}
	return out
}

func msgs(rs ...res) []proto.Message {
	out := make([]proto.Message, len(rs))
	for i, r := range rs {
		out[i] = r.msg()
	}
	return out
}

func unpack(t *testing.T, anys []*anypb.Any) []proto.Message {
	t.Helper()
	out := make([]proto.Message, len(anys))
	for i, a := range anys {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatalf("unmarshal %s: %v", a.GetTypeUrl(), err)
		}
		out[i] = m
	}
	return out
}

func mustApply(t *testing.T, s *Store, set []Item, remove []Ref) {
	t.Helper()
	if err := s.Apply(set, remove); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// sotwClient plays go-control-plane's SotW server for one stream: it keeps
// each type's subscription, feeds responses back into it and issues the
// requests an Envoy would. All its responses arrive on one channel, as on an
// ordered ADS stream. The store sends synchronously from Apply and
// CreateWatch, so a response is either in the channel when they return or
// never comes.
type sotwClient struct {
	t     *testing.T
	s     *Store
	ch    chan cachev3.Response
	nonce int
	types map[string]*sotwType
}

type sotwType struct {
	sub     stream.Subscription
	names   []string
	nonce   string // of the last response
	version string // of the last response
	acked   string
	cancel  func()
}

func newSotwClient(t *testing.T, s *Store) *sotwClient {
	c := &sotwClient{t: t, s: s, ch: make(chan cachev3.Response, int(types.UnknownType)), types: map[string]*sotwType{}}
	t.Cleanup(func() {
		for _, st := range c.types {
			st.cancel()
		}
	})
	return c
}

// subscribe sends a request for names (nil: wildcard) acking the last
// response; it is the first request of the type when there is none.
func (c *sotwClient) subscribe(typeURL string, names []string) {
	c.t.Helper()
	c.send(typeURL, names, nil)
}

// ack acknowledges the last response of the type with the same names.
func (c *sotwClient) ack(typeURL string) {
	c.t.Helper()
	c.send(typeURL, c.types[typeURL].names, nil)
}

// nack rejects the last response of the type.
func (c *sotwClient) nack(typeURL string) {
	c.t.Helper()
	c.send(typeURL, c.types[typeURL].names, &rpcstatus.Status{Message: "rejected"})
}

func (c *sotwClient) send(typeURL string, names []string, nack *rpcstatus.Status) {
	c.t.Helper()
	st := c.types[typeURL]
	if st == nil {
		st = &sotwType{sub: stream.NewSotwSubscription(names, true)}
		c.types[typeURL] = st
	} else {
		st.cancel()
		st.sub.SetResourceSubscription(names)
		if nack == nil {
			st.acked = st.version
		}
	}
	st.names = names
	req := &discovery.DiscoveryRequest{
		Node:          &corev3.Node{Id: "node-1"},
		TypeUrl:       typeURL,
		ResourceNames: names,
		VersionInfo:   st.acked,
		ResponseNonce: st.nonce,
		ErrorDetail:   nack,
	}
	cancel, err := c.s.CreateWatch(req, st.sub, c.ch)
	if err != nil {
		c.t.Fatalf("CreateWatch %s: %v", typeURL, err)
	}
	st.cancel = cancel
}

// recv takes the next response, records it as the server does and returns
// it.
func (c *sotwClient) recv() *discovery.DiscoveryResponse {
	c.t.Helper()
	var r cachev3.Response
	select {
	case r = <-c.ch:
	default:
		c.t.Fatal("no response")
	}
	out, err := r.GetDiscoveryResponse()
	if err != nil {
		c.t.Fatalf("GetDiscoveryResponse: %v", err)
	}
	c.nonce++
	out.Nonce = strconv.Itoa(c.nonce)
	st := c.types[r.GetRequest().GetTypeUrl()]
	st.sub.SetReturnedResources(r.GetReturnedResources())
	st.nonce = out.GetNonce()
	st.version = out.GetVersionInfo()
	if want := c.s.TypeVersion(out.GetTypeUrl()); out.GetVersionInfo() != want {
		c.t.Errorf("%s response version %q, type version %q", out.GetTypeUrl(), out.GetVersionInfo(), want)
	}
	return out
}

// expect checks that the next response is of typeURL and carries want, in
// order.
func (c *sotwClient) expect(typeURL string, want []proto.Message) {
	c.t.Helper()
	out := c.recv()
	if out.GetTypeUrl() != typeURL {
		c.t.Fatalf("response of %s, want %s", out.GetTypeUrl(), typeURL)
	}
	if diff := cmp.Diff(want, unpack(c.t, out.GetResources()), protocmp.Transform(), cmpEmpty); diff != "" {
		c.t.Errorf("%s response resources (-want +got):\n%s", typeURL, diff)
	}
}

func (c *sotwClient) expectNone() {
	c.t.Helper()
	select {
	case r := <-c.ch:
		out, _ := r.GetDiscoveryResponse()
		c.t.Fatalf("unexpected %s response with %d resources", out.GetTypeUrl(), len(out.GetResources()))
	default:
	}
}

// cmpEmpty makes nil and empty slices equal.
var cmpEmpty = cmp.FilterValues(func(x, y []proto.Message) bool { return len(x) == 0 && len(y) == 0 }, cmp.Ignore())

// deltaClient plays go-control-plane's delta server for one stream.
type deltaClient struct {
	t     *testing.T
	s     *Store
	ch    chan cachev3.DeltaResponse
	nonce int
	types map[string]*deltaType
}

type deltaType struct {
	sub    stream.Subscription
	nonce  string
	cancel func()
}

func newDeltaClient(t *testing.T, s *Store) *deltaClient {
	c := &deltaClient{t: t, s: s, ch: make(chan cachev3.DeltaResponse, 2*int(types.UnknownType)), types: map[string]*deltaType{}}
	t.Cleanup(func() {
		for _, dt := range c.types {
			dt.cancel()
		}
	})
	return c
}

type deltaReq struct {
	subscribe, unsubscribe []string
	initial                map[string]string
	nack                   bool
}

func (c *deltaClient) request(typeURL string, r deltaReq) {
	c.t.Helper()
	dt := c.types[typeURL]
	if dt == nil {
		dt = &deltaType{sub: stream.NewDeltaSubscription(r.subscribe, r.unsubscribe, r.initial, true)}
		c.types[typeURL] = dt
	} else {
		dt.cancel()
		dt.sub.UpdateResourceSubscriptions(r.subscribe, r.unsubscribe)
	}
	req := &discovery.DeltaDiscoveryRequest{
		Node:                     &corev3.Node{Id: "node-1"},
		TypeUrl:                  typeURL,
		ResourceNamesSubscribe:   r.subscribe,
		ResourceNamesUnsubscribe: r.unsubscribe,
		InitialResourceVersions:  r.initial,
		ResponseNonce:            dt.nonce,
	}
	if r.nack {
		req.ErrorDetail = &rpcstatus.Status{Message: "rejected"}
	}
	cancel, err := c.s.CreateDeltaWatch(req, dt.sub, c.ch)
	if err != nil {
		c.t.Fatalf("CreateDeltaWatch %s: %v", typeURL, err)
	}
	dt.cancel = cancel
}

func (c *deltaClient) recv() *discovery.DeltaDiscoveryResponse {
	c.t.Helper()
	var r cachev3.DeltaResponse
	select {
	case r = <-c.ch:
	default:
		c.t.Fatal("no delta response")
	}
	out, err := r.GetDeltaDiscoveryResponse()
	if err != nil {
		c.t.Fatalf("GetDeltaDiscoveryResponse: %v", err)
	}
	c.nonce++
	out.Nonce = strconv.Itoa(c.nonce)
	dt := c.types[r.GetDeltaRequest().GetTypeUrl()]
	dt.sub.SetReturnedResources(r.GetNextVersionMap())
	dt.nonce = out.GetNonce()
	if want := c.s.TypeVersion(out.GetTypeUrl()); out.GetSystemVersionInfo() != want {
		c.t.Errorf("%s delta system version %q, type version %q", out.GetTypeUrl(), out.GetSystemVersionInfo(), want)
	}
	for _, r := range out.GetResources() {
		if got, want := r.GetVersion(), hashBytes(r.GetResource().GetValue()); got != want {
			c.t.Errorf("%s %s: version %q, want hash %q", out.GetTypeUrl(), r.GetName(), got, want)
		}
	}
	return out
}

func (c *deltaClient) expect(typeURL string, want []proto.Message, removed []string) {
	c.t.Helper()
	out := c.recv()
	if out.GetTypeUrl() != typeURL {
		c.t.Fatalf("delta response of %s, want %s", out.GetTypeUrl(), typeURL)
	}
	anys := make([]*anypb.Any, len(out.GetResources()))
	for i, r := range out.GetResources() {
		anys[i] = r.GetResource()
	}
	if diff := cmp.Diff(want, unpack(c.t, anys), protocmp.Transform(), cmpEmpty); diff != "" {
		c.t.Errorf("%s delta resources (-want +got):\n%s", typeURL, diff)
	}
	if diff := cmp.Diff(removed, out.GetRemovedResources(), cmpEmptyStrings); diff != "" {
		c.t.Errorf("%s delta removed (-want +got):\n%s", typeURL, diff)
	}
}

func (c *deltaClient) expectNone() {
	c.t.Helper()
	select {
	case r := <-c.ch:
		out, _ := r.GetDeltaDiscoveryResponse()
		c.t.Fatalf("unexpected %s delta response: %d resources, removed %v", out.GetTypeUrl(), len(out.GetResources()), out.GetRemovedResources())
	default:
	}
}

var cmpEmptyStrings = cmp.FilterValues(func(x, y []string) bool { return len(x) == 0 && len(y) == 0 }, cmp.Ignore())
