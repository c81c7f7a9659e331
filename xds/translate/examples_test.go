package translate_test

// The files under examples/ are checked here, against the Envoy v3 API:
// there is no Envoy binary to run `envoy --mode validate` with.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"gopkg.in/yaml.v3"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/sdk/overlay"
	"github.com/xdsbridge/xdsbridge/xds/translate"
)

const examplesDir = "../../examples"

// yamlToJSON converts a YAML document to JSON, for protojson.
func yamlToJSON(data []byte) ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	v, err := jsonable(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// jsonable turns the map[any]any yaml.v3 may produce into map[string]any.
func jsonable(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			c, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			v[k] = c
		}
		return v, nil
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("key %v is not a string", k)
			}
			c, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			out[ks] = c
		}
		return out, nil
	case []any:
		for i, e := range v {
			c, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			v[i] = c
		}
		return v, nil
	}
	return v, nil
}

// validateDeep runs the generated ValidateAll on m and on every message
// packed in an Any inside it, which ValidateAll does not look into.
func validateDeep(m proto.Message) error {
	var errs []error
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, err)
		}
	}
	walkAnys(m.ProtoReflect(), func(a *anypb.Any) {
		inner, err := a.UnmarshalNew()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.GetTypeUrl(), err))
			return
		}
		if err := validateDeep(inner); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.GetTypeUrl(), err))
		}
	})
	return errors.Join(errs...)
}

// walkAnys calls f for every Any in m, not looking inside the Anys.
func walkAnys(m protoreflect.Message, f func(*anypb.Any)) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		var msgs []protoreflect.Message
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					msgs = append(msgs, mv.Message())
					return true
				})
			}
		case fd.Message() == nil:
		case fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				msgs = append(msgs, v.List().Get(i).Message())
			}
		default:
			msgs = append(msgs, v.Message())
		}
		for _, sub := range msgs {
			if a, ok := sub.Interface().(*anypb.Any); ok {
				f(a)
			} else {
				walkAnys(sub, f)
			}
		}
		return true
	})
}

func loadBootstrap(t *testing.T, path string) *bootstrapv3.Bootstrap {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	j, err := yamlToJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b := new(bootstrapv3.Bootstrap)
	// protojson's default: unknown fields are errors.
	if err := protojson.Unmarshal(j, b); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := validateDeep(b); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

func TestEnvoyExamples(t *testing.T) {
	checks := map[string]func(*bootstrapv3.Bootstrap) error{
		"ads.yaml":        func(b *bootstrapv3.Bootstrap) error { return checkADS(b, corev3.ApiConfigSource_GRPC) },
		"delta-ads.yaml":  func(b *bootstrapv3.Bootstrap) error { return checkADS(b, corev3.ApiConfigSource_DELTA_GRPC) },
		"static-eds.yaml": checkStaticEDS,
		"rest.yaml":       checkREST,
	}
	files, err := filepath.Glob(filepath.Join(examplesDir, "envoy", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	for name := range checks {
		if !slices.Contains(names, name) {
			t.Errorf("examples/envoy/%s is missing", name)
		}
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b := loadBootstrap(t, f)
			check, ok := checks[filepath.Base(f)]
			if !ok {
				t.Fatalf("no check for %s: add one", f)
			}
			if err := errors.Join(checkCommon(b), check(b)); err != nil {
				t.Error(err)
			}
		})
	}
}

// checkCommon checks what every bootstrap has: a node, the admin, and
// static clusters for every config source that names one.
func checkCommon(b *bootstrapv3.Bootstrap) error {
	var errs []error
	if b.GetNode().GetId() == "" || b.GetNode().GetCluster() == "" {
		errs = append(errs, fmt.Errorf("node id and cluster must be set"))
	}
	if sa := b.GetAdmin().GetAddress().GetSocketAddress(); sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 9901 {
		errs = append(errs, fmt.Errorf("admin on %s:%d, want 127.0.0.1:9901", sa.GetAddress(), sa.GetPortValue()))
	}
	static := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		static[c.GetName()] = c
	}
	// Every cluster a config source names must be static: Envoy needs it
	// before it can fetch anything.
	for _, name := range configSourceClusters(b) {
		if static[name] == nil {
			errs = append(errs, fmt.Errorf("config source names cluster %q, not a static cluster", name))
		}
	}
	if c := static["xds_cluster"]; c != nil {
		errs = append(errs, checkXDSCluster(c, 5678, true))
	}
	if c := static["xds_rest"]; c != nil {
		errs = append(errs, checkXDSCluster(c, 5679, false))
	}
	return errors.Join(errs...)
}

