package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xdsbridge/xdsbridge/sdk"
	"github.com/xdsbridge/xdsbridge/sdk/sdktest"
)

// The registry's states in the scenario.
const (
	bodyA = `{"services":[
		{"name":"web","endpoints":[
			{"address":"10.0.0.1","port":8080,"weight":2,"zone":"z1","healthy":true},
			{"address":"10.0.0.2","port":8080,"zone":"z2","healthy":false}]},
		{"name":"api","endpoints":[{"address":"10.0.1.1","port":9090}]},
		{"name":"cache","endpoints":[{"address":"10.0.2.1","port":6379}]}]}`
	// web's second endpoint is healthy again, api is gone, db is new,
	// cache is as it was.
	bodyB = `{"services":[
		{"name":"cache","endpoints":[{"address":"10.0.2.1","port":6379}]},
		{"name":"db","endpoints":[{"address":"10.0.3.1","port":5432}]},
		{"name":"web","endpoints":[
			{"address":"10.0.0.2","port":8080,"zone":"z2","healthy":true},
			{"address":"10.0.0.1","port":8080,"weight":2,"zone":"z1","healthy":true}]}]}`
	// db moved.
	bodyC = `{"services":[
		{"name":"cache","endpoints":[{"address":"10.0.2.1","port":6379}]},
		{"name":"db","endpoints":[{"address":"10.0.3.2","port":5432}]},
		{"name":"web","endpoints":[
			{"address":"10.0.0.2","port":8080,"zone":"z2","healthy":true},
			{"address":"10.0.0.1","port":8080,"weight":2,"zone":"z1","healthy":true}]}]}`
)

var (
	web1    = sdk.Endpoint{Address: "10.0.0.1", Port: 8080, Weight: 2, Health: sdk.Healthy, Locality: sdk.Locality{Zone: "z1"}}
	web2    = sdk.Endpoint{Address: "10.0.0.2", Port: 8080, Health: sdk.Unhealthy, Locality: sdk.Locality{Zone: "z2"}}
	web2up  = sdk.Endpoint{Address: "10.0.0.2", Port: 8080, Health: sdk.Healthy, Locality: sdk.Locality{Zone: "z2"}}
	api     = sdk.Cluster{Name: "api", Endpoints: []sdk.Endpoint{{Address: "10.0.1.1", Port: 9090}}}
	cache   = sdk.Cluster{Name: "cache", Endpoints: []sdk.Endpoint{{Address: "10.0.2.1", Port: 6379}}}
	db      = sdk.Cluster{Name: "db", Endpoints: []sdk.Endpoint{{Address: "10.0.3.1", Port: 5432}}}
	dbMoved = sdk.Cluster{Name: "db", Endpoints: []sdk.Endpoint{{Address: "10.0.3.2", Port: 5432}}}
	webA    = sdk.Cluster{Name: "web", Endpoints: []sdk.Endpoint{web1, web2}}
	webB    = sdk.Cluster{Name: "web", Endpoints: []sdk.Endpoint{web1, web2up}}
)

