package xds

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/internal/publish"
	"github.com/xdsbridge/xdsbridge/xds/store"
)

// restPaths are what FuzzRESTRequest posts to: every REST discovery path
// go-control-plane's gateway knows, and some it does not.
var restPaths = []struct {
	path, typeURL string
}{
	{"/v3/discovery:clusters", resource.ClusterType},
	{"/v3/discovery:endpoints", resource.EndpointType},
	{"/v3/discovery:listeners", resource.ListenerType},
	{"/v3/discovery:routes", resource.RouteType},
	{"/v3/discovery:secrets", resource.SecretType},
	{"/v3/discovery:runtime", resource.RuntimeType},
	{"/v3/discovery:scoped-routes", resource.ScopedRouteType},
	{"/v3/discovery:extension_configs", resource.ExtensionConfigType},
	{"/v3/discovery:nothing", ""},
	{"/v3/discovery:clusters/../endpoints", resource.EndpointType},
	{"/", ""},
}

// FuzzRESTRequest posts arbitrary bodies to the REST listener of a running
// server (go-control-plane's HTTPGateway over a store holding a few
// clusters): client input must never get a 5xx or break the connection
// (a handler panic does), a 4xx must carry a reason, and a 200 must be a
// discovery response of the path's type.
func FuzzRESTRequest(f *testing.F) {
	for _, seed := range []struct {
		path uint8
		body string
	}{
		{0, `{}`},
		{0, `{"node": {"id": "envoy-1", "cluster": "c"}}`},
		{1, `{"node": {"id": "n"}, "resource_names": ["a", "b", "missing"]}`},
		{1, `{"version_info": "x", "resource_names": ["*"]}`},
		{0, `{"version_info": "v", "response_nonce": "n", "error_detail": {"code": 3, "message": "nack"}}`},
		{2, `{"typeUrl": "type.googleapis.com/envoy.config.cluster.v3.Cluster"}`},
		{3, `{"resource_names": ["r"], "resource_locators": [{"name": "x", "dynamic_parameters": {"k": "v"}}]}`},
		{0, `{not json`},
		{0, ``},
		{1, `{"resource_names": "a"}`},
		{4, `{"node": {"metadata": {"a": [1, {"b": null}]}}}`},
		{8, `{}`},
		{9, `{"resource_names": ["a"]}`},
	} {
		f.Add(seed.path, []byte(seed.body))
	}

	logger := slog.New(slog.DiscardHandler)
	st := store.New(logger)
	srv := New(Options{Logger: logger, GRPCAddress: "127.0.0.1:0", RESTAddress: "127.0.0.1:0", Store: st})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	f.Cleanup(func() {
		tr.CloseIdleConnections()
		cancel()
		if err := <-done; err != nil {
			f.Errorf("Run: %v", err)
		}
	})
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	defer acancel()
	_, restAddr, err := srv.Addrs(actx)
	if err != nil {
		f.Fatal(err)
	}
	pub := &publish.Publisher{Store: st, Logger: logger}
	pub.Publish(ctx, &aggregator.Change{Clusters: []*aggregator.Cluster{cluster("a", 80, 81), cluster("b", 90)}})
	srv.Open()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	base := "http://" + restAddr.String()

	f.Fuzz(func(t *testing.T, pathIndex uint8, body []byte) {
		p := restPaths[int(pathIndex)%len(restPaths)]
		resp, err := client.Post(base+p.path, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s %q: %v (a handler panic closes the connection)", p.path, body, err)
		}
		msg, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("POST %s %q: reading the answer: %v", p.path, body, err)
		}
		switch code := resp.StatusCode; {
		case code >= 500:
			t.Fatalf("POST %s %q: %d %s", p.path, body, code, msg)
		case code == http.StatusOK:
			if p.typeURL == "" {
				t.Fatalf("POST %s: 200 for a path that serves nothing", p.path)
			}
			var out discovery.DiscoveryResponse
			if err := protojson.Unmarshal(msg, &out); err != nil {
				t.Fatalf("POST %s %q: 200 with a body that is not a DiscoveryResponse: %v", p.path, body, err)
			}
			if out.GetTypeUrl() != p.typeURL {
				t.Fatalf("POST %s: answered type %q", p.path, out.GetTypeUrl())
			}
			for _, a := range out.GetResources() {
				if a.GetTypeUrl() != p.typeURL {
					t.Fatalf("POST %s: a resource of type %q", p.path, a.GetTypeUrl())
				}
			}
		case code == http.StatusNotModified:
		case code >= 400:
			if len(strings.TrimSpace(string(msg))) == 0 {
				t.Fatalf("POST %s %q: %d without a reason", p.path, body, code)
			}
		default:
			t.Fatalf("POST %s %q: unexpected status %d", p.path, body, code)
		}
	})
}