// configSourceClusters lists the clusters named by the ApiConfigSources in
// b, in gRPC services or REST cluster_names.
func configSourceClusters(b *bootstrapv3.Bootstrap) []string {
	var out []string
	var walk func(m protoreflect.Message)
	walk = func(m protoreflect.Message) {
		if s, ok := m.Interface().(*corev3.ApiConfigSource); ok {
			out = append(out, s.GetClusterNames()...)
			for _, g := range s.GetGrpcServices() {
				out = append(out, g.GetEnvoyGrpc().GetClusterName())
			}
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsMap() || fd.Message() == nil:
			case fd.IsList():
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message())
				}
			default:
				walk(v.Message())
			}
			return true
		})
	}
	walk(b.ProtoReflect())
	return out
}

func checkXDSCluster(c *clusterv3.Cluster, port uint32, http2 bool) error {
	var errs []error
	eps := c.GetLoadAssignment().GetEndpoints()
	if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
		return fmt.Errorf("cluster %s: want one endpoint", c.GetName())
	}
	sa := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != port {
		errs = append(errs, fmt.Errorf("cluster %s: endpoint %s:%d, want 127.0.0.1:%d", c.GetName(), sa.GetAddress(), sa.GetPortValue(), port))
	}
	if c.GetUpstreamConnectionOptions().GetTcpKeepalive() == nil {
		errs = append(errs, fmt.Errorf("cluster %s: no upstream TCP keepalive", c.GetName()))
	}
	if http2 {
		var opts httpv3.HttpProtocolOptions
		a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
		if a == nil || a.UnmarshalTo(&opts) != nil || opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			errs = append(errs, fmt.Errorf("cluster %s: no explicit http2_protocol_options", c.GetName()))
		}
	}
	return errors.Join(errs...)
}

func checkADS(b *bootstrapv3.Bootstrap, api corev3.ApiConfigSource_ApiType) error {
	d := b.GetDynamicResources()
	ads := d.GetAdsConfig()
	var errs []error
	if ads.GetApiType() != api || ads.GetTransportApiVersion() != corev3.ApiVersion_V3 || !ads.GetSetNodeOnFirstMessageOnly() {
		errs = append(errs, fmt.Errorf("ads_config: want %v, transport V3, set_node_on_first_message_only", api))
	}
	if g := ads.GetGrpcServices(); len(g) != 1 || g[0].GetEnvoyGrpc().GetClusterName() != "xds_cluster" {
		errs = append(errs, fmt.Errorf("ads_config: want one gRPC service, xds_cluster"))
	}
	for name, cs := range map[string]*corev3.ConfigSource{"lds_config": d.GetLdsConfig(), "cds_config": d.GetCdsConfig()} {
		if cs.GetAds() == nil || cs.GetResourceApiVersion() != corev3.ApiVersion_V3 {
			errs = append(errs, fmt.Errorf("%s: want ads and resource_api_version V3", name))
		}
	}
	return errors.Join(errs...)
}

func checkStaticEDS(b *bootstrapv3.Bootstrap) error {
	var errs []error
	if b.GetDynamicResources() != nil {
		errs = append(errs, fmt.Errorf("dynamic_resources: want none"))
	}
	var eds *clusterv3.Cluster
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetType() == clusterv3.Cluster_EDS {
			if eds != nil {
				errs = append(errs, fmt.Errorf("more than one EDS cluster"))
			}
			eds = c
		}
	}
	src := eds.GetEdsClusterConfig().GetEdsConfig()
	if eds.GetName() != "some_service" || src.GetResourceApiVersion() != corev3.ApiVersion_V3 ||
		src.GetApiConfigSource().GetApiType() != corev3.ApiConfigSource_GRPC ||
		src.GetApiConfigSource().GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != "xds_cluster" {
		errs = append(errs, fmt.Errorf("want EDS cluster some_service from xds_cluster over gRPC, V3"))
	}
	errs = append(errs, checkStaticListener(b, true))
	return errors.Join(errs...)
}

func checkREST(b *bootstrapv3.Bootstrap) error {
	var errs []error
	d := b.GetDynamicResources()
	src := d.GetCdsConfig().GetApiConfigSource()
	if src.GetApiType() != corev3.ApiConfigSource_REST || !slices.Equal(src.GetClusterNames(), []string{"xds_rest"}) ||
		src.GetRefreshDelay().AsDuration() != time.Second || src.GetTransportApiVersion() != corev3.ApiVersion_V3 ||
		d.GetCdsConfig().GetResourceApiVersion() != corev3.ApiVersion_V3 {
		errs = append(errs, fmt.Errorf("cds_config: want REST, V3, cluster xds_rest, refresh_delay 1s"))
	}
	if d.GetLdsConfig() != nil || d.GetAdsConfig() != nil {
		errs = append(errs, fmt.Errorf("want no LDS and no ADS"))
	}
	errs = append(errs, checkStaticListener(b, false))
	return errors.Join(errs...)
}