// TestPlugin builds the plugin binary and drives it through the host
// protocol with sdktest, against a fake registry on 127.0.0.1: the proof
// that a plugin built with the SDK alone works with xdsbridge.
func TestPlugin(t *testing.T) {
	reg := newFakeRegistry(bodyA)
	srv := httptest.NewServer(reg)
	defer srv.Close()
	opts := sdktest.Options{
		Command: []string{sdktest.Build(t, ".")},
		Config:  fmt.Sprintf("url: %s/services\ninterval: 50ms\ntimeout: 1s\n", srv.URL),
		Timeout: wait,
	}

	t.Run("conformance", func(t *testing.T) {
		sdktest.Conformance(t, opts,
			sdktest.BadConfig{Config: "interval: 5s\n", WantPath: "url"},
			sdktest.BadConfig{Config: "url: ftp://registry.example/\n", WantPath: "url"},
			sdktest.BadConfig{Config: "url: http://registry.example/\ninterval: 0s\n", WantPath: "interval"},
			sdktest.BadConfig{Config: "url: http://registry.example/\ntimeout: soon\n", WantPath: "timeout"},
			sdktest.BadConfig{Config: "url: http://registry.example/\nintervall: 1s\n", WantPath: "intervall"},
		)
	})

	t.Run("scenario", func(t *testing.T) {
		reg.set(0, bodyA)
		p := sdktest.Start(t, opts)
		if name, version := p.Info(); name != "httpregistry" || version != "0.1.0" {
			t.Errorf("Info() = %q, %q; want httpregistry, 0.1.0", name, version)
		}

		// The full state first, connected.
		u := p.Next(t, wait)
		if !u.Full || u.Status == nil || u.Status.State != sdk.Connected {
			t.Fatalf("first update: %s; want the full state, connected", sdktest.Describe(u))
		}
		wantClusters(t, u.Clusters, api, cache, webA)

		// Unchanged: the registry answers 304 and the plugin says nothing.
		before := reg.count(http.StatusNotModified)
		p.Quiet(t, 300*time.Millisecond)
		for deadline := time.Now().Add(wait); reg.count(http.StatusNotModified)-before < 2; {
			if time.Now().After(deadline) {
				t.Fatalf("the registry answered %d polls with 304 Not Modified in %s; want at least 2 (If-None-Match)",
					reg.count(http.StatusNotModified)-before, wait)
			}
			time.Sleep(10 * time.Millisecond)
		}

		// A change set with only what changed.
		reg.set(0, bodyB)
		u = p.Next(t, wait)
		if u.Full || u.Status != nil {
			t.Fatalf("after a change: %s; want a change set alone", sdktest.Describe(u))
		}
		wantClusters(t, u.Clusters, db, webB)
		if !slices.Equal(u.RemovedClusters, []string{"api"}) {
			t.Errorf("removed %v; want [api]", u.RemovedClusters)
		}
		wantClusters(t, p.Clusters(), cache, db, webB)

		// The registry fails: Disconnected, and nothing more.
		reg.set(http.StatusInternalServerError, "")
		u = p.Next(t, wait)
		if u.Full || len(u.Clusters)+len(u.RemovedClusters) > 0 || u.Status == nil ||
			u.Status.State != sdk.Disconnected || !strings.Contains(u.Status.Reason, "500 Internal Server Error") {
			t.Fatalf("after a 500: %s; want status disconnected alone, naming the 500", sdktest.Describe(u))
		}
		p.Quiet(t, 300*time.Millisecond)

		// Garbage: still Disconnected, with the new reason.
		reg.set(0, `{"services": "nope"}`)
		if st := p.Next(t, wait).Status; st == nil || st.State != sdk.Disconnected || !strings.Contains(st.Reason, "not the expected JSON") {
			t.Fatalf("after garbage: status %+v; want disconnected, naming the JSON", st)
		}

		// Recovery to the last good body: 304, so Connected and no data.
		reg.set(0, bodyB)
		u = p.Next(t, wait)
		if u.Full || len(u.Clusters)+len(u.RemovedClusters) > 0 || u.Status == nil || u.Status.State != sdk.Connected {
			t.Fatalf("after recovery: %s; want status connected alone", sdktest.Describe(u))
		}
		wantClusters(t, p.Clusters(), cache, db, webB)

		// And changes flow again.
		reg.set(0, bodyC)
		u = p.NextData(t, wait)
		if u.Full || len(u.RemovedClusters) > 0 {
			t.Fatalf("after another change: %s; want a change set", sdktest.Describe(u))
		}
		wantClusters(t, u.Clusters, dbMoved)
		wantClusters(t, p.Clusters(), cache, dbMoved, webB)
	})
}

func wantClusters(t *testing.T, got []sdk.Cluster, want ...sdk.Cluster) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("clusters:\n%+v\nwant:\n%+v", got, want)
	}
}
