package consul

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/xdsbridge/xdsbridge/sdk"
	consultest "github.com/xdsbridge/xdsbridge/test/consul"
)

// Benchmark size: services × instances, spread over nodes.
const (
	benchServices  = 1000
	benchInstances = 5
	benchNodes     = 50
)

// BenchmarkCatalog registers 1,000 services × 5 instances (each with a
// passing check) on 50 external nodes of a dev agent and runs a source with
// the default configuration (max_connections 64, so shared mode). It
// reports:
//
//   - full-sync-ms: from Run to the full state holding every instance;
//   - port-p50-ms, port-p99-ms: from a catalog registration moving one
//     instance to a new port (the API call returned) to the update
//     carrying it;
//   - health-p50-ms, health-p99-ms: the same for one instance's check
//     going critical, or back to passing;
//   - peak-conns: the most connections to Consul open at once, counted by
//     a wrapping dialer.
//
// Each iteration is one change (a port change, then the check going
// critical and back, on the next service); ns/op is their mean latency.
// Run it with
//
//	go test -run '^$' -bench Catalog -benchtime 300x ./plugins/consul
func BenchmarkCatalog(b *testing.B) {
	// The agent's default limit of 200 connections per client address
	// would count this benchmark's registration client too.
	a := consultest.Start(b, consultest.Options{ExtraHCL: "limits { http_max_conns_per_client = 1000 }"})
	c := a.Client()
	t0 := time.Now()
	registerBench(b, c)
	b.Logf("registered %d instances in %v", benchServices*benchInstances, time.Since(t0))

	cfg := DefaultConfig()
	cfg.Address = a.Addr
	var cc connCounter
	start := time.Now()
	w := startSource(b, cfg, Options{DialContext: cc.dial, Logger: slog.New(slog.DiscardHandler)})
	w.waitFor("every instance", benchComplete)
	fullSync := time.Since(start)

	var portLat, healthLat []time.Duration
	i := 0
	for b.Loop() {
		svc, port := (i/3)%benchServices, 10000+1+(i/3/benchServices)%2
		switch i % 3 {
		case 0:
			portLat = append(portLat, benchChange(b, w, c, svc, port, api.HealthPassing))
		case 1:
			healthLat = append(healthLat, benchChange(b, w, c, svc, port, api.HealthCritical))
		case 2:
			healthLat = append(healthLat, benchChange(b, w, c, svc, port, api.HealthPassing))
		}
		i++
	}
	b.ReportMetric(float64(fullSync.Microseconds())/1000, "full-sync-ms")
	reportLatency(b, "port", portLat)
	reportLatency(b, "health", healthLat)
	b.ReportMetric(float64(cc.peak.Load()), "peak-conns")
}

// benchChange registers instance 0 of svc with port and check status and
// returns the time from the registration's return to the update carrying
// it.
func benchChange(b *testing.B, w *watch, c *api.Client, svc, port int, status string) time.Duration {
	if _, err := c.Catalog().Register(benchRegistration(svc, 0, port, status), nil); err != nil {
		b.Fatalf("register: %v", err)
	}
	start := time.Now()
	name, addr := benchName(svc), fmt.Sprintf("%s:%d/healthy", benchAddr(svc, 0), port)
	want := status == api.HealthPassing
	w.waitFor(name+" changed", func(v view) bool { return hasEndpoint(v.clusters[name], addr) == want })
	return time.Since(start)
}

func benchName(svc int) string { return fmt.Sprintf("bench-%04d", svc) }

// benchAddr is the address of one instance: each is on its own node's
// address, distinct per service and instance.
func benchAddr(svc, inst int) string {
	n := svc*benchInstances + inst
	return fmt.Sprintf("10.%d.%d.%d", 100+n/65536, n/256%256, n%256)
}

func benchRegistration(svc, inst, port int, status string) *api.CatalogRegistration {
	n := svc*benchInstances + inst
	id := fmt.Sprintf("%s-%d", benchName(svc), inst)
	return &api.CatalogRegistration{
		Node:    fmt.Sprintf("bench-node-%02d", n%benchNodes),
		Address: fmt.Sprintf("10.99.0.%d", n%benchNodes+1),
		Service: &api.AgentService{ID: id, Service: benchName(svc), Address: benchAddr(svc, inst), Port: port},
		Checks:  api.HealthChecks{{CheckID: "check-" + id, Name: "check", Status: status, ServiceID: id}},
	}
}

// registerBench registers every instance, 16 at a time.
func registerBench(b *testing.B, c *api.Client) {
	b.Helper()
	type job struct{ svc, inst int }
	jobs := make(chan job)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				reg := benchRegistration(j.svc, j.inst, 10000, api.HealthPassing)
				if _, err := c.Catalog().Register(reg, nil); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for s := range benchServices {
		for i := range benchInstances {
			jobs <- job{s, i}
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatalf("register: %v", err)
	default:
	}
}

// benchComplete holds when every service has all its instances.
func benchComplete(v view) bool {
	n := 0
	for name, c := range v.clusters {
		if len(name) == len("bench-0000") && name[:6] == "bench-" && len(c.Endpoints) == benchInstances {
			n++
		}
	}
	return n == benchServices
}

func hasEndpoint(c sdk.Cluster, addr string) bool {
	return slices.ContainsFunc(c.Endpoints, func(ep sdk.Endpoint) bool {
		return fmt.Sprintf("%s:%d/%v", ep.Address, ep.Port, ep.Health) == addr
	})
}

func reportLatency(b *testing.B, name string, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), name+"-p50-ms")
	b.ReportMetric(pct(0.99), name+"-p99-ms")
}