// checkStaticListener checks the static listener on 127.0.0.1:10000 that
// routes everything to some_service, which must be a static cluster when
// clusterIsStatic and may not be otherwise.
func checkStaticListener(b *bootstrapv3.Bootstrap, clusterIsStatic bool) error {
	ls := b.GetStaticResources().GetListeners()
	if len(ls) != 1 {
		return fmt.Errorf("want one static listener")
	}
	l := ls[0]
	if sa := l.GetAddress().GetSocketAddress(); sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 10000 {
		return fmt.Errorf("listener on %s:%d, want 127.0.0.1:10000", sa.GetAddress(), sa.GetPortValue())
	}
	hcm, err := listenerHCM(l)
	if err != nil {
		return err
	}
	rc := hcm.GetRouteConfig()
	if got := routeClusters(rc); !slices.Equal(got, []string{"some_service"}) {
		return fmt.Errorf("routes to %v, want [some_service]", got)
	}
	isStatic := slices.ContainsFunc(b.GetStaticResources().GetClusters(), func(c *clusterv3.Cluster) bool { return c.GetName() == "some_service" })
	if isStatic != clusterIsStatic {
		return fmt.Errorf("some_service static: %v, want %v", isStatic, clusterIsStatic)
	}
	// A static route table that names a cluster Envoy learns later must
	// not validate clusters, or Envoy refuses it at startup.
	if !isStatic && rc.GetValidateClusters().GetValue() {
		return fmt.Errorf("route_config must set validate_clusters: false")
	}
	if !isStatic && rc.GetValidateClusters() == nil {
		return fmt.Errorf("route_config must set validate_clusters: false (the default is true for a static route table)")
	}
	return checkRouterLast(hcm)
}

// listenerHCM returns the HttpConnectionManager of a listener's only
// filter chain, or of its api_listener.
func listenerHCM(l *listenerv3.Listener) (*hcmv3.HttpConnectionManager, error) {
	var a *anypb.Any
	if api := l.GetApiListener(); api != nil {
		a = api.GetApiListener()
	} else {
		fcs := l.GetFilterChains()
		if len(fcs) != 1 || len(fcs[0].GetFilters()) != 1 {
			return nil, fmt.Errorf("listener %s: want one filter chain with one filter", l.GetName())
		}
		a = fcs[0].GetFilters()[0].GetTypedConfig()
	}
	hcm := new(hcmv3.HttpConnectionManager)
	if err := a.UnmarshalTo(hcm); err != nil {
		return nil, fmt.Errorf("listener %s: %w", l.GetName(), err)
	}
	return hcm, nil
}

func checkRouterLast(hcm *hcmv3.HttpConnectionManager) error {
	fs := hcm.GetHttpFilters()
	if len(fs) == 0 {
		return fmt.Errorf("no http_filters")
	}
	var r routerv3.Router
	if err := fs[len(fs)-1].GetTypedConfig().UnmarshalTo(&r); err != nil {
		return fmt.Errorf("last http filter is not the router: %w", err)
	}
	return nil
}

// routeClusters lists the clusters a route configuration routes to.
func routeClusters(rc *routev3.RouteConfiguration) []string {
	var out []string
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if c := r.GetRoute().GetCluster(); c != "" {
				out = append(out, c)
			}
			for _, wc := range r.GetRoute().GetWeightedClusters().GetClusters() {
				out = append(out, wc.GetName())
			}
		}
	}
	return out
}

// staticFile mirrors the static plugin's file format, enough to check the
// examples (the plugin has its own parser and tests).
type staticFile struct {
	Clusters  []staticCluster  `yaml:"clusters"`
	Resources []map[string]any `yaml:"resources"`
}

type staticCluster struct {
	Name      string           `yaml:"name"`
	Endpoints []staticEndpoint `yaml:"endpoints"`
	// Overlay holds every other key: Envoy Cluster fields.
	Overlay map[string]any `yaml:",inline"`
}

type staticEndpoint struct {
	Address  string         `yaml:"address"`
	Port     uint32         `yaml:"port"`
	Weight   uint32         `yaml:"weight"`
	Health   string         `yaml:"health"`
	Locality inputLocality  `yaml:"locality"`
	Metadata map[string]any `yaml:"metadata"`
}

