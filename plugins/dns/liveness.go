package dns

import "time"

// livenessSlack covers a lookup's own time (servers, attempts, search
// names, SRV targets) and scheduling: a source silent for longer than
// MaxSilence is stuck, not slow.
const livenessSlack = 2 * time.Minute

// heartbeatEvery is the least time between two progress reports: Run
// repeats its status when a lookup answers (or fails) and it has sent
// nothing for this long.
func (s *Source) heartbeatEvery() time.Duration { return s.maxRefresh / 16 }

// MaxSilence implements sdk.Liveness. Every name is looked up again within
// max_refresh of its last answer, or within max_retry_interval (never less
// than min_refresh) of a failure; a report follows within heartbeatEvery of
// a lookup. So: max(max_refresh, max_retry_interval) + max_refresh/16 +
// 2 min (7m18.75s with the defaults).
func (s *Source) MaxSilence() time.Duration {
	return max(s.maxRefresh, s.maxRetryInterval, s.minRefresh) + s.heartbeatEvery() + livenessSlack
}
