package xds

import (
	"context"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"

	"github.com/xdsbridge/xdsbridge/xds/conns"
)

// RateLimit bounds the discovery requests the server takes in, per
// connection and in total, with token buckets. A request over the limit is
// delayed, never refused: the stream stays open, and the client's further
// requests wait behind it in its own connection's flow control. The zero
// value does not limit.
type RateLimit struct {
	PerConnection Bucket
	Total         Bucket
}

// Bucket is a token bucket: Rate requests per second, up to Burst at once.
// A Rate of 0 does not limit.
type Bucket struct {
	Rate  float64
	Burst int
}

func (b Bucket) limiter() *rate.Limiter {
	if b.Rate <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(b.Rate), max(b.Burst, 1))
}

// limiter delays requests over the rate limit.
type limiter struct {
	perConn Bucket
	total   *rate.Limiter
	m       *metrics
}

func newLimiter(rl RateLimit, m *metrics) *limiter {
	return &limiter{perConn: rl.PerConnection, total: rl.Total.limiter(), m: m}
}

func (l *limiter) enabled() bool { return l.total != nil || l.perConn.Rate > 0 }

// forConn returns a new connection's bucket; nil when unlimited.
func (l *limiter) forConn() *rate.Limiter { return l.perConn.limiter() }

// wait returns once one request may go through both the connection's
// bucket (nil: unlimited) and the total one, or with ctx's error when ctx
// ends first. A delayed request is counted once, against the bucket that
// delayed it most, and is pending while it waits.
func (l *limiter) wait(ctx context.Context, conn *rate.Limiter, c *conns.Conn) error {
	now := time.Now()
	var (
		delay time.Duration
		scope string
		held  []*rate.Reservation
	)
	for _, b := range []struct {
		lim   *rate.Limiter
		scope string
	}{{conn, "connection"}, {l.total, "total"}} {
		if b.lim == nil {
			continue
		}
		r := b.lim.ReserveN(now, 1)
		held = append(held, r)
		if d := r.DelayFrom(now); d > delay {
			delay, scope = d, b.scope
		}
	}
	if delay <= 0 {
		return nil
	}
	l.m.rateLimited.WithLabelValues(scope).Inc()
	c.RateLimited()
	l.m.pending.Inc()
	defer l.m.pending.Dec()
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		for _, r := range held {
			r.Cancel()
		}
		return ctx.Err()
	}
}

// limitRequests is the stream interceptor that delays every received
// message over the rate limit.
func (s *Server) limitRequests(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !s.limiter.enabled() {
		return handler(srv, ss)
	}
	return handler(srv, &limitedStream{ServerStream: ss, l: s.limiter, conn: connStateFrom(ss.Context())})
}

type limitedStream struct {
	grpc.ServerStream
	l    *limiter
	conn *connState
}

func (ls *limitedStream) RecvMsg(m any) error {
	if err := ls.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	var (
		lim *rate.Limiter
		c   *conns.Conn
	)
	if ls.conn != nil {
		lim, c = ls.conn.limit, ls.conn.reg
	}
	return ls.l.wait(ls.Context(), lim, c)
}