// loadStatic reads a static-plugin file into aggregator clusters (through
// overlay.Parse) and its resources, each validated.
func loadStatic(t *testing.T, path string) ([]*aggregator.Cluster, []proto.Message) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f staticFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var clusters []*aggregator.Cluster
	for _, sc := range f.Clusters {
		ov, err := overlay.Parse(sc.Overlay)
		if err != nil {
			t.Fatalf("%s: cluster %s: %v", path, sc.Name, err)
		}
		c := &aggregator.Cluster{Name: sc.Name, Overlay: ov, Sources: []string{"static"}}
		for _, se := range sc.Endpoints {
			h := sdk.HealthUnknown
			if se.Health != "" {
				if h, err = sdk.ParseHealth(se.Health); err != nil {
					t.Fatalf("%s: cluster %s: %v", path, sc.Name, err)
				}
			}
			c.Endpoints = append(c.Endpoints, aggregator.Endpoint{Endpoint: sdk.Endpoint{
				Address:  se.Address,
				Port:     se.Port,
				Weight:   se.Weight,
				Health:   h,
				Locality: sdk.Locality(se.Locality),
				Metadata: se.Metadata,
			}, Sources: []string{"static"}})
		}
		if _, err := translate.Cluster(c); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if err := checkAccepted(translate.LoadAssignment(c)); err != nil {
			t.Fatalf("%s: cluster %s: %v", path, c.Name, err)
		}
		clusters = append(clusters, c)
	}
	var resources []proto.Message
	for i, r := range f.Resources {
		v, err := jsonable(map[string]any(r))
		if err != nil {
			t.Fatalf("%s: resources[%d]: %v", path, i, err)
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		a := new(anypb.Any)
		if err := protojson.Unmarshal(j, a); err != nil {
			t.Fatalf("%s: resources[%d]: %v", path, i, err)
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatalf("%s: resources[%d]: %v", path, i, err)
		}
		if err := validateDeep(m); err != nil {
			t.Fatalf("%s: resources[%d]: %v", path, i, err)
		}
		// What the static plugin will do with it.
		if _, err := sdk.NewResource(m); err != nil {
			t.Fatalf("%s: resources[%d]: %v", path, i, err)
		}
		resources = append(resources, m)
	}
	return clusters, resources
}

func TestStaticSeed(t *testing.T) {
	clusters, resources := loadStatic(t, filepath.Join(examplesDir, "static", "seed.yaml"))
	if len(clusters) != 1 || clusters[0].Name != "some_service" {
		t.Fatalf("want one cluster, some_service")
	}
	c := clusters[0]
	cl, err := translate.Cluster(c)
	if err != nil {
		t.Fatal(err)
	}
	if cl.GetConnectTimeout().AsDuration() != 250*time.Millisecond || cl.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN {
		t.Errorf("cluster: connect_timeout %v, lb_policy %v", cl.GetConnectTimeout().AsDuration(), cl.GetLbPolicy())
	}
	cla := translate.LoadAssignment(c)
	if len(cla.GetEndpoints()) != 1 || len(cla.GetEndpoints()[0].GetLbEndpoints()) != 1 {
		t.Fatalf("want one endpoint: %v", cla)
	}
	lle := cla.GetEndpoints()[0]
	sa := lle.GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 1234 ||
		lle.GetLocality().GetRegion() != "r1" || lle.GetLocality().GetZone() != "z1" {
		t.Errorf("endpoint %v in %v, want 127.0.0.1:1234 in r1/z1", sa, lle.GetLocality())
	}

	if len(resources) != 2 {
		t.Fatalf("want a listener and a route configuration, got %d resources", len(resources))
	}
	l, ok := resources[0].(*listenerv3.Listener)
	if !ok || l.GetName() != "listener_0" {
		t.Fatalf("resources[0]: want Listener listener_0")
	}
	if sa := l.GetAddress().GetSocketAddress(); sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 10000 {
		t.Errorf("listener on %s:%d, want 127.0.0.1:10000", sa.GetAddress(), sa.GetPortValue())
	}
	hcm, err := listenerHCM(l)
	if err != nil {
		t.Fatal(err)
	}
	rds := hcm.GetRds()
	if hcm.GetStatPrefix() != "ingress_http" || hcm.GetCodecType() != hcmv3.HttpConnectionManager_AUTO ||
		rds.GetRouteConfigName() != "local_route" || rds.GetConfigSource().GetAds() == nil ||
		rds.GetConfigSource().GetResourceApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("http_connection_manager: want ingress_http, AUTO, RDS local_route over ADS, V3")
	}
	if err := checkRouterLast(hcm); err != nil {
		t.Error(err)
	}
	rc, ok := resources[1].(*routev3.RouteConfiguration)
	if !ok || rc.GetName() != "local_route" {
		t.Fatalf("resources[1]: want RouteConfiguration local_route")
	}
	vhs := rc.GetVirtualHosts()
	if len(vhs) != 1 || !slices.Equal(vhs[0].GetDomains(), []string{"*"}) || len(vhs[0].GetRoutes()) != 1 ||
		vhs[0].GetRoutes()[0].GetMatch().GetPrefix() != "/" || vhs[0].GetRoutes()[0].GetRoute().GetCluster() != "some_service" {
		t.Errorf("route configuration: want one virtual host, domains [*], prefix / to some_service")
	}
}

