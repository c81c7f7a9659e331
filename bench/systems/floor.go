package systems

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/xdsbridge/xdsbridge/bench/fleet"
	"github.com/xdsbridge/xdsbridge/bench/workload"
)

// Floor is the lower bound of serving the workload: each resource version
// is marshalled once, each distinct response is encoded once, and the same
// bytes are written to every stream that needs them. It serves
// state-of-the-world and delta ADS (clusters by wildcard, endpoints by
// name), not REST. It keeps no per-client versions and does not wait for
// ACKs: what changes is sent at once to the streams subscribed to it.
type Floor struct {
	Logger *slog.Logger

	mu    sync.RWMutex
	types [2]*floorType // clusters, endpoints

	gs     *grpc.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (f *Floor) Name() string { return "floor" }

// floorType is one resource type's state and subscribers. Guarded by
// Floor.mu.
type floorType struct {
	url     string
	fullSet bool // SotW responses carry every resource (clusters)
	version uint64
	entries map[string]*floorEntry
	// full is the SotW response with every entry, for this version.
	full *lazyBytes
	// wildcard and byName index the subscriptions.
	wildcard map[*floorSub]struct{}
	byName   map[string]map[*floorSub]struct{}
}

// floorEntry is one version of one resource, pre-encoded.
type floorEntry struct {
	name string
	// any is an encoded google.protobuf.Any; res an encoded delta Resource.
	any, res []byte
}

// floorBatch is one Apply's changes to one type. A subscription concerned
// by all of it, and by nothing else, gets the batch's shared response.
type floorBatch struct {
	version string
	set     []*floorEntry
	removed []string
	sotw    lazyBytes
	delta   lazyBytes
}

type lazyBytes struct {
	once sync.Once
	b    []byte
}

func (l *lazyBytes) get(build func() []byte) []byte {
	l.once.Do(func() { l.b = build() })
	return l.b
}

// floorStream is one client stream.
type floorStream struct {
	delta bool
	wake  chan struct{}

	mu   sync.Mutex // guards every sub's pending state
	subs [2]*floorSub
}

func (st *floorStream) poke() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// floorSub is one stream's subscription to one type.
type floorSub struct {
	st       *floorStream
	t        *floorType
	wildcard bool
	names    map[string]struct{}
	rawNames []byte // SotW: the names of the last request, as sent

	// Guarded by st.mu: what to send next.
	initial bool // everything subscribed (first response, new subscription)
	pending map[string]struct{}
	removed []string
	batch   *floorBatch // the one batch pending, if only one is
	batchN  int         // how many of its items concern the sub
	mixed   bool        // pending comes from several batches
}

func (s *floorSub) mark(name string, b *floorBatch, removed bool) {
	if removed && !s.st.delta && !s.t.fullSet {
		return // state of the world cannot say an endpoint set is gone
	}
	s.st.mu.Lock()
	switch {
	case s.mixed:
	case s.batch == nil && len(s.pending) == 0 && len(s.removed) == 0 && !s.initial:
		s.batch, s.batchN = b, 1
	case s.batch == b:
		s.batchN++
	default:
		s.mixed = true
	}
	if removed {
		delete(s.pending, name)
		s.removed = append(s.removed, name)
	} else {
		s.pending[name] = struct{}{}
	}
	s.st.mu.Unlock()
	s.st.poke()
}

func (f *Floor) Start(ctx context.Context, m *workload.Model, _ workload.Op) (fleet.Target, error) {
	f.types = [2]*floorType{newFloorType(resource.ClusterType, true), newFloorType(resource.EndpointType, false)}
	if err := f.apply(m, m.Refs(), nil); err != nil {
		return fleet.Target{}, err
	}
	f.gs = grpcServer(grpc.ForceServerCodecV2(frameCodec{}))
	handler := func(delta bool) grpc.StreamHandler {
		return func(_ any, ss grpc.ServerStream) error { return f.serve(ss, delta) }
	}
	f.gs.RegisterService(&grpc.ServiceDesc{
		ServiceName: "envoy.service.discovery.v3.AggregatedDiscoveryService",
		HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{
			{StreamName: "StreamAggregatedResources", Handler: handler(false), ServerStreams: true, ClientStreams: true},
			{StreamName: "DeltaAggregatedResources", Handler: handler(true), ServerStreams: true, ClientStreams: true},
		},
	}, struct{}{})
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return fleet.Target{}, fmt.Errorf("floor: listen: %w", err)
	}
	f.wg.Go(func() { _ = f.gs.Serve(ln) })
	return fleet.Target{GRPC: ln.Addr().String()}, nil
}

func newFloorType(url string, fullSet bool) *floorType {
	return &floorType{
		url:      url,
		fullSet:  fullSet,
		entries:  map[string]*floorEntry{},
		full:     &lazyBytes{},
		wildcard: map[*floorSub]struct{}{},
		byName:   map[string]map[*floorSub]struct{}{},
	}
}

