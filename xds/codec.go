package xds

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// codec is the gRPC server's codec: protobuf, except for the messages of
// the state-of-the-world streams. Their responses are written from bytes
// encoded once and shared by every stream that sends them (sotwOut), and
// their requests are read without decoding the resource names an ACK
// repeats (sotwIn).
type codec struct{ proto encoding.CodecV2 }

func newCodec() codec { return codec{proto: encoding.GetCodecV2(protoenc.Name)} }

// Name is "proto": clients see an ordinary protobuf server.
func (codec) Name() string { return protoenc.Name }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if out, ok := v.(*sotwOut); ok {
		// Neither part is pooled: the shared body outlives any one write.
		if len(out.body) == 0 {
			return mem.BufferSlice{mem.SliceBuffer(out.tail)}, nil
		}
		return mem.BufferSlice{mem.SliceBuffer(out.body), mem.SliceBuffer(out.tail)}, nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if in, ok := v.(*sotwIn); ok {
		if in.inBuf == nil {
			in.inBuf = in.bufs.get()
		}
		in.raw = in.raw[:0]
		for _, b := range data {
			in.raw = append(in.raw, b.ReadOnlyData()...)
		}
		return in.parse()
	}
	return c.proto.Unmarshal(data, v)
}

var _ encoding.CodecV2 = codec{}

// sotwOut is a DiscoveryResponse to write: body holds its version_info and
// resources fields (shared), tail its type_url and nonce. resp is the same
// response decoded, with the shared resources, for the callbacks and the
// stats handler.
type sotwOut struct {
	resp       *discovery.DiscoveryResponse
	body, tail []byte
}

func newSotwOut(resp *discovery.DiscoveryResponse, body []byte) *sotwOut {
	tail := make([]byte, 0, 4+len(resp.GetTypeUrl())+len(resp.GetNonce()))
	tail = protowire.AppendTag(tail, 4, protowire.BytesType)
	tail = protowire.AppendString(tail, resp.GetTypeUrl())
	tail = protowire.AppendTag(tail, 5, protowire.BytesType)
	tail = protowire.AppendString(tail, resp.GetNonce())
	return &sotwOut{resp: resp, body: body, tail: tail}
}

// sotwIn is a DiscoveryRequest as read by the codec: every field decoded
// but the resource names, which are kept as slices of raw until the
// stream knows whether they changed. Its buffers are taken from bufs when
// a request arrives and given back once it is handled, so that a stream
// waiting for its next request holds none.
type sotwIn struct {
	bufs *inBufs
	*inBuf
	version     string
	typeURL     string
	nonce       string
	node        *core.Node
	errorDetail *rpcstatus.Status
}

// inBuf holds a request's bytes.
type inBuf struct {
	raw   []byte
	names [][]byte // slices of raw
	key   []byte   // scratch for namesKey
}

// inBufs are request buffers shared by the streams; the zero value is
// ready to use.
type inBufs struct{ pool sync.Pool }

// maxPooledRequest bounds the request buffers kept for reuse.
const maxPooledRequest = 64 << 10

func (p *inBufs) get() *inBuf {
	if p == nil {
		return &inBuf{}
	}
	if b, ok := p.pool.Get().(*inBuf); ok {
		return b
	}
	return &inBuf{}
}

// release gives the request's buffers back: the request is handled.
func (in *sotwIn) release() {
	b := in.inBuf
	in.inBuf, in.node, in.errorDetail = nil, nil, nil
	if b != nil && in.bufs != nil && cap(b.raw) <= maxPooledRequest {
		clear(b.names)
		in.bufs.pool.Put(b)
	}
}

// GetNode returns the request's node: the allow list reads it.
func (in *sotwIn) GetNode() *core.Node { return in.node }

var errMalformed = errors.New("malformed DiscoveryRequest")

// DiscoveryRequest field numbers.
const (
	reqVersion     = 1
	reqNode        = 2
	reqNames       = 3
	reqTypeURL     = 4
	reqNonce       = 5
	reqErrorDetail = 6
)

func (in *sotwIn) parse() error {
	in.version, in.typeURL, in.nonce, in.node, in.errorDetail = "", "", "", nil, nil
	in.names = in.names[:0]
	b := in.raw
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return errMalformed
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		var err error
		switch num {
		case reqVersion:
			in.version, err = utf8String(v, "version_info")
		case reqTypeURL:
			in.typeURL, err = utf8String(v, "type_url")
		case reqNonce:
			in.nonce, err = utf8String(v, "response_nonce")
		case reqNames:
			in.names = append(in.names, v)
		case reqNode:
			if in.node == nil {
				in.node = &core.Node{}
			}
			err = proto.UnmarshalOptions{Merge: true}.Unmarshal(v, in.node)
		case reqErrorDetail:
			if in.errorDetail == nil {
				in.errorDetail = &rpcstatus.Status{}
			}
			err = proto.UnmarshalOptions{Merge: true}.Unmarshal(v, in.errorDetail)
		}
		if err != nil {
			return fmt.Errorf("%w: %w", errMalformed, err)
		}
	}
	return nil
}

func utf8String(b []byte, field string) (string, error) {
	if !utf8.Valid(b) {
		return "", fmt.Errorf("%s is not valid UTF-8", field)
	}
	return string(b), nil
}

// ResourceNameCount is how many resource names the request carries; the
// server's limits read it.
func (in *sotwIn) ResourceNameCount() int { return len(in.names) }

// sameNames reports whether the request names exactly names, in order.
func (in *sotwIn) sameNames(names []string) bool {
	if len(in.names) != len(names) {
		return false
	}
	for i, n := range in.names {
		if string(n) != names[i] {
			return false
		}
	}
	return true
}

// namesKey returns the names, each preceded by its length: a key that
// tells every list of names from every other. It is valid until the next
// call.
func (in *sotwIn) namesKey() []byte {
	in.key = in.key[:0]
	for _, n := range in.names {
		in.key = binary.AppendUvarint(in.key, uint64(len(n)))
		in.key = append(in.key, n...)
	}
	return in.key
}

// namesList decodes the resource names.
func (in *sotwIn) namesList() ([]string, error) {
	if len(in.names) == 0 {
		return nil, nil
	}
	out := make([]string, len(in.names))
	for i, n := range in.names {
		s, err := utf8String(n, "resource_names")
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}
