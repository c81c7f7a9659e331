package consul

import "time"

// livenessSlack covers what the other terms of MaxSilence do not: a
// request's connection and transfer beyond its deadline, and scheduling.
const livenessSlack = 30 * time.Second

// heartbeatEvery is the least time between two progress reports: the
// runner repeats its status when an answer (or failure) from Consul comes
// in and it has sent nothing for this long.
func (s *Source) heartbeatEvery() time.Duration { return s.cfg.Wait / 16 }

// MaxSilence implements sdk.Liveness. Every datacenter's catalog query
// answers (or fails) at least once per wait plus Consul's jitter (wait/16)
// plus the request timeout, or after a failure once per retry.max plus
// that; a report follows within heartbeatEvery of an answer. So a source
// silent for longer is stuck: 1.125 × wait + retry.max + 1 min (7m7.5s with
// the defaults).
func (s *Source) MaxSilence() time.Duration {
	w := s.cfg.Wait
	return w + w/16 + s.client.timeout + s.cfg.Retry.Max + s.heartbeatEvery() + livenessSlack
}
