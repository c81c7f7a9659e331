package sdktest

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/xdsbridge/xdsbridge/sdk"
)

func ep(addr string, port uint32) sdk.Endpoint { return sdk.Endpoint{Address: addr, Port: port} }

func listener(t *testing.T, name string) sdk.Resource {
	t.Helper()
	r, err := sdk.NewResource(&listenerv3.Listener{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func marshalOverlay(t *testing.T, c *clusterv3.Cluster) []byte {
	t.Helper()
	b, err := proto.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckUpdate(t *testing.T) {
	const lds = "type.googleapis.com/envoy.config.listener.v3.Listener"
	tests := []struct {
		name string
		u    sdk.Update
		want []string // substrings of the error, one per problem; none for valid
	}{
		{
			name: "valid full state",
			u: sdk.Update{Full: true, Clusters: []sdk.Cluster{
				{Name: "web", Endpoints: []sdk.Endpoint{ep("10.0.0.1", 80), ep("10.0.0.1", 81), ep("2001:db8::1", 80), {Address: "10.0.0.2", Port: 65535, Health: sdk.Degraded}}},
				{Name: "empty"},
			}, Resources: []sdk.Resource{listener(t, "l1")}},
		},
		{name: "valid empty full state", u: sdk.Update{Full: true}},
		{name: "valid change set", u: sdk.Update{Clusters: []sdk.Cluster{{Name: "a"}}, RemovedClusters: []string{"b"}}},
		{name: "valid status", u: sdk.Update{Status: &sdk.Status{State: sdk.Disconnected, Reason: "registry down"}}},
		{name: "valid overlay", u: sdk.Update{Full: true, Clusters: []sdk.Cluster{{Name: "a", Overlay: marshalOverlay(t, &clusterv3.Cluster{ConnectTimeout: durationpb.New(1e9)})}}}},
		{
			name: "valid unknown resource type",
			u:    sdk.Update{Full: true, Resources: []sdk.Resource{{TypeURL: "type.googleapis.com/example.Unlinked", Value: []byte{1}}}},
		},
		{name: "nothing", u: sdk.Update{}, want: []string{"carries nothing"}},
		{name: "full with removals", u: sdk.Update{Full: true, RemovedClusters: []string{"a"}, RemovedResources: []sdk.ResourceRef{{TypeURL: lds, Name: "l"}}}, want: []string{"removed clusters", "removed resources"}},
		{name: "empty cluster name", u: sdk.Update{Full: true, Clusters: []sdk.Cluster{{Name: ""}}}, want: []string{`clusters[0] "": empty name`}},
		{name: "duplicate cluster", u: sdk.Update{Full: true, Clusters: []sdk.Cluster{{Name: "a"}, {Name: "a"}}}, want: []string{`clusters[1] "a": name repeats clusters[0]`}},
		{name: "upserted and removed", u: sdk.Update{Clusters: []sdk.Cluster{{Name: "a"}}, RemovedClusters: []string{"a"}}, want: []string{"also listed in removed_clusters"}},
		{name: "empty removal", u: sdk.Update{RemovedClusters: []string{""}}, want: []string{"removed_clusters[0]: empty name"}},
		{name: "hostname address", u: sdk.Update{Full: true, Clusters: []sdk.Cluster{{Name: "a", Endpoints: []sdk.Endpoint{ep("web.example.com", 80)}}}}, want: []string{"endpoints[0] (web.example.com port 80): address is not an IP"}},
		{name: "empty address", u: sdk.Update{Full: true, Clusters: []sdk.Cluster{{Name: "a", Endpoints: []sdk.Endpoint{ep("", 80)}}}}, want: []string{"not an IP"}},
		{name: "zoned address", u: sdk.Update{Full: true, Clusters: []sdk.Cluster{{Name: "a", Endpoints: []sdk.Endpoint{ep("fe80::1%eth0", 80)}}}}, want: []string{"has a zone"}},
		{name: "port 0", u: sdk.Update{Full: true, Clusters: []sdk.Cluster{{Name: "a", Endpoints: []sdk.Endpoint{ep("10.0.0.1", 0)}}}}, want: []string{"port outside 1-65535"}},
		{name: "port 65536", u: sdk.Update{Full: true, Clusters: []sdk.Cluster{{Name: "a", Endpoints: []sdk.Endpoint{ep("10.0.0.1", 65536)}}}}, want: []string{"port outside 1-65535"}},
		{name: "bad health", u: sdk.Update{Full: true, Clusters: []sdk.Cluster{{Name: "a", Endpoints: []sdk.Endpoint{{Address: "10.0.0.1", Port: 1, Health: 9}}}}}, want: []string{"unknown health 9"}},
		{name: "duplicate endpoint", u: sdk.Update{Full: true, Clusters: []sdk.Cluster{{Name: "a", Endpoints: []sdk.Endpoint{ep("10.0.0.1", 80), ep("::ffff:10.0.0.1", 80)}}}}, want: []string{"same address and port as endpoints[0]"}},
		{name: "bad overlay", u: sdk.Update{Full: true, Clusters: []sdk.Cluster{{Name: "a", Overlay: marshalOverlay(t, &clusterv3.Cluster{Name: "other"})}}}, want: []string{`clusters[0] "a": overlay:`}},
		{name: "garbage overlay", u: sdk.Update{Full: true, Clusters: []sdk.Cluster{{Name: "a", Overlay: []byte{0xff, 0xff}}}}, want: []string{"overlay:"}},
		{name: "resource without type URL", u: sdk.Update{Full: true, Resources: []sdk.Resource{{Value: []byte{1}}}}, want: []string{"type URL does not start with"}},
		{name: "resource with bare prefix", u: sdk.Update{Full: true, Resources: []sdk.Resource{{TypeURL: "type.googleapis.com/", Value: []byte{1}}}}, want: []string{"type URL does not start with"}},
		{name: "resource with other prefix", u: sdk.Update{Full: true, Resources: []sdk.Resource{{TypeURL: "example.com/x.Y", Value: []byte{1}}}}, want: []string{"type URL does not start with"}},
		{name: "resource without bytes", u: sdk.Update{Full: true, Resources: []sdk.Resource{{TypeURL: lds}}}, want: []string{"empty value"}},
		{name: "resource that does not parse", u: sdk.Update{Full: true, Resources: []sdk.Resource{{TypeURL: lds, Value: []byte{0xff, 0xff}}}}, want: []string{"does not parse"}},
		{name: "resource without name", u: sdk.Update{Full: true, Resources: []sdk.Resource{{TypeURL: lds, Value: []byte{0x3a, 0}}}}, want: []string{"empty name"}},
		{name: "duplicate resource", u: sdk.Update{Full: true, Resources: []sdk.Resource{listener(t, "l"), listener(t, "l")}}, want: []string{`resources[1] (` + lds + `): "l" repeats resources[0]`}},
		{name: "bad removed resource", u: sdk.Update{RemovedResources: []sdk.ResourceRef{{TypeURL: "x"}}}, want: []string{"removed_resources[0]: type URL", "removed_resources[0]: empty name"}},
		{name: "status unknown", u: sdk.Update{Status: &sdk.Status{}}, want: []string{"state unknown"}},
		{name: "disconnected without reason", u: sdk.Update{Status: &sdk.Status{State: sdk.Disconnected, Reason: " "}}, want: []string{"without a reason"}},
		{
			name: "every problem at once",
			u: sdk.Update{Clusters: []sdk.Cluster{
				{Name: "a", Endpoints: []sdk.Endpoint{ep("x", 0), ep("10.0.0.1", 0)}},
				{Name: "a"},
			}},
			want: []string{"not an IP", "port outside", "repeats clusters[0]"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckUpdate(tt.u)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("CheckUpdate: %v; want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckUpdate: nil; want errors mentioning %q", tt.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Errorf("CheckUpdate found %d problems, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("CheckUpdate:\n%v\nwant a problem mentioning %q", err, w)
				}
			}
		})
	}
}

func TestCheckFieldErrors(t *testing.T) {
	tests := []struct {
		name     string
		errs     []sdk.FieldError
		wantPath string
		want     string // substring of the error; empty for nil
	}{
		{name: "path found", errs: []sdk.FieldError{{Message: "x"}, {Path: "url", Message: "required"}}, wantPath: "url"},
		{name: "any path", errs: []sdk.FieldError{{Path: "a.b", Message: "bad"}}},
		{name: "file counts as placed", errs: []sdk.FieldError{{File: "c.yaml", Line: 3, Message: "bad"}}},
		{name: "accepted", errs: nil, want: "accepted it"},
		{name: "wrong path", errs: []sdk.FieldError{{Path: "interval", Message: "bad"}}, wantPath: "url", want: `want an error at path "url"; got:` + "\n\tinterval: bad"},
		{name: "unplaced", errs: []sdk.FieldError{{Message: "bad"}}, want: "says where"},
		{name: "no message", errs: []sdk.FieldError{{Path: "url"}}, wantPath: "url", want: "has no message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkFieldErrors(tt.errs, tt.wantPath)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("checkFieldErrors: %v; want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("checkFieldErrors: %v; want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func TestCheckInfo(t *testing.T) {
	tests := []struct {
		name, version string
		want          string
	}{
		{"x", "1", ""},
		{"", "1", "empty name"},
		{"x", "", "empty version"},
	}
	for _, tt := range tests {
		err := checkInfo(tt.name, tt.version)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("checkInfo(%q, %q) = %v; want %q", tt.name, tt.version, err, tt.want)
		}
	}
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		u    sdk.Update
		want string
	}{
		{sdk.Update{Full: true}, "full"},
		{sdk.Update{Full: true, Clusters: []sdk.Cluster{{Name: "a", Endpoints: make([]sdk.Endpoint, 2)}}}, "full, clusters a(2)"},
		{sdk.Update{RemovedClusters: []string{"a", "b"}, Status: &sdk.Status{State: sdk.Connected}}, "change set, removed a b, status connected"},
		{sdk.Update{Status: &sdk.Status{State: sdk.Disconnected, Reason: "down"}}, "status only, status disconnected (down)"},
		{sdk.Update{Resources: make([]sdk.Resource, 1), RemovedResources: make([]sdk.ResourceRef, 2)}, "change set, 1 resources, 2 removed resources"},
	}
	for _, tt := range tests {
		if got := Describe(tt.u); got != tt.want {
			t.Errorf("Describe = %q; want %q", got, tt.want)
		}
	}
}