// grpcBootstrap is the part of grpc-go's bootstrap format the example uses.
type grpcBootstrap struct {
	XDSServers []struct {
		ServerURI    string `json:"server_uri"`
		ChannelCreds []struct {
			Type string `json:"type"`
		} `json:"channel_creds"`
		ServerFeatures []string `json:"server_features"`
	} `json:"xds_servers"`
	Node struct {
		ID       string `json:"id"`
		Cluster  string `json:"cluster"`
		Locality struct {
			Region  string `json:"region"`
			Zone    string `json:"zone"`
			SubZone string `json:"sub_zone"`
		} `json:"locality"`
	} `json:"node"`
}

func readGRPCBootstrap(t *testing.T) ([]byte, grpcBootstrap) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(examplesDir, "grpc", "bootstrap.json"))
	if err != nil {
		t.Fatal(err)
	}
	var b grpcBootstrap
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		t.Fatalf("bootstrap.json: %v", err)
	}
	return data, b
}

func TestGRPCExamples(t *testing.T) {
	_, b := readGRPCBootstrap(t)
	if len(b.XDSServers) != 1 {
		t.Fatalf("bootstrap.json: want one xDS server")
	}
	s := b.XDSServers[0]
	if s.ServerURI != "127.0.0.1:5678" {
		t.Errorf("bootstrap.json: server_uri %q, want 127.0.0.1:5678", s.ServerURI)
	}
	if len(s.ChannelCreds) != 1 || s.ChannelCreds[0].Type != "insecure" {
		t.Errorf("bootstrap.json: want channel_creds [{type: insecure}]")
	}
	if !slices.Equal(s.ServerFeatures, []string{"xds_v3"}) {
		t.Errorf("bootstrap.json: server_features %v, want [xds_v3]", s.ServerFeatures)
	}
	if b.Node.ID == "" || b.Node.Cluster == "" {
		t.Errorf("bootstrap.json: node id and cluster must be set")
	}

	clusters, resources := loadStatic(t, filepath.Join(examplesDir, "grpc", "static.yaml"))
	known := map[string]bool{}
	for _, c := range clusters {
		known[c.Name] = true
	}
	var found bool
	for _, r := range resources {
		l, ok := r.(*listenerv3.Listener)
		if !ok || l.GetApiListener() == nil {
			continue
		}
		found = found || l.GetName() == "some_service"
		hcm, err := listenerHCM(l)
		if err != nil {
			t.Fatal(err)
		}
		if hcm.GetRouteConfig() == nil {
			t.Errorf("listener %s: want an inline route_config", l.GetName())
		}
		for _, c := range routeClusters(hcm.GetRouteConfig()) {
			if !known[c] {
				t.Errorf("listener %s routes to %q, not a cluster of the file", l.GetName(), c)
			}
		}
		if err := checkRouterLast(hcm); err != nil {
			t.Errorf("listener %s: %v", l.GetName(), err)
		}
	}
	if !found {
		t.Error("static.yaml: no api_listener named some_service")
	}
}

// TestValidateDeepCanFail makes sure the example checks look inside Anys.
func TestValidateDeepCanFail(t *testing.T) {
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{}) // stat_prefix missing
	if err != nil {
		t.Fatal(err)
	}
	l := &listenerv3.Listener{Name: "l", ApiListener: &listenerv3.ApiListener{ApiListener: hcm}}
	if err := l.ValidateAll(); err != nil {
		t.Fatalf("the Listener alone should pass: %v", err)
	}
	if err := validateDeep(l); err == nil || !strings.Contains(err.Error(), "StatPrefix") {
		t.Fatalf("validateDeep = %v, want a StatPrefix error", err)
	}
}
