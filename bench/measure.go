package bench

import (
	"bufio"
	"bytes"
	"context"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// cpuTime is this process's CPU time (user + system) so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// memory is the live heap after a full collection, and the resident set.
type memory struct {
	heap uint64
	rss  uint64
}

func readMemory() memory {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memory{heap: ms.HeapAlloc, rss: rss()}
}

// rss reads VmRSS from /proc/self/status, in bytes.
func rss() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:")); ok {
			if fields := bytes.Fields(v); len(fields) > 0 {
				kb, _ := strconv.ParseUint(string(fields[0]), 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// quiesce waits until the processes whose CPU time busy reports use less
// than a fifth of a core between them for three 25 ms intervals in a row,
// or limit passes: the work a change set off (responses, ACKs, new
// watches, in the control plane and in the clients) is done.
func quiesce(ctx context.Context, busy func() time.Duration, limit time.Duration) {
	const interval = 25 * time.Millisecond
	deadline := time.Now().Add(limit)
	quiet := 0
	last := busy()
	for time.Now().Before(deadline) && quiet < 3 {
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		now := busy()
		if now-last < interval/5 {
			quiet++
		} else {
			quiet = 0
		}
		last = now
	}
}

// percentile returns the p-th percentile (0–100) of sorted values, by
// nearest rank; NaN for none.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

func median(values []float64) float64 {
	s := slices.Clone(values)
	slices.Sort(s)
	return percentile(s, 50)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
