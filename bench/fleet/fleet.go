// Package fleet runs the benchmark's synthetic xDS clients: state-of-the-
// world ADS streams, delta ADS streams and REST pollers, each subscribing to
// every cluster (CDS wildcard) and to the endpoints (EDS) of a share of
// them, and ACKing every response.
//
// Clients are cheap: one goroutine per client, messages kept as raw bytes,
// and only what is needed to ACK and to timestamp decoded. A client "has" a
// change when it receives the marker the change put into a resource (see
// workload.Marker); the fleet records when each client got each announced
// change, and reports the receipts for the driver to turn into latencies.
//
// A Fleet runs in the driver's process (Local) or, so that its CPU and
// memory are not counted as the control plane's, in a process of its own
// driven over a pipe (Spawn, ServeRPC).
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/xdsbridge/xdsbridge/bench/workload"
)

// Kind is a kind of client.
type Kind uint8

const (
	// SotW is a state-of-the-world ADS stream.
	SotW Kind = iota + 1
	// Delta is a delta ADS stream.
	Delta
	// REST polls the REST-JSON endpoints.
	REST
)

func (k Kind) String() string {
	switch k {
	case SotW:
		return "sotw"
	case Delta:
		return "delta"
	case REST:
		return "rest"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Options configure a Fleet.
type Options struct {
	// ShareMilli is the share of the regular clusters whose endpoints each
	// client subscribes to, in thousandths (see workload.Subscribed).
	ShareMilli int
	// MaxClusters bounds the cluster indices the clients will see.
	MaxClusters int
	// RESTInterval is how often REST clients poll. Default 1s.
	RESTInterval time.Duration
}

// Target is where the control plane under test listens.
type Target struct {
	GRPC string
	// REST is empty when the control plane does not serve REST.
	REST string
}

// Event is a change the driver is about to make: every cluster in Clusters
// will carry marker Seq (or, for a Removal, be gone).
type Event struct {
	Seq      uint32
	Clusters []workload.Ref
	Removal  bool
}

// Receipt is one client having one change.
type Receipt struct {
	Client int32
	Kind   Kind
	// At is when the client had the change, in Unix nanoseconds.
	At int64
}

// EventReport is who had an event, and when.
type EventReport struct {
	Seq uint32
	// Expected is how many clients the event concerns.
	Expected int
	Receipts []Receipt
}

// SyncReport says when each client of a range had everything it
// subscribes to for the first time.
type SyncReport struct {
	Kinds []Kind
	// At is in Unix nanoseconds, 0 for a client that is not synced.
	At []int64
}

// Counters are cumulative totals over the fleet's life.
type Counters struct {
	// BytesRead is what the clients read from the control plane: what it
	// wrote, framing included.
	BytesRead    int64
	Responses    int64
	NACKs        int64
	StreamErrors int64
	Reconnects   int64
	RESTPolls    int64
	// Dials are the connections the clients opened: each client dials its
	// own, as separate proxies would.
	Dials int64
	// Errors are the first few distinct stream errors, with their counts.
	Errors map[string]int64
}

// Fleet is a set of synthetic clients and the changes they wait for.
type Fleet struct {
	opts   Options
	logger *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.RWMutex
	clients  []*client
	events   map[uint32]*event
	removals map[int32]uint32

	churnMu   sync.Mutex
	churnStop context.CancelFunc
	churnDone chan struct{}

	http *http.Client

	errMu  sync.Mutex
	errors map[string]int64

	bytesRead, responses, nacks, streamErrors, reconnects, restPolls, dials atomic.Int64
}

// New returns an empty fleet. Close it when done.
func New(opts Options, logger *slog.Logger) *Fleet {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.RESTInterval <= 0 {
		opts.RESTInterval = time.Second
	}
	if opts.ShareMilli <= 0 {
		opts.ShareMilli = 1000
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Fleet{
		opts:     opts,
		logger:   logger,
		ctx:      ctx,
		cancel:   cancel,
		events:   map[uint32]*event{},
		removals: map[int32]uint32{},
		errors:   map[string]int64{},
	}
	f.http = &http.Client{
		Transport: &http.Transport{
			DialContext:         f.dial,
			MaxIdleConnsPerHost: 1 << 16,
			IdleConnTimeout:     time.Minute,
		},
		Timeout: time.Minute,
	}
	return f
}

// dial connects to addr and counts what is read from the connection.
func (f *Fleet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	f.dials.Add(1)
	return &countingConn{Conn: c, n: &f.bytesRead}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// Connect starts one client per kind, numbered from the current size of the
// fleet, and returns the first number. clusters are the clusters that exist
// now: a client is synced once it has the endpoints of every one of them it
// subscribes to.
func (f *Fleet) Connect(target Target, kinds []Kind, clusters []workload.Ref) (int32, error) {
	if f.ctx.Err() != nil {
		return 0, errors.New("fleet closed")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := RaiseFDLimit(len(f.clients) + len(kinds) + FDSlack); err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	first := int32(len(f.clients))
	for i, k := range kinds {
		if k == REST && target.REST == "" {
			return 0, errors.New("connect: REST clients need a REST address")
		}
		c := newClient(f, first+int32(i), k, target)
		for _, r := range clusters {
			if workload.Subscribed(c.id, r, f.opts.ShareMilli) {
				c.syncTarget++
			}
		}
		f.clients = append(f.clients, c)
	}
	for _, c := range f.clients[first:] {
		f.wg.Go(func() { c.run(f.ctx) })
	}
	return first, nil
}

// Size is the number of clients.
func (f *Fleet) Size() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.clients)
}

// WaitSynced waits until clients [from, to) are synced or timeout passes,
// and reports when each got there.
func (f *Fleet) WaitSynced(ctx context.Context, from, to int32, timeout time.Duration) SyncReport {
	f.mu.RLock()
	cs := slices.Clone(f.clients[from:min(int(to), len(f.clients))])
	f.mu.RUnlock()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, c := range cs {
		select {
		case <-c.synced:
		case <-ctx.Done():
		}
	}
	out := SyncReport{Kinds: make([]Kind, len(cs)), At: make([]int64, len(cs))}
	for i, c := range cs {
		out.Kinds[i] = c.kind
		out.At[i] = c.syncedAt.Load()
	}
	return out
}

// event is an announced change and its receipts.
type event struct {
	seq     uint32
	single  bool
	removal bool
	// perClient is how many of the event's clusters each client is to
	// receive, for events of several clusters.
	perClient []int32
	uniform   int32
	expected  int

	mu       sync.Mutex
	receipts []Receipt
	done     chan struct{}
}

func (e *event) want(client int32) int32 {
	switch {
	case e.single:
		return 1
	case e.removal:
		return e.uniform
	case int(client) < len(e.perClient):
		return e.perClient[client]
	}
	return 0
}

func (e *event) complete(r Receipt) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.receipts) >= e.expected {
		return
	}
	e.receipts = append(e.receipts, r)
	if len(e.receipts) == e.expected {
		close(e.done)
	}
}

// Announce registers changes before the driver makes them, and works out
// which clients each concerns: those subscribed to its clusters, or, for a
// removal, every client (all of them watch every cluster).
func (f *Fleet) Announce(evs []Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.clients)
	for _, ev := range evs {
		e := &event{seq: ev.Seq, removal: ev.Removal, done: make(chan struct{})}
		switch {
		case ev.Removal:
			e.uniform = int32(len(ev.Clusters))
			e.expected = n
			for _, r := range ev.Clusters {
				f.removals[r.Index] = ev.Seq
			}
		case len(ev.Clusters) == 1:
			e.single = true
			for id := range n {
				if workload.Subscribed(int32(id), ev.Clusters[0], f.opts.ShareMilli) {
					e.expected++
				}
			}
		default:
			e.perClient = make([]int32, n)
			for id := range n {
				for _, r := range ev.Clusters {
					if workload.Subscribed(int32(id), r, f.opts.ShareMilli) {
						e.perClient[id]++
					}
				}
				if e.perClient[id] > 0 {
					e.expected++
				}
			}
		}
		if e.expected == 0 || (e.removal && e.uniform == 0) {
			e.expected = 0
			close(e.done)
		}
		f.events[ev.Seq] = e
	}
}

