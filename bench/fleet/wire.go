package fleet

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// Clients read and write xDS messages as raw protobuf bytes and decode only
// the fields they need: versions, nonces, type URLs, resource names and the
// resources' bytes (searched for markers without being decoded).

// frame is one raw message.
type frame struct{ b []byte }

// rawCodec passes frames through; it is forced on every client call.
type rawCodec struct{}

// Name is "proto": the server sees an ordinary gRPC client.
func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*frame)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(f.b)}, nil
}

// bigFrame is the size above which a frame's buffer is not kept for reuse.
const bigFrame = 64 << 10

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	n := data.Len()
	if cap(f.b) < n || cap(f.b) > bigFrame {
		f.b = make([]byte, 0, max(n, 512))
	}
	f.b = f.b[:0]
	for _, buf := range data {
		f.b = append(f.b, buf.ReadOnlyData()...)
	}
	return nil
}

var _ encoding.CodecV2 = rawCodec{}

var errMalformed = errors.New("malformed message")

// resource is one resource of a response.
type resource struct {
	// name is set in delta responses only.
	name    []byte
	typeURL []byte
	// value is the serialized resource.
	value []byte
}

// response is a decoded DiscoveryResponse or DeltaDiscoveryResponse.
type response struct {
	version   []byte
	typeURL   []byte
	nonce     []byte
	resources []resource
	removed   [][]byte
}

func (r *response) reset() {
	r.version, r.typeURL, r.nonce = nil, nil, nil
	r.resources = r.resources[:0]
	r.removed = r.removed[:0]
}

// forEachField calls fn for each field of b. fn returns how many bytes of
// the value it consumed, or -1 to have the field skipped.
func forEachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte) int) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		n = fn(num, typ, b)
		if n < 0 {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
	}
	return nil
}

// bytesField consumes a length-delimited value into *dst.
func bytesField(typ protowire.Type, b []byte, dst *[]byte) int {
	if typ != protowire.BytesType {
		return -1
	}
	v, n := protowire.ConsumeBytes(b)
	if n >= 0 {
		*dst = v
	}
	return n
}

// parseAny decodes a google.protobuf.Any.
func parseAny(b []byte, r *resource) error {
	return forEachField(b, func(num protowire.Number, typ protowire.Type, v []byte) int {
		switch num {
		case 1:
			return bytesField(typ, v, &r.typeURL)
		case 2:
			return bytesField(typ, v, &r.value)
		}
		return -1
	})
}

// parseSotw decodes a DiscoveryResponse.
func parseSotw(b []byte, r *response) error {
	r.reset()
	var perr error
	err := forEachField(b, func(num protowire.Number, typ protowire.Type, v []byte) int {
		switch num {
		case 1:
			return bytesField(typ, v, &r.version)
		case 2:
			var a []byte
			n := bytesField(typ, v, &a)
			if n >= 0 {
				var res resource
				if err := parseAny(a, &res); err != nil {
					perr = err
				}
				r.resources = append(r.resources, res)
			}
			return n
		case 4:
			return bytesField(typ, v, &r.typeURL)
		case 5:
			return bytesField(typ, v, &r.nonce)
		}
		return -1
	})
	if err != nil {
		return err
	}
	return perr
}

// parseDelta decodes a DeltaDiscoveryResponse.
func parseDelta(b []byte, r *response) error {
	r.reset()
	var perr error
	err := forEachField(b, func(num protowire.Number, typ protowire.Type, v []byte) int {
		switch num {
		case 1:
			return bytesField(typ, v, &r.version)
		case 2:
			var rb []byte
			n := bytesField(typ, v, &rb)
			if n >= 0 {
				var res resource
				if err := forEachField(rb, func(num protowire.Number, typ protowire.Type, v []byte) int {
					switch num {
					case 2:
						var a []byte
						n := bytesField(typ, v, &a)
						if n >= 0 {
							if err := parseAny(a, &res); err != nil {
								perr = err
							}
						}
						return n
					case 3:
						return bytesField(typ, v, &res.name)
					}
					return -1
				}); err != nil {
					perr = err
				}
				r.resources = append(r.resources, res)
			}
			return n
		case 4:
			return bytesField(typ, v, &r.typeURL)
		case 5:
			return bytesField(typ, v, &r.nonce)
		case 6:
			var name []byte
			n := bytesField(typ, v, &name)
			if n >= 0 {
				r.removed = append(r.removed, name)
			}
			return n
		}
		return -1
	})
	if err != nil {
		return err
	}
	return perr
}

// resourceName returns field 1 of a serialized resource: the name of a
// Cluster, the cluster_name of a ClusterLoadAssignment.
func resourceName(b []byte) ([]byte, error) {
	var name []byte
	err := forEachField(b, func(num protowire.Number, typ protowire.Type, v []byte) int {
		if num == 1 {
			return bytesField(typ, v, &name)
		}
		return -1
	})
	return name, err
}

// appendNode encodes a core.v3.Node {id, cluster} as field num.
func appendNode(dst []byte, num protowire.Number, id, cluster string) []byte {
	var node []byte
	node = protowire.AppendTag(node, 1, protowire.BytesType)
	node = protowire.AppendString(node, id)
	node = protowire.AppendTag(node, 2, protowire.BytesType)
	node = protowire.AppendString(node, cluster)
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	return protowire.AppendBytes(dst, node)
}

// appendStrings encodes names as repeated string field num.
func appendStrings(dst []byte, num protowire.Number, names []string) []byte {
	for _, n := range names {
		dst = protowire.AppendTag(dst, num, protowire.BytesType)
		dst = protowire.AppendString(dst, n)
	}
	return dst
}

func appendString(dst []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return dst
	}
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	return protowire.AppendString(dst, s)
}

// appendStatus encodes a google.rpc.Status {code: INVALID_ARGUMENT,
// message} as field num.
func appendStatus(dst []byte, num protowire.Number, message string) []byte {
	var st []byte
	st = protowire.AppendTag(st, 1, protowire.VarintType)
	st = protowire.AppendVarint(st, 3)
	st = appendString(st, 2, message)
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	return protowire.AppendBytes(dst, st)
}

// sotwRequest encodes a DiscoveryRequest. node and names are pre-encoded
// fields (appendNode with field 2, appendStrings with field 3).
func sotwRequest(dst, node []byte, version, nonce, typeURL string, names []byte, nack string) []byte {
	dst = appendString(dst, 1, version)
	dst = append(dst, node...)
	dst = append(dst, names...)
	dst = appendString(dst, 4, typeURL)
	dst = appendString(dst, 5, nonce)
	if nack != "" {
		dst = appendStatus(dst, 6, nack)
	}
	return dst
}

// deltaRequest encodes a DeltaDiscoveryRequest; node is pre-encoded (field
// 1).
func deltaRequest(dst, node []byte, typeURL string, subscribe, unsubscribe []string, nonce, nack string) []byte {
	dst = append(dst, node...)
	dst = appendString(dst, 2, typeURL)
	dst = appendStrings(dst, 3, subscribe)
	dst = appendStrings(dst, 4, unsubscribe)
	dst = appendString(dst, 6, nonce)
	if nack != "" {
		dst = appendStatus(dst, 7, nack)
	}
	return dst
}
