package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/bits"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/xdsbridge/xdsbridge/bench/workload"
)

const (
	clusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	endpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

	sotwMethod  = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
	deltaMethod = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
)

// client is one synthetic client. Its state is owned by its goroutine,
// except what is marked otherwise.
type client struct {
	f      *Fleet
	id     int32
	kind   Kind
	target Target
	nodeID string

	// last is, per cluster index, the newest marker received.
	last []uint32
	// known holds the clusters of the last CDS state.
	known bitset
	// pending counts, per event of several clusters, the clusters still to
	// come.
	pending map[uint32]int32

	have       int
	syncTarget int
	cdsSeen    bool
	synced     chan struct{}
	syncedAt   atomic.Int64

	// kick ends the current connection (guarded by mu).
	mu   sync.Mutex
	kick context.CancelFunc

	in   frame
	out  frame // the next request; never reused once sent
	resp response
}

func newClient(f *Fleet, id int32, kind Kind, target Target) *client {
	return &client{
		f:       f,
		id:      id,
		kind:    kind,
		target:  target,
		nodeID:  "xdsbench-" + strconv.Itoa(int(id)),
		last:    make([]uint32, f.opts.MaxClusters),
		known:   newBitset(f.opts.MaxClusters),
		pending: map[uint32]int32{},
		synced:  make(chan struct{}),
	}
}

// run keeps the client connected until ctx ends.
func (c *client) run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		cctx, cancel := context.WithCancel(ctx)
		c.mu.Lock()
		c.kick = cancel
		c.mu.Unlock()
		var err error
		switch c.kind {
		case SotW, Delta:
			err = c.stream(cctx)
		case REST:
			err = c.poll(cctx)
		}
		kicked := cctx.Err() != nil
		cancel()
		if ctx.Err() != nil {
			return
		}
		if kicked {
			c.f.reconnects.Add(1)
			backoff = 50 * time.Millisecond
			continue
		}
		c.f.streamError(err)
		c.f.logger.Debug("client stream failed", "client", c.id, "kind", c.kind, "err", err)
		t := time.NewTimer(backoff + rand.N(backoff))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// reconnect drops the current connection; run makes a new one.
func (c *client) reconnect() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kick != nil {
		c.kick()
	}
}

// stream runs one gRPC connection and ADS stream.
func (c *client) stream(ctx context.Context) error {
	conn, err := c.f.grpcConn(c.target.GRPC)
	if err != nil {
		return err
	}
	defer conn.Close()
	method := sotwMethod
	if c.kind == Delta {
		method = deltaMethod
	}
	st, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
	}
	if c.kind == Delta {
		return c.delta(st)
	}
	return c.sotw(st)
}