func (f *Floor) Apply(_ context.Context, _ workload.Op, m *workload.Model, changed, removed []workload.Ref) error {
	return f.apply(m, changed, removed)
}

// apply marshals the changed resources once, outside the lock, then
// installs them and marks the subscriptions they concern.
func (f *Floor) apply(m *workload.Model, changed, removed []workload.Ref) error {
	var cds, eds []proto.Message
	var cdsNames, edsNames []string
	f.mu.RLock()
	for _, r := range changed {
		cl, cla, name, err := translated(m, r)
		if err != nil {
			f.mu.RUnlock()
			return fmt.Errorf("floor: %w", err)
		}
		eds, edsNames = append(eds, cla), append(edsNames, name)
		if _, ok := f.types[0].entries[name]; !ok {
			cds, cdsNames = append(cds, cl), append(cdsNames, name)
		}
	}
	f.mu.RUnlock()
	var gone []string
	for _, r := range removed {
		gone = append(gone, r.Name())
	}
	cdsEntries, err := encodeEntries(resource.ClusterType, cdsNames, cds)
	if err != nil {
		return err
	}
	edsEntries, err := encodeEntries(resource.EndpointType, edsNames, eds)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// Clusters first, so that a stream sends a new cluster before its
	// endpoints.
	f.types[0].apply(cdsEntries, gone)
	f.types[1].apply(edsEntries, gone)
	return nil
}

func encodeEntries(typeURL string, names []string, msgs []proto.Message) ([]*floorEntry, error) {
	out := make([]*floorEntry, len(msgs))
	opts := proto.MarshalOptions{Deterministic: true}
	for i, msg := range msgs {
		v, err := opts.Marshal(msg)
		if err != nil {
			return nil, fmt.Errorf("floor: marshal %s: %w", names[i], err)
		}
		a, err := opts.Marshal(&anypb.Any{TypeUrl: typeURL, Value: v})
		if err != nil {
			return nil, fmt.Errorf("floor: marshal %s: %w", names[i], err)
		}
		out[i] = &floorEntry{name: names[i], any: a}
	}
	return out, nil
}

// apply installs set and removes gone; it runs with Floor.mu held.
func (t *floorType) apply(set []*floorEntry, gone []string) {
	var removed []string
	for _, name := range gone {
		if _, ok := t.entries[name]; ok {
			removed = append(removed, name)
		}
	}
	if len(set) == 0 && len(removed) == 0 {
		return
	}
	t.version++
	b := &floorBatch{version: strconv.FormatUint(t.version, 10), set: set, removed: removed}
	for _, e := range set {
		var res []byte
		res = protowire.AppendTag(res, 3, protowire.BytesType)
		res = protowire.AppendString(res, e.name)
		res = protowire.AppendTag(res, 1, protowire.BytesType)
		res = protowire.AppendString(res, b.version)
		res = protowire.AppendTag(res, 2, protowire.BytesType)
		res = protowire.AppendBytes(res, e.any)
		e.res = res
		t.entries[e.name] = e
	}
	for _, name := range removed {
		delete(t.entries, name)
	}
	t.full = &lazyBytes{}
	for _, e := range set {
		for s := range t.byName[e.name] {
			s.mark(e.name, b, false)
		}
		for s := range t.wildcard {
			s.mark(e.name, b, false)
		}
	}
	for _, name := range removed {
		for s := range t.byName[name] {
			s.mark(name, b, true)
		}
		for s := range t.wildcard {
			s.mark(name, b, true)
		}
	}
}

// sotwResponse encodes a DiscoveryResponse; the version is the nonce.
func sotwResponse(typeURL, version string, anys [][]byte) []byte {
	n := 0
	for _, a := range anys {
		n += len(a) + 8
	}
	b := make([]byte, 0, n+len(typeURL)+2*len(version)+16)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, version)
	for _, a := range anys {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, a)
	}
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	b = protowire.AppendString(b, typeURL)
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	return protowire.AppendString(b, version)
}

// deltaResponse encodes a DeltaDiscoveryResponse.
func deltaResponse(typeURL, version string, res [][]byte, removed []string) []byte {
	n := 0
	for _, r := range res {
		n += len(r) + 8
	}
	b := make([]byte, 0, n+len(typeURL)+2*len(version)+16)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, version)
	for _, r := range res {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, r)
	}
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	b = protowire.AppendString(b, typeURL)
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	b = protowire.AppendString(b, version)
	for _, name := range removed {
		b = protowire.AppendTag(b, 6, protowire.BytesType)
		b = protowire.AppendString(b, name)
	}
	return b
}

