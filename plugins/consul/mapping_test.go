package consul

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// entry builds a health entry from JSON as Consul sends it.
func entry(t *testing.T, js string) healthEntry {
	t.Helper()
	var e healthEntry
	if err := json.Unmarshal([]byte(js), &e); err != nil {
		t.Fatal(err)
	}
	return e
}

const baseEntry = `{
  "Node": {"Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc1", "Meta": {"zone": "z1", "rack": "r7"}},
  "Service": {"ID": "web-1", "Service": "web", "Address": "", "Port": 8080,
              "Tags": ["v2", "primary", "v2"], "Meta": {"version": "2"},
              "Weights": {"Passing": 10, "Warning": 3}},
  "Checks": %s
}`

func withChecks(checks string) string {
	return fmt.Sprintf(baseEntry, checks)
}

func TestEndpoint(t *testing.T) {
	const (
		passing  = `[{"CheckID": "serfHealth", "Status": "passing"}, {"CheckID": "svc", "Status": "passing"}]`
		warning  = `[{"CheckID": "serfHealth", "Status": "passing"}, {"CheckID": "svc", "Status": "warning"}]`
		critical = `[{"CheckID": "serfHealth", "Status": "warning"}, {"CheckID": "svc", "Status": "critical"}]`
		maint    = `[{"CheckID": "_service_maintenance:web-1", "Status": "critical"}, {"CheckID": "svc", "Status": "passing"}]`
		nodeMnt  = `[{"CheckID": "_node_maintenance", "Status": "critical"}]`
		unknown  = `[{"CheckID": "svc", "Status": "bogus"}]`
	)
	md := map[string]any{"version": "2", TagsKey: []any{"primary", "v2"}}
	want := func(h sdk.Health, w uint32) *sdk.Endpoint {
		return &sdk.Endpoint{
			Address: "10.0.0.1", Port: 8080, Weight: w, Health: h,
			Locality: sdk.Locality{Region: "dc1", Zone: "z1", SubZone: "r7"}, Metadata: md,
		}
	}
	tests := []struct {
		name   string
		health string
		js     string
		want   *sdk.Endpoint // nil: left out
	}{
		{"passing/passing", HealthPassing, withChecks(passing), want(sdk.Healthy, 10)},
		{"no checks is passing", HealthPassing, withChecks(`[]`), want(sdk.Healthy, 10)},
		{"passing/warning", HealthPassing, withChecks(warning), nil},
		{"warning/warning", HealthWarning, withChecks(warning), want(sdk.Degraded, 3)},
		{"warning/critical", HealthWarning, withChecks(critical), nil},
		{"any/critical", HealthAny, withChecks(critical), want(sdk.Unhealthy, 10)},
		{"any/service maintenance", HealthAny, withChecks(maint), want(sdk.Draining, 10)},
		{"any/node maintenance", HealthAny, withChecks(nodeMnt), want(sdk.Draining, 10)},
		{"warning/maintenance", HealthWarning, withChecks(maint), nil},
		{"unknown status is critical", HealthWarning, withChecks(unknown), nil},
	}
	m := mapper{zoneKey: "zone", subZoneKey: "rack"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m.health = tt.health
			e := entry(t, tt.js)
			ep, ok, usable := m.endpoint(&e, 0, "")
			if !usable {
				t.Fatal("unusable")
			}
			if tt.want == nil {
				if ok {
					t.Errorf("endpoint %+v served, want left out", ep)
				}
				return
			}
			if !ok {
				t.Fatal("left out, want served")
			}
			if d := cmp.Diff(*tt.want, ep); d != "" {
				t.Errorf("endpoint (-want +got):\n%s", d)
			}
		})
	}
}

func TestEndpointFields(t *testing.T) {
	tests := []struct {
		name     string
		js       string
		priority uint32
		region   string
		want     *sdk.Endpoint // nil: unusable
		leftOut  bool
	}{
		{
			name: "service address wins, region configured, priority, no tags or meta",
			js: `{"Node": {"Node": "n", "Address": "10.0.0.1", "Datacenter": "dc9"},
			      "Service": {"ID": "a", "Address": "2001:db8::1", "Port": 443, "Weights": {"Passing": 1, "Warning": 1}}}`,
			priority: 2, region: "east",
			want: &sdk.Endpoint{Address: "2001:db8::1", Port: 443, Weight: 1, Health: sdk.Healthy, Priority: 2,
				Locality: sdk.Locality{Region: "east"}},
		},
		{
			name: "v4-mapped address is unmapped",
			js: `{"Node": {"Node": "n", "Address": "::ffff:10.1.2.3"},
			      "Service": {"ID": "a", "Port": 1, "Weights": {"Passing": 1}}}`,
			want: &sdk.Endpoint{Address: "10.1.2.3", Port: 1, Weight: 1, Health: sdk.Healthy},
		},
		{
			name: "hostname address is unusable",
			js:   `{"Node": {"Node": "n", "Address": "consul.example"}, "Service": {"ID": "a", "Port": 80, "Weights": {"Passing": 1}}}`,
		},
		{
			name: "port 0 is unusable",
			js:   `{"Node": {"Node": "n", "Address": "10.0.0.1"}, "Service": {"ID": "a", "Port": 0, "Weights": {"Passing": 1}}}`,
		},
		{
			name: "weight 0 is left out",
			js: `{"Node": {"Node": "n", "Address": "10.0.0.1"}, "Service": {"ID": "a", "Port": 80, "Weights": {"Passing": 1, "Warning": 0}},
			      "Checks": [{"CheckID": "c", "Status": "warning"}]}`,
			leftOut: true,
		},
	}
	m := mapper{health: HealthAny}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := entry(t, tt.js)
			ep, ok, usable := m.endpoint(&e, tt.priority, tt.region)
			switch {
			case tt.leftOut:
				if ok || !usable {
					t.Errorf("ok, usable = %v, %v; want false, true", ok, usable)
				}
			case tt.want == nil:
				if usable {
					t.Errorf("usable endpoint %+v, want unusable", ep)
				}
			default:
				if !ok || !usable {
					t.Fatalf("ok, usable = %v, %v; want true, true", ok, usable)
				}
				if d := cmp.Diff(*tt.want, ep); d != "" {
					t.Errorf("endpoint (-want +got):\n%s", d)
				}
			}
		})
	}
}

