package xds

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/xdsbridge/xdsbridge/aggregator"
	"github.com/xdsbridge/xdsbridge/xds/store"
	"github.com/xdsbridge/xdsbridge/xds/translate"
)

// BenchmarkFleetSotW is the serving path at fleet scale: clients, each an
// ADS stream on its own loopback connection subscribed to every cluster
// (CDS wildcard) and every cluster's endpoints (EDS by name), ACKing every
// response, as go-control-plane-style raw clients do; one op is one of the
// clusters' endpoints changing and every client having the change (and
// having ACKed it). The clients run in this process: profile with
// -cpuprofile and read the server's share.
func BenchmarkFleetSotW(b *testing.B) {
	for _, n := range []int{100, 500} {
		b.Run(fmt.Sprintf("clients=%d/clusters=1000", n), func(b *testing.B) { benchFleet(b, n, 1000) })
	}
}

func benchFleet(b *testing.B, clients, clusters int) {
	logger := slog.New(slog.DiscardHandler)
	st := store.New(logger)
	srv := New(Options{Logger: logger, Store: st, GRPCAddress: "127.0.0.1:0"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	addr, _, err := srv.Addrs(ctx)
	if err != nil {
		b.Fatal(err)
	}
	srv.Open()

	names := make([]string, clusters)
	apply := func(name string, port uint32) {
		c := cluster(name, port, port+1, port+2)
		if err := st.Apply(items(b, c), nil); err != nil {
			b.Fatal(err)
		}
	}
	var all []store.Item
	for i := range names {
		names[i] = fmt.Sprintf("cluster-%04d", i)
		all = append(all, items(b, cluster(names[i], 1000, 1001, 1002))...)
	}
	if err := st.Apply(all, nil); err != nil {
		b.Fatal(err)
	}

	var eds atomic.Int64
	var wg sync.WaitGroup
	cctx, stopClients := context.WithCancel(ctx)
	defer func() { stopClients(); wg.Wait() }()
	for i := range clients {
		c := &rawADSClient{node: fmt.Sprintf("node-%d", i), names: names, eds: &eds}
		cc, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawFrameCodec{})))
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			defer cc.Close()
			if err := c.run(cctx, cc); err != nil && cctx.Err() == nil {
				b.Error(err)
			}
		})
	}
	waitCount(b, &eds, int64(clients))

	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		apply(names[i%clusters], uint32(2000+i))
		waitCount(b, &eds, int64(clients)*int64(i+2))
	}
}

func items(tb testing.TB, c *aggregator.Cluster) []store.Item {
	cds, err := translate.Cluster(c)
	if err != nil {
		tb.Fatal(err)
	}
	return []store.Item{
		{TypeURL: resource.ClusterType, Name: c.Name, Resource: cds, Sources: c.Sources},
		{TypeURL: resource.EndpointType, Name: c.Name, Resource: translate.LoadAssignment(c), Sources: c.Sources},
	}
}

func waitCount(tb testing.TB, n *atomic.Int64, want int64) {
	deadline := time.Now().Add(time.Minute)
	for n.Load() < want {
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d responses within a minute", n.Load(), want)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// rawADSClient is an ADS client that keeps messages as bytes, as the
// benchmark's fleet does: it subscribes to every cluster and, once it has
// them, to their endpoints by name, and ACKs every response. eds counts
// the endpoint responses it has ACKed.
type rawADSClient struct {
	node  string
	names []string
	eds   *atomic.Int64
}

func (c *rawADSClient) run(ctx context.Context, cc *grpc.ClientConn) error {
	st, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
		"/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources")
	if err != nil {
		return err
	}
	var node []byte
	node = protowire.AppendTag(node, 1, protowire.BytesType)
	node = protowire.AppendString(node, c.node)
	var names []byte
	for _, n := range c.names {
		names = protowire.AppendTag(names, 3, protowire.BytesType)
		names = protowire.AppendString(names, n)
	}
	request := func(typeURL, version, nonce string, withNames, withNode bool) *rawFrame {
		var b []byte
		if version != "" {
			b = protowire.AppendTag(b, 1, protowire.BytesType)
			b = protowire.AppendString(b, version)
		}
		if withNode {
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			b = protowire.AppendBytes(b, node)
		}
		if withNames {
			b = append(b, names...)
		}
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendString(b, typeURL)
		if nonce != "" {
			b = protowire.AppendTag(b, 5, protowire.BytesType)
			b = protowire.AppendString(b, nonce)
		}
		return &rawFrame{b: b}
	}
	if err := st.SendMsg(request(resource.ClusterType, "", "", false, true)); err != nil {
		return err
	}
	subscribed := false
	var in rawFrame
	for {
		if err := st.RecvMsg(&in); err != nil {
			return err
		}
		var typeURL, version, nonce string
		for b := in.b; len(b) > 0; {
			num, typ, n := protowire.ConsumeTag(b)
			if n < 0 {
				return fmt.Errorf("malformed response")
			}
			b = b[n:]
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return fmt.Errorf("malformed response")
			}
			if typ == protowire.BytesType {
				v, _ := protowire.ConsumeBytes(b)
				switch num {
				case 1:
					version = string(v)
				case 4:
					typeURL = string(v)
				case 5:
					nonce = string(v)
				}
			}
			b = b[m:]
		}
		eds := typeURL == resource.EndpointType
		if err := st.SendMsg(request(typeURL, version, nonce, eds, false)); err != nil {
			return err
		}
		if eds {
			c.eds.Add(1)
		}
		if !subscribed {
			subscribed = true
			if err := st.SendMsg(request(resource.EndpointType, "", "", true, false)); err != nil {
				return err
			}
		}
	}
}

// rawFrame is a message as bytes; rawFrameCodec passes it through.
type rawFrame struct{ b []byte }

type rawFrameCodec struct{}

func (rawFrameCodec) Name() string { return "proto" }

func (rawFrameCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*rawFrame).b)}, nil
}

func (rawFrameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f := v.(*rawFrame)
	f.b = data.Materialize()
	return nil
}