// serve runs one stream: this goroutine reads requests, a sender it owns
// writes responses.
func (f *Floor) serve(ss grpc.ServerStream, delta bool) error {
	st := &floorStream{delta: delta, wake: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(ss.Context())
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-st.wake:
			}
			if err := f.flush(ss, st); err != nil {
				errc <- err
				cancel()
				return
			}
		}
	})
	defer func() {
		cancel()
		wg.Wait()
		f.mu.Lock()
		for _, s := range st.subs {
			if s != nil {
				s.t.unindex(s)
			}
		}
		f.mu.Unlock()
	}()
	var req frame // reused: a request is handled before the next is read
	for {
		if err := ss.RecvMsg(&req); err != nil {
			select {
			case err := <-errc:
				return err
			default:
			}
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := f.request(st, req.b); err != nil {
			return err
		}
	}
}

func (f *Floor) typeIndex(url []byte) int {
	switch string(url) {
	case resource.ClusterType:
		return 0
	case resource.EndpointType:
		return 1
	}
	return -1
}

// request handles one request: a new subscription or a change of one is
// indexed and its resources marked for sending; an ACK changes nothing.
func (f *Floor) request(st *floorStream, b []byte) error {
	if !st.delta && f.isACK(st, b) {
		return nil
	}
	var (
		typeURL, names, sub, unsub []byte
		nack                       bool
		nameList                   [][]byte
	)
	namesNum, subNum, unsubNum, typeNum, nackNum := protowire.Number(3), protowire.Number(3), protowire.Number(4), protowire.Number(4), protowire.Number(6)
	if st.delta {
		typeNum, nackNum = 2, 7
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("floor: malformed request")
		}
		b = b[n:]
		if typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return fmt.Errorf("floor: malformed request")
			}
			switch {
			case num == typeNum:
				typeURL = v
			case !st.delta && num == namesNum:
				names = append(names, v...)
				names = append(names, 0)
				nameList = append(nameList, v)
			case st.delta && num == subNum:
				sub = append(sub, 0)
				nameList = append(nameList, v)
			case st.delta && num == unsubNum:
				unsub = append(unsub, v...)
				unsub = append(unsub, 0)
			case num == nackNum:
				nack = true
			}
			b = b[m:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return fmt.Errorf("floor: malformed request")
		}
		b = b[n:]
	}
	ti := f.typeIndex(typeURL)
	if ti < 0 {
		return nil
	}
	if nack {
		orDiscard(f.Logger).Warn("floor: NACK", "type", string(typeURL))
	}
	s := st.subs[ti]
	if s != nil && !st.delta && string(names) == string(s.rawNames) {
		return nil // an ACK
	}
	if s != nil && st.delta && len(sub) == 0 && len(unsub) == 0 {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.types[ti]
	if s == nil {
		s = &floorSub{st: st, t: t, names: map[string]struct{}{}, pending: map[string]struct{}{}}
		s.wildcard = len(nameList) == 0 && t.fullSet
		st.mu.Lock()
		st.subs[ti] = s
		s.initial = true
		st.mu.Unlock()
		if s.wildcard {
			t.wildcard[s] = struct{}{}
		}
	}
	if !st.delta {
		s.rawNames = names
	}
	if s.wildcard {
		st.poke()
		return nil
	}
	next := map[string]struct{}{}
	if st.delta {
		next = s.names
		for _, n := range splitNames(unsub) {
			t.unsubscribe(s, n)
			delete(next, n)
		}
	}
	for _, v := range nameList {
		n := string(v)
		next[n] = struct{}{}
		if _, ok := s.names[n]; !ok || st.delta {
			t.subscribe(s, n)
			if t.entries[n] != nil {
				st.mu.Lock()
				s.pending[n] = struct{}{}
				s.mixed = true
				st.mu.Unlock()
			}
		}
	}
	if !st.delta {
		for n := range s.names {
			if _, ok := next[n]; !ok {
				t.unsubscribe(s, n)
			}
		}
		s.names = next
	}
	st.poke()
	return nil
}

// isACK reports, without allocating, whether a SotW request is an ACK of
// a type the stream is subscribed to, with the same names as before.
func (f *Floor) isACK(st *floorStream, b []byte) bool {
	var s *floorSub
	if !eachBytesField(b, func(num protowire.Number, v []byte) bool {
		switch num {
		case 4:
			if ti := f.typeIndex(v); ti >= 0 {
				s = st.subs[ti]
			}
		case 6:
			return false // a NACK
		}
		return true
	}) || s == nil {
		return false
	}
	pos := 0
	return eachBytesField(b, func(num protowire.Number, v []byte) bool {
		if num != 3 {
			return true
		}
		end := pos + len(v)
		if end >= len(s.rawNames) || string(s.rawNames[pos:end]) != string(v) || s.rawNames[end] != 0 {
			return false
		}
		pos = end + 1
		return true
	}) && pos == len(s.rawNames)
}