func TestConvert(t *testing.T) {
	var entries []healthEntry
	for _, js := range []string{
		`{"Node": {"Node": "b", "Address": "10.0.0.2", "Datacenter": "dc1"}, "Service": {"ID": "x", "Port": 80, "Weights": {"Passing": 1}}}`,
		`{"Node": {"Node": "a", "Address": "10.0.0.1", "Datacenter": "dc1"}, "Service": {"ID": "x", "Port": 80, "Weights": {"Passing": 1}},
		  "Checks": [{"CheckID": "c", "Status": "critical"}]}`,
		`{"Node": {"Node": "a", "Address": "bad"}, "Service": {"ID": "y", "Port": 80}}`,
	} {
		entries = append(entries, entry(t, js))
	}
	got := mapper{health: HealthPassing}.convert(entries, 1, "")
	want := serviceData{
		present: true,
		endpoints: []sdk.Endpoint{
			{Address: "10.0.0.2", Port: 80, Weight: 1, Health: sdk.Healthy, Priority: 1, Locality: sdk.Locality{Region: "dc1"}},
		},
		nodes:      []string{"a", "b"},
		unusable:   []string{"a/y"},
		notPassing: 1,
		instances:  []instanceRef{{"a", "x"}, {"a", "y"}, {"b", "x"}},
	}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(serviceData{}, instanceRef{})); d != "" {
		t.Errorf("convert (-want +got):\n%s", d)
	}

	// Everything filtered out by health: still present, no endpoints.
	got = mapper{health: HealthPassing}.convert(entries[1:2], 0, "")
	if !got.present || len(got.endpoints) != 0 {
		t.Errorf("all critical: present=%v endpoints=%v; want present, none", got.present, got.endpoints)
	}
	if got := (mapper{}).convert(nil, 0, ""); got.present {
		t.Error("no instances: present, want absent")
	}
}

func TestMergeEndpoints(t *testing.T) {
	ep := func(addr string, port, prio uint32, zone string) sdk.Endpoint {
		return sdk.Endpoint{Address: addr, Port: port, Priority: prio, Locality: sdk.Locality{Zone: zone}}
	}
	got := mergeEndpoints([][]sdk.Endpoint{
		{ep("10.0.0.2", 80, 0, "b"), ep("10.0.0.1", 80, 0, "b"), ep("10.0.0.9", 80, 0, "a")},
		{ep("10.0.0.1", 80, 1, "a"), ep("10.0.0.3", 81, 1, "a")},
	})
	want := []sdk.Endpoint{
		ep("10.0.0.9", 80, 0, "a"), ep("10.0.0.1", 80, 0, "b"), ep("10.0.0.2", 80, 0, "b"),
		ep("10.0.0.3", 81, 1, "a"),
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("mergeEndpoints (-want +got):\n%s", d)
	}
	if got := mergeEndpoints([][]sdk.Endpoint{nil, {}}); got != nil {
		t.Errorf("mergeEndpoints(empty) = %v, want nil", got)
	}
}

func TestHasTags(t *testing.T) {
	tests := []struct {
		have, want []string
		ok         bool
	}{
		{nil, nil, true},
		{[]string{"a"}, nil, true},
		{[]string{"a", "B"}, []string{"b", "a"}, true},
		{[]string{"a"}, []string{"a", "c"}, false},
		{nil, []string{"a"}, false},
	}
	for _, tt := range tests {
		if got := hasTags(tt.have, tt.want); got != tt.ok {
			t.Errorf("hasTags(%v, %v) = %v, want %v", tt.have, tt.want, got, tt.ok)
		}
	}
}

func TestMetadata(t *testing.T) {
	if got := metadata(nil, nil); got != nil {
		t.Errorf("metadata(nil, nil) = %v, want nil", got)
	}
	got := metadata([]string{"b", "a", "b"}, map[string]string{"k": "v"})
	want := map[string]any{"k": "v", "consul.tags": []any{"a", "b"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("metadata (-want +got):\n%s", d)
	}
}
