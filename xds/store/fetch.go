package store

import (
	"context"
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// Fetch answers a REST request. No resource names (or "*") asks for every
// resource of the type, under the type version; named resources are answered
// with those that exist, under a hash of their names and versions. A request
// whose version_info is already that version gets *types.SkipFetchError,
// which the REST gateway turns into 304 Not Modified.
func (s *Store) Fetch(ctx context.Context, req *cachev3.Request) (cachev3.Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fetch %s: %w", req.GetTypeUrl(), err)
	}
	typeURL := req.GetTypeUrl()
	wildcard := len(req.GetResourceNames()) == 0
	names := make(map[string]struct{}, len(req.GetResourceNames()))
	for _, name := range req.GetResourceNames() {
		if name == "*" {
			wildcard = true
		}
		names[name] = struct{}{}
	}

	s.mu.RLock()
	view := &typeView{typeURL: typeURL}
	if ts := s.types[typeURL]; ts != nil {
		view = ts.view
	}
	s.mu.RUnlock()

	r := &response{req: req, view: view, ctx: ctx}
	if wildcard {
		r.kind = fullWildcard
		r.version = view.Version()
	} else {
		r.kind = fetched
		r.entries = view.selectNames(names)
		r.version = hashPairs(r.entries)
	}
	if v := req.GetVersionInfo(); v != "" && v == r.version {
		return nil, &types.SkipFetchError{}
	}
	return r, nil
}
