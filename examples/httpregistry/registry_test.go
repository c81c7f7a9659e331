package main

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/xdsbridge/xdsbridge/sdk"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		want     map[string]sdk.Cluster
		problems []string
		err      string // substring; empty for none
	}{
		{
			name: "the documented example",
			body: `{"services":[{"name":"web","endpoints":[{"address":"10.0.0.1","port":8080,"weight":2,"zone":"z1","healthy":true}]}]}`,
			want: map[string]sdk.Cluster{"web": {Name: "web", Endpoints: []sdk.Endpoint{
				{Address: "10.0.0.1", Port: 8080, Weight: 2, Health: sdk.Healthy, Locality: sdk.Locality{Zone: "z1"}},
			}}},
		},
		{
			name: "health, order, IPv6 and unknown fields",
			body: `{"version": 7, "services":[
				{"name":"web","owner":"team-a","endpoints":[
					{"address":"10.0.0.2","port":80,"healthy":false},
					{"address":"2001:db8::1","port":80},
					{"address":"::ffff:10.0.0.1","port":81},
					{"address":"10.0.0.1","port":80,"healthy":true}]},
				{"name":"idle","endpoints":[]},
				{"name":"bare"}]}`,
			want: map[string]sdk.Cluster{
				"web": {Name: "web", Endpoints: []sdk.Endpoint{
					{Address: "10.0.0.1", Port: 80, Health: sdk.Healthy},
					{Address: "10.0.0.1", Port: 81},
					{Address: "10.0.0.2", Port: 80, Health: sdk.Unhealthy},
					{Address: "2001:db8::1", Port: 80},
				}},
				"idle": {Name: "idle"},
				"bare": {Name: "bare"},
			},
		},
		{name: "no services", body: `{"services":[]}`, want: map[string]sdk.Cluster{}},
		{
			name: "bad items are left out",
			body: `{"services":[
				{"name":"","endpoints":[{"address":"10.0.0.1","port":80}]},
				{"name":"web","endpoints":[
					{"address":"web-1.example","port":80},
					{"address":"fe80::1%eth0","port":80},
					{"address":"10.0.0.1","port":0},
					{"address":"10.0.0.1","port":65536},
					{"address":"10.0.0.1","port":80,"weight":-1},
					{"address":"10.0.0.1","port":80,"weight":4294967296},
					{"address":"10.0.0.1","port":80},
					{"address":"::ffff:10.0.0.1","port":80}]},
				{"name":"web","endpoints":[]}]}`,
			want: map[string]sdk.Cluster{"web": {Name: "web", Endpoints: []sdk.Endpoint{{Address: "10.0.0.1", Port: 80}}}},
			problems: []string{
				`services[0]: empty name; service skipped`,
				`services[1] "web": endpoints[0]: address "web-1.example" is not an IP address; endpoint skipped`,
				`services[1] "web": endpoints[1]: address "fe80::1%eth0" is not an IP address; endpoint skipped`,
				`services[1] "web": endpoints[2]: port 0 is out of range 1-65535; endpoint skipped`,
				`services[1] "web": endpoints[3]: port 65536 is out of range 1-65535; endpoint skipped`,
				`services[1] "web": endpoints[4]: weight -1 is out of range 0-4294967295; endpoint skipped`,
				`services[1] "web": endpoints[5]: weight 4294967296 is out of range 0-4294967295; endpoint skipped`,
				`services[1] "web": endpoints[7]: address and port repeat endpoints[6]; endpoint skipped`,
				`services[2] "web": name repeats services[1]; service skipped`,
			},
		},
		{name: "not JSON", body: `<html>oops</html>`, err: "response is not the expected JSON"},
		{name: "empty body", body: ``, err: "response is not the expected JSON"},
		{name: "array", body: `[]`, err: "response is not the expected JSON"},
		{name: "null", body: `null`, err: `no "services" list`},
		{name: "no services key", body: `{}`, err: `no "services" list`},
		{name: "services null", body: `{"services":null}`, err: `no "services" list`},
		{name: "wrong type", body: `{"services":[{"name":"web","endpoints":[{"address":"10.0.0.1","port":"80"}]}]}`, err: "cannot unmarshal string"},
		{name: "truncated", body: `{"services":[{"name":"web"`, err: "unexpected EOF"},
		{name: "trailing data", body: `{"services":[]} {"services":[]}`, err: "data after the top-level object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problems, err := decode([]byte(tt.body))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("decode error %v; want one mentioning %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("clusters:\n%+v\nwant:\n%+v", got, tt.want)
			}
			if !slices.Equal(problems, tt.problems) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(tt.problems, "\n"))
			}
		})
	}
}