func (f *Fleet) event(seq uint32) *event {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.events[seq]
}

func (f *Fleet) removal(index int32) *event {
	f.mu.RLock()
	defer f.mu.RUnlock()
	seq, ok := f.removals[index]
	if !ok {
		return nil
	}
	return f.events[seq]
}

// Wait waits until every client concerned has each of the events, or
// timeout passes. It reports whether all were had.
func (f *Fleet) Wait(ctx context.Context, seqs []uint32, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, s := range seqs {
		e := f.event(s)
		if e == nil {
			continue
		}
		select {
		case <-e.done:
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// Report returns the receipts of events and forgets them.
func (f *Fleet) Report(seqs []uint32) []EventReport {
	out := make([]EventReport, 0, len(seqs))
	for _, s := range seqs {
		e := f.event(s)
		if e == nil {
			continue
		}
		e.mu.Lock()
		out = append(out, EventReport{Seq: s, Expected: e.expected, Receipts: slices.Clone(e.receipts)})
		e.mu.Unlock()
	}
	f.mu.Lock()
	for _, s := range seqs {
		delete(f.events, s)
	}
	f.mu.Unlock()
	return out
}

// Counters returns the fleet's totals.
func (f *Fleet) Counters() Counters {
	return Counters{
		BytesRead:    f.bytesRead.Load(),
		Responses:    f.responses.Load(),
		NACKs:        f.nacks.Load(),
		StreamErrors: f.streamErrors.Load(),
		Reconnects:   f.reconnects.Load(),
		RESTPolls:    f.restPolls.Load(),
		Dials:        f.dials.Load(),
		Errors:       f.errorCounts(),
	}
}

// maxErrors bounds the distinct errors the fleet keeps.
const maxErrors = 8

// streamError counts a client stream's failure.
func (f *Fleet) streamError(err error) {
	f.streamErrors.Add(1)
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	f.errMu.Lock()
	defer f.errMu.Unlock()
	if _, ok := f.errors[msg]; ok || len(f.errors) < maxErrors {
		f.errors[msg]++
	}
}

func (f *Fleet) errorCounts() map[string]int64 {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	return maps.Clone(f.errors)
}

// Churn makes percent of the streaming clients reconnect each second (0
// stops).
func (f *Fleet) Churn(percent float64) {
	f.churnMu.Lock()
	defer f.churnMu.Unlock()
	if f.churnStop != nil {
		f.churnStop()
		<-f.churnDone
		f.churnStop, f.churnDone = nil, nil
	}
	if percent <= 0 || f.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan struct{})
	f.churnStop, f.churnDone = cancel, done
	go func() {
		defer close(done)
		const tick = 100 * time.Millisecond
		t := time.NewTicker(tick)
		defer t.Stop()
		rng := rand.New(rand.NewPCG(1, 2))
		owed := 0.0
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			f.mu.RLock()
			var streams []*client
			for _, c := range f.clients {
				if c.kind != REST {
					streams = append(streams, c)
				}
			}
			f.mu.RUnlock()
			owed += float64(len(streams)) * percent / 100 * tick.Seconds()
			for ; owed >= 1 && len(streams) > 0; owed-- {
				streams[rng.IntN(len(streams))].reconnect()
			}
		}
	}()
}

// Close stops every client.
func (f *Fleet) Close() {
	f.Churn(0)
	f.cancel()
	f.wg.Wait()
	f.http.CloseIdleConnections()
}

// grpcConn opens a client connection with the settings of an Envoy: large
// flow-control windows, no message size limit that a big state would hit.
// Every stream opens its own and closes it when it ends: no two clients
// share a connection, as no two proxies would.
func (f *Fleet) grpcConn(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return f.dial(ctx, "tcp", addr) }),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{}), grpc.MaxCallRecvMsgSize(1<<30), grpc.MaxCallSendMsgSize(1<<30)),
		grpc.WithInitialWindowSize(16<<20),
		grpc.WithInitialConnWindowSize(16<<20),
		grpc.WithSharedWriteBuffer(true),
	)
}
