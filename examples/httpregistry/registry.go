package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// payload is the JSON the registry returns:
//
//	{"services": [{"name": "web", "endpoints": [
//	  {"address": "10.0.0.1", "port": 8080, "weight": 2, "zone": "z1", "healthy": true}]}]}
//
// Unknown fields are ignored, so the registry can grow.
type payload struct {
	Services *[]service `json:"services"`
}

type service struct {
	Name      string     `json:"name"`
	Endpoints []endpoint `json:"endpoints"`
}

type endpoint struct {
	Address string `json:"address"`
	Port    int64  `json:"port"`
	Weight  int64  `json:"weight"`
	Zone    string `json:"zone"`
	// Healthy is optional: absent means unknown, which Envoy routes to.
	Healthy *bool `json:"healthy"`
}

// decode turns a response body into clusters keyed by name. A body that is
// not the expected JSON object, or lacks the "services" list, is an error:
// the caller keeps its last state. A bad item (a service without a name or
// named twice, an endpoint whose address is not an IP, whose port or weight
// is out of range, or that repeats another's address and port) is left out
// and described in problems, as xdsbridge itself would reject it.
//
// Endpoints are sorted by address and port, so that the order the registry
// lists them in does not make a cluster look changed.
func decode(body []byte) (clusters map[string]sdk.Cluster, problems []string, err error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var p payload
	if err := dec.Decode(&p); err != nil {
		return nil, nil, fmt.Errorf("response is not the expected JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, errors.New("response is not the expected JSON: data after the top-level object")
	}
	if p.Services == nil {
		return nil, nil, errors.New(`response has no "services" list`)
	}

	clusters = make(map[string]sdk.Cluster, len(*p.Services))
	first := map[string]int{}
	for i, s := range *p.Services {
		if s.Name == "" {
			problems = append(problems, fmt.Sprintf("services[%d]: empty name; service skipped", i))
			continue
		}
		if j, dup := first[s.Name]; dup {
			problems = append(problems, fmt.Sprintf("services[%d] %q: name repeats services[%d]; service skipped", i, s.Name, j))
			continue
		}
		first[s.Name] = i
		c, ps := toCluster(i, s)
		clusters[s.Name] = c
		problems = append(problems, ps...)
	}
	return clusters, problems, nil
}

// toCluster converts services[i], leaving out bad endpoints.
func toCluster(i int, s service) (sdk.Cluster, []string) {
	type key struct {
		addr netip.Addr
		port uint32
	}
	type keyed struct {
		key
		ep sdk.Endpoint
	}
	var (
		problems []string
		good     []keyed
		seen     = map[key]int{}
	)
	for j, e := range s.Endpoints {
		bad := func(format string, args ...any) {
			problems = append(problems, fmt.Sprintf("services[%d] %q: endpoints[%d]: %s; endpoint skipped", i, s.Name, j, fmt.Sprintf(format, args...)))
		}
		addr, err := netip.ParseAddr(e.Address)
		switch {
		case err != nil || addr.Zone() != "":
			bad("address %q is not an IP address", e.Address)
			continue
		case e.Port < 1 || e.Port > 65535:
			bad("port %d is out of range 1-65535", e.Port)
			continue
		case e.Weight < 0 || e.Weight > math.MaxUint32:
			bad("weight %d is out of range 0-%d", e.Weight, uint32(math.MaxUint32))
			continue
		}
		k := key{addr.Unmap(), uint32(e.Port)}
		if first, dup := seen[k]; dup {
			bad("address and port repeat endpoints[%d]", first)
			continue
		}
		seen[k] = j
		health := sdk.HealthUnknown
		if e.Healthy != nil {
			health = sdk.Unhealthy
			if *e.Healthy {
				health = sdk.Healthy
			}
		}
		good = append(good, keyed{k, sdk.Endpoint{
			Address:  k.addr.String(),
			Port:     k.port,
			Weight:   uint32(e.Weight),
			Health:   health,
			Locality: sdk.Locality{Zone: e.Zone},
		}})
	}
	slices.SortFunc(good, func(a, b keyed) int {
		return cmp.Or(a.addr.Compare(b.addr), cmp.Compare(a.port, b.port))
	})
	var eps []sdk.Endpoint
	for _, g := range good {
		eps = append(eps, g.ep)
	}
	return sdk.Cluster{Name: s.Name, Endpoints: eps}, problems
}

// sorted returns the clusters of m sorted by name.
func sorted(m map[string]sdk.Cluster) []sdk.Cluster {
	out := make([]sdk.Cluster, 0, len(m))
	for _, c := range m {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b sdk.Cluster) int { return cmp.Compare(a.Name, b.Name) })
	return out
}