// eachBytesField calls fn for each length-delimited field of b while fn
// returns true; it returns false if fn did, or if b is malformed.
func eachBytesField(b []byte, fn func(num protowire.Number, v []byte) bool) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return false
			}
			b = b[n:]
			continue
		}
		v, m := protowire.ConsumeBytes(b)
		if m < 0 || !fn(num, v) {
			return false
		}
		b = b[m:]
	}
	return true
}

func splitNames(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := slices.Index(b, 0)
		out = append(out, string(b[:i]))
		b = b[i+1:]
	}
	return out
}

func (t *floorType) subscribe(s *floorSub, name string) {
	s.names[name] = struct{}{}
	m := t.byName[name]
	if m == nil {
		m = map[*floorSub]struct{}{}
		t.byName[name] = m
	}
	m[s] = struct{}{}
}

func (t *floorType) unsubscribe(s *floorSub, name string) {
	delete(s.names, name)
	if m := t.byName[name]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(t.byName, name)
		}
	}
}

func (t *floorType) unindex(s *floorSub) {
	delete(t.wildcard, s)
	for n := range s.names {
		if m := t.byName[n]; m != nil {
			delete(m, s)
			if len(m) == 0 {
				delete(t.byName, n)
			}
		}
	}
}

// flush sends each type's pending response, clusters first.
func (f *Floor) flush(ss grpc.ServerStream, st *floorStream) error {
	for ti := range st.subs {
		b := f.next(st, ti)
		if b == nil {
			continue
		}
		if err := ss.SendMsg(&frame{b: b}); err != nil {
			return err
		}
	}
	return nil
}

// next takes what a subscription has pending and returns the response, or
// nil.
func (f *Floor) next(st *floorStream, ti int) []byte {
	f.mu.RLock()
	defer f.mu.RUnlock()
	st.mu.Lock()
	s := st.subs[ti]
	if s == nil || (!s.initial && len(s.pending) == 0 && len(s.removed) == 0) {
		st.mu.Unlock()
		return nil
	}
	initial, pending, removed, batch, batchN, mixed := s.initial, s.pending, s.removed, s.batch, s.batchN, s.mixed
	s.initial, s.pending, s.removed, s.batch, s.batchN, s.mixed = false, map[string]struct{}{}, nil, nil, 0, false
	st.mu.Unlock()

	t := s.t
	version := strconv.FormatUint(t.version, 10)
	shared := batch != nil && !mixed && !initial && batchN == len(batch.set)+len(batch.removed)
	switch {
	case !st.delta && t.fullSet:
		return t.full.get(func() []byte {
			names := make([]string, 0, len(t.entries))
			for n := range t.entries {
				names = append(names, n)
			}
			slices.Sort(names)
			anys := make([][]byte, len(names))
			for i, n := range names {
				anys[i] = t.entries[n].any
			}
			return sotwResponse(t.url, version, anys)
		})
	case shared && !st.delta:
		return batch.sotw.get(func() []byte {
			anys := make([][]byte, len(batch.set))
			for i, e := range batch.set {
				anys[i] = e.any
			}
			return sotwResponse(t.url, batch.version, anys)
		})
	case shared:
		return batch.delta.get(func() []byte {
			res := make([][]byte, len(batch.set))
			for i, e := range batch.set {
				res[i] = e.res
			}
			return deltaResponse(t.url, batch.version, res, batch.removed)
		})
	}
	if initial && s.wildcard {
		for n := range t.entries {
			pending[n] = struct{}{}
		}
	}
	var parts [][]byte
	for n := range pending {
		e := t.entries[n]
		if e == nil {
			continue
		}
		if st.delta {
			parts = append(parts, e.res)
		} else {
			parts = append(parts, e.any)
		}
	}
	if st.delta {
		return deltaResponse(t.url, version, parts, removed)
	}
	if len(parts) == 0 && !initial {
		return nil
	}
	return sotwResponse(t.url, version, parts)
}

func (f *Floor) Stop() error {
	if f.gs != nil {
		f.gs.Stop()
	}
	f.wg.Wait()
	return nil
}

func (f *Floor) ChildCPU() time.Duration { return 0 }

// frame is a raw message; frameCodec passes it through, so a response
// encoded once is written as it is to every stream.
type frame struct{ b []byte }

type frameCodec struct{}

func (frameCodec) Name() string { return "proto" }

func (frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*frame)
	if !ok {
		return nil, fmt.Errorf("frame codec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(f.b)}, nil
}

func (frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return fmt.Errorf("frame codec: cannot unmarshal into %T", v)
	}
	f.b = f.b[:0]
	for _, buf := range data {
		f.b = append(f.b, buf.ReadOnlyData()...)
	}
	return nil
}

var _ encoding.CodecV2 = frameCodec{}
