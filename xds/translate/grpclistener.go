package translate

import (
	"bytes"
	"errors"
	"fmt"
	"text/template"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/sdk/overlay"
)

// TargetData is what a gRPC target name template (xds.grpc_listeners.name)
// is executed over.
type TargetData struct {
	// Cluster is the cluster's name.
	Cluster string
}

// TargetName executes name over the cluster called cluster: the name of
// the cluster's generated Listener and RouteConfiguration, which a gRPC
// client dials as xds:///<name>. An empty result is an error.
func TargetName(name *template.Template, cluster string) (string, error) {
	var b bytes.Buffer
	if err := name.Execute(&b, TargetData{Cluster: cluster}); err != nil {
		return "", fmt.Errorf("cluster %q: target name: %w", cluster, err)
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("cluster %q: target name: the template gives an empty name", cluster)
	}
	return b.String(), nil
}

// GRPCTarget is what GRPCListener generates for one cluster.
type GRPCTarget struct {
	// Name is the target name: a client dials xds:///<Name>.
	Name string
	// Listener is the api_listener named Name; nil when a passthrough
	// Listener of that name is served instead.
	Listener *listenerv3.Listener
	// Route is the RouteConfiguration named Name; nil when a passthrough
	// RouteConfiguration of that name is served instead.
	Route *routev3.RouteConfiguration
	// Shadowed are the type URLs of the generated resources a passthrough
	// resource of the same name replaces, Listener before
	// RouteConfiguration.
	Shadowed []string
}

// GRPCListener builds what a proxyless gRPC client needs to dial cluster c
// by name: a Listener whose api_listener is an HttpConnectionManager with
// the router filter, fetching its RouteConfiguration over ADS, and that
// RouteConfiguration, with one virtual host whose only domain is the
// target name and whose default route (prefix "") sends every call to c,
// with the route settings of c's overlay (see overlay.Parse). Both are
// named by name executed over c's name (see TargetName).
//
// passthrough reports whether a resource of a type URL and name is served
// as it is (a static Listener or RouteConfiguration): such a resource wins
// over the generated one of the same type and name, which is then left
// out and listed in Shadowed. A nil passthrough serves nothing as it is.
//
// It returns an error naming the cluster if the name template fails or
// the overlay's route settings are invalid.
func GRPCListener(name *template.Template, c *aggregator.Cluster, passthrough func(typeURL, name string) bool) (*GRPCTarget, error) {
	target, err := TargetName(name, c.Name)
	if err != nil {
		return nil, err
	}
	action, err := overlay.RouteOf(c.Overlay)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %w", c.Name, err)
	}
	if action == nil {
		action = new(routev3.RouteAction)
	}
	action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: c.Name}

	out := &GRPCTarget{Name: target}
	if passthrough != nil && passthrough(resource.ListenerType, target) {
		out.Shadowed = append(out.Shadowed, resource.ListenerType)
	} else if out.Listener, err = apiListener(target); err != nil {
		return nil, fmt.Errorf("cluster %q: %w", c.Name, err)
	}
	if passthrough != nil && passthrough(resource.RouteType, target) {
		out.Shadowed = append(out.Shadowed, resource.RouteType)
	} else {
		out.Route = &routev3.RouteConfiguration{
			Name: target,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    target,
				Domains: []string{target},
				Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: ""}},
					Action: &routev3.Route_Route{Route: action},
				}},
			}},
		}
		if err := out.Route.ValidateAll(); err != nil {
			return nil, fmt.Errorf("cluster %q: route: %w", c.Name, err)
		}
	}
	return out, nil
}

// apiListener is the Listener named target for a gRPC client: an
// api_listener whose HttpConnectionManager fetches the RouteConfiguration
// named target over ADS.
func apiListener(target string) (*listenerv3.Listener, error) {
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix: target,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: target,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router},
		}},
	})
	if err != nil {
		return nil, err
	}
	l := &listenerv3.Listener{Name: target, ApiListener: &listenerv3.ApiListener{ApiListener: hcm}}
	if err := l.ValidateAll(); err != nil {
		return nil, errors.New("listener: " + err.Error())
	}
	return l, nil
}

// adsConfigSource is a ConfigSource that fetches over the client's ADS
// stream.
func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}