// send sends c.out. gRPC may read a message's bytes after SendMsg
// returns, so every request is built in a new buffer.
func (c *client) send(st grpc.ClientStream) error {
	if err := st.SendMsg(&frame{b: c.out.b}); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

func (c *client) recv(st grpc.ClientStream) (int64, error) {
	if err := st.RecvMsg(&c.in); err != nil {
		return 0, err
	}
	c.f.responses.Add(1)
	return time.Now().UnixNano(), nil
}

// check validates a response the way a client would before ACKing it: the
// resources must be of the response's type. It returns the NACK message,
// or "".
func (c *client) check(parseErr error) string {
	if parseErr != nil {
		return "cannot parse response: " + parseErr.Error()
	}
	for _, r := range c.resp.resources {
		if !bytes.Equal(r.typeURL, c.resp.typeURL) {
			return fmt.Sprintf("resource of type %s in a %s response", r.typeURL, c.resp.typeURL)
		}
	}
	return ""
}

// sotw runs a state-of-the-world ADS stream: CDS wildcard, then EDS for the
// subscribed clusters, ACKing every response.
func (c *client) sotw(st grpc.ClientStream) error {
	node := appendNode(nil, 2, c.nodeID, "xdsbench")
	var (
		cds, eds   struct{ version, nonce string }
		subs       []workload.Ref
		names      []byte
		edsStarted bool
	)
	c.out.b = sotwRequest(nil, node, "", "", clusterType, nil, "")
	if err := c.send(st); err != nil {
		return err
	}
	node = nil // the first request carried it
	for {
		at, err := c.recv(st)
		if err != nil {
			return err
		}
		nack := c.check(parseSotw(c.in.b, &c.resp))
		typeURL := string(c.resp.typeURL)
		version, nonce := string(c.resp.version), string(c.resp.nonce)
		switch {
		case nack != "":
		case typeURL == clusterType:
			next, err := c.clusterState(at)
			if err != nil {
				nack = err.Error()
				break
			}
			if !slices.Equal(next, subs) || !edsStarted {
				subs = next
				names = encodeNames(names[:0], subs)
				if len(subs) > 0 || edsStarted {
					c.out.b = sotwRequest(nil, nil, eds.version, eds.nonce, endpointType, names, "")
					if err := c.send(st); err != nil {
						return err
					}
					edsStarted = true
				}
			}
			cds.version, cds.nonce = version, nonce
			c.cdsSeen = true
			c.checkSync(at)
		case typeURL == endpointType:
			for _, r := range c.resp.resources {
				c.markers(r.value, at)
			}
			eds.version, eds.nonce = version, nonce
		default:
			nack = "unexpected type " + typeURL
		}
		if nack != "" {
			c.f.nacks.Add(1)
			c.f.logger.Warn("client NACK", "client", c.id, "type", typeURL, "detail", nack)
		}
		var ackVersion string
		var ackNames []byte
		switch typeURL {
		case clusterType:
			ackVersion = cds.version
		case endpointType:
			ackVersion, ackNames = eds.version, names
		}
		c.out.b = sotwRequest(nil, nil, ackVersion, nonce, typeURL, ackNames, nack)
		if err := c.send(st); err != nil {
			return err
		}
	}
}

// clusterState takes a full CDS state: records removals and returns the
// clusters whose endpoints to subscribe to, sorted.
func (c *client) clusterState(at int64) ([]workload.Ref, error) {
	next := newBitset(len(c.last))
	var subs []workload.Ref
	for _, r := range c.resp.resources {
		name, err := resourceName(r.value)
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		ref, ok := workload.ParseName(name)
		if !ok || int(ref.Index) >= len(c.last) {
			continue
		}
		next.set(ref.Index)
		if workload.Subscribed(c.id, ref, c.f.opts.ShareMilli) {
			subs = append(subs, ref)
		}
	}
	c.known.forEachMissing(next, func(idx int32) { c.gone(idx, at) })
	c.known = next
	slices.SortFunc(subs, func(a, b workload.Ref) int { return int(a.Index) - int(b.Index) })
	return subs, nil
}

func encodeNames(dst []byte, subs []workload.Ref) []byte {
	for _, r := range subs {
		dst = appendString(dst, 3, r.Name())
	}
	return dst
}

// delta runs a delta ADS stream.
func (c *client) delta(st grpc.ClientStream) error {
	node := appendNode(nil, 1, c.nodeID, "xdsbench")
	subs := newBitset(len(c.last))
	first := true
	c.out.b = deltaRequest(nil, node, clusterType, nil, nil, "", "")
	if err := c.send(st); err != nil {
		return err
	}
	node = nil
	var subscribe, unsubscribe []string
	for {
		at, err := c.recv(st)
		if err != nil {
			return err
		}
		nack := c.check(parseDelta(c.in.b, &c.resp))
		typeURL := string(c.resp.typeURL)
		nonce := string(c.resp.nonce)
		switch {
		case nack != "":
		case typeURL == clusterType:
			subscribe, unsubscribe = subscribe[:0], unsubscribe[:0]
			var seen bitset
			if first {
				seen = newBitset(len(c.last))
			}
			for _, r := range c.resp.resources {
				ref, ok := workload.ParseName(r.name)
				if !ok || int(ref.Index) >= len(c.last) {
					continue
				}
				c.known.set(ref.Index)
				if first {
					seen.set(ref.Index)
				}
				if !subs.has(ref.Index) && workload.Subscribed(c.id, ref, c.f.opts.ShareMilli) {
					subs.set(ref.Index)
					subscribe = append(subscribe, string(r.name))
				}
			}
			drop := func(idx int32, name string) {
				if !c.known.has(idx) {
					return
				}
				c.known.clear(idx)
				c.gone(idx, at)
				if subs.has(idx) {
					subs.clear(idx)
					unsubscribe = append(unsubscribe, name)
				}
			}
			for _, name := range c.resp.removed {
				if ref, ok := workload.ParseName(name); ok && int(ref.Index) < len(c.last) {
					drop(ref.Index, string(name))
				}
			}
			if first {
				// A new stream starts from nothing: what the last one knew and
				// this one does not have is gone.
				c.known.forEachMissing(seen, func(idx int32) {
					c.known.clear(idx)
					c.gone(idx, at)
				})
				first = false
			}
			if len(subscribe)+len(unsubscribe) > 0 {
				c.out.b = deltaRequest(nil, nil, endpointType, subscribe, unsubscribe, "", "")
				if err := c.send(st); err != nil {
					return err
				}
			}
			c.cdsSeen = true
			c.checkSync(at)
		case typeURL == endpointType:
			for _, r := range c.resp.resources {
				c.markers(r.value, at)
			}
		default:
			nack = "unexpected type " + typeURL
		}
		if nack != "" {
			c.f.nacks.Add(1)
			c.f.logger.Warn("client NACK", "client", c.id, "type", typeURL, "detail", nack)
		}
		c.out.b = deltaRequest(nil, nil, typeURL, nil, nil, nonce, nack)
		if err := c.send(st); err != nil {
			return err
		}
	}
}

// restRequest is the JSON body of a REST discovery request.
type restRequest struct {
	VersionInfo   string            `json:"version_info,omitempty"`
	Node          map[string]string `json:"node"`
	ResourceNames []string          `json:"resource_names,omitempty"`
}

// restClusters is the part of a REST CDS response a client reads.
type restClusters struct {
	VersionInfo string `json:"version_info"`
	Resources   []struct {
		Name string `json:"name"`
	} `json:"resources"`
}

// poll polls the REST endpoints every RESTInterval.
func (c *client) poll(ctx context.Context) error {
	interval := c.f.opts.RESTInterval
	node := map[string]string{"id": c.nodeID, "cluster": "xdsbench"}
	var (
		cdsVersion, edsVersion string
		subs                   []string
	)
	// Spread the clients' polls over the interval.
	t := time.NewTimer(rand.N(interval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		t.Reset(interval)
		c.f.restPolls.Add(1)
		body, at, err := c.fetch(ctx, "clusters", restRequest{VersionInfo: cdsVersion, Node: node})
		if err != nil {
			return err
		}
		if body != nil {
			var rc restClusters
			if err := json.Unmarshal(body, &rc); err != nil {
				c.f.nacks.Add(1)
				return fmt.Errorf("rest clusters: %w", err)
			}
			next := newBitset(len(c.last))
			subs = subs[:0]
			for _, r := range rc.Resources {
				ref, ok := workload.ParseName([]byte(r.Name))
				if !ok || int(ref.Index) >= len(c.last) {
					continue
				}
				next.set(ref.Index)
				if workload.Subscribed(c.id, ref, c.f.opts.ShareMilli) {
					subs = append(subs, r.Name)
				}
			}
			slices.Sort(subs)
			c.known.forEachMissing(next, func(idx int32) { c.gone(idx, at) })
			c.known = next
			cdsVersion = rc.VersionInfo
			edsVersion = ""
			c.cdsSeen = true
			c.checkSync(at)
		}
		if len(subs) == 0 {
			continue
		}
		body, at, err = c.fetch(ctx, "endpoints", restRequest{VersionInfo: edsVersion, Node: node, ResourceNames: subs})
		if err != nil {
			return err
		}
		if body != nil {
			var v struct {
				VersionInfo string `json:"version_info"`
			}
			if err := json.Unmarshal(body, &v); err != nil {
				c.f.nacks.Add(1)
				return fmt.Errorf("rest endpoints: %w", err)
			}
			c.markers(body, at)
			edsVersion = v.VersionInfo
		}
	}
}

// fetch POSTs a REST discovery request; a nil body means 304 Not Modified.
func (c *client) fetch(ctx context.Context, what string, req restRequest) ([]byte, int64, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, 0, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.target.REST+"/v3/discovery:"+what, bytes.NewReader(b))
	if err != nil {
		return nil, 0, err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := c.f.http.Do(hr)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	at := time.Now().UnixNano()
	if err != nil {
		return nil, 0, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		c.f.responses.Add(1)
		return body, at, nil
	case http.StatusNotModified:
		return nil, at, nil
	}
	return nil, 0, fmt.Errorf("rest %s: %s: %s", what, resp.Status, bytes.TrimSpace(body))
}

// markers records the markers in a resource (or a REST body).
func (c *client) markers(b []byte, at int64) {
	workload.FindMarkers(b, func(seq uint32, idx int32) { c.marker(seq, idx, at) })
}

// marker records that the client has marker seq of cluster idx.
func (c *client) marker(seq uint32, idx int32, at int64) {
	if idx < 0 || int(idx) >= len(c.last) {
		return
	}
	prev := c.last[idx]
	if seq <= prev {
		return
	}
	c.last[idx] = seq
	if prev == 0 {
		c.have++
		c.checkSync(at)
	}
	if e := c.f.event(seq); e != nil && !e.removal {
		c.count(e, at)
	}
}

// gone records that cluster idx was removed.
func (c *client) gone(idx int32, at int64) {
	if e := c.f.removal(idx); e != nil {
		c.count(e, at)
	}
}

// count counts one of e's clusters as had; the last one completes e for
// the client.
func (c *client) count(e *event, at int64) {
	rem, ok := c.pending[e.seq]
	if !ok {
		rem = e.want(c.id)
	}
	if rem <= 0 {
		return
	}
	rem--
	if rem > 0 {
		c.pending[e.seq] = rem
		return
	}
	c.pending[e.seq] = 0
	e.complete(Receipt{Client: c.id, Kind: c.kind, At: at})
}

func (c *client) checkSync(at int64) {
	if c.cdsSeen && c.have >= c.syncTarget && c.syncedAt.Load() == 0 {
		c.syncedAt.Store(at)
		close(c.synced)
	}
}

// bitset is a set of cluster indexes.
type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

func (b bitset) set(i int32)      { b[i>>6] |= 1 << (i & 63) }
func (b bitset) clear(i int32)    { b[i>>6] &^= 1 << (i & 63) }
func (b bitset) has(i int32) bool { return b[i>>6]&(1<<(i&63)) != 0 }

// forEachMissing calls fn for each index in b and not in other.
func (b bitset) forEachMissing(other bitset, fn func(int32)) {
	for w, x := range b {
		x &^= other[w]
		for x != 0 {
			bit := x & -x
			i := int32(w*64) + int32(bits.TrailingZeros64(bit))
			fn(i)
			x &^= bit
		}
	}
}
