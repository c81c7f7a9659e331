package bench

import (
	"fmt"
	"time"
)

// Profile sizes a run.
type Profile struct {
	Name      string
	FullPush  FullPush
	OneOfMany OneOfMany
	Churn     Churn
	IPC       IPC
	Fleet     Fleet
	// Timeout bounds every wait for clients; a change not had by then is
	// counted as undelivered.
	Timeout time.Duration
}

// FullPush: every endpoint of C clusters changes at once, pushed to SotW
// clients subscribed to everything; the clients join in steps so that the
// push is measured at each number of clients.
type FullPush struct {
	Clusters, Endpoints int
	Clients             []int
	Pushes              int
}

// OneOfMany: one of C clusters changes, with every client subscribed to
// all of them. Solo clusters (one subscriber each) change too, to show
// whether the cost of a change follows the clients subscribed to it or the
// subscriptions overall.
type OneOfMany struct {
	Clusters, Endpoints, Clients int
	Solo                         int
	Changes                      int
}

// Churn: a mixed fleet under sustained endpoint flaps and reconnects,
// then a rollout burst, clusters added and clusters removed.
type Churn struct {
	Clusters, Endpoints, Clients int
	// Mix is the percentage of SotW, delta and REST clients.
	Mix [3]int
	// ShareMilli is the share of clusters whose endpoints each client
	// subscribes to, in thousandths.
	ShareMilli int
	// FlapsPerSecond for Duration.
	FlapsPerSecond float64
	Duration       time.Duration
	// ReconnectPercent of the streaming clients reconnect each second
	// during the flaps.
	ReconnectPercent float64
	// Rollout replaces half the endpoints of this many clusters at once.
	Rollout int
	// AddRemove clusters are added at once, then as many removed.
	AddRemove    int
	RESTInterval time.Duration
}

// IPC: the full state of Clusters×Endpoints endpoints from the plugin to
// the aggregator.
type IPC struct {
	Clusters, Endpoints, Repeats int
}

// Fleet: SotW clients, each on its own connection (as many Envoys),
// subscribed to every cluster, then one cluster changed at a time: the
// time to sync them all, the memory each costs, and how long one change
// takes to reach the last of them.
type Fleet struct {
	Clusters, Endpoints, Clients int
	Changes                      int
	// SkipSnapshot leaves SnapshotCache out of this scenario: it resends
	// every resource of its one snapshot to every client on each change.
	// At 1,000 clients that took 7 to 18 s per change and 90 s in all on
	// two cores, half again the rest of the quick profile, for what the
	// other scenarios already show.
	SkipSnapshot bool
}

// Quick is `make bench`: the two headline scenarios at the targets' sizes,
// the churn scenario scaled down; a few minutes on two cores.
func Quick() Profile {
	return Profile{
		Name:      "quick",
		FullPush:  FullPush{Clusters: 100, Endpoints: 100, Clients: []int{100, 250, 500}, Pushes: 3},
		OneOfMany: OneOfMany{Clusters: 1000, Endpoints: 10, Clients: 500, Solo: 5, Changes: 3},
		Churn: Churn{
			Clusters: 2000, Endpoints: 10, Clients: 200, Mix: [3]int{70, 20, 10}, ShareMilli: 100,
			FlapsPerSecond: 50, Duration: 10 * time.Second, ReconnectPercent: 2,
			Rollout: 200, AddRemove: 20, RESTInterval: time.Second,
		},
		IPC:     IPC{Clusters: 100, Endpoints: 1000, Repeats: 3},
		Fleet:   Fleet{Clusters: 1000, Endpoints: 3, Clients: 1000, Changes: 5, SkipSnapshot: true}, // the target's 5,000 in Full
		Timeout: 30 * time.Second,
	}
}

// Full is the documented full profile: every scenario at the targets'
// sizes, more repetitions.
func Full() Profile {
	return Profile{
		Name:      "full",
		FullPush:  FullPush{Clusters: 100, Endpoints: 100, Clients: []int{100, 250, 500, 1000}, Pushes: 5},
		OneOfMany: OneOfMany{Clusters: 1000, Endpoints: 10, Clients: 500, Solo: 10, Changes: 10},
		Churn: Churn{
			Clusters: 10000, Endpoints: 10, Clients: 1000, Mix: [3]int{70, 20, 10}, ShareMilli: 100,
			FlapsPerSecond: 100, Duration: 60 * time.Second, ReconnectPercent: 1,
			Rollout: 1000, AddRemove: 100, RESTInterval: time.Second,
		},
		IPC:     IPC{Clusters: 100, Endpoints: 1000, Repeats: 5},
		Fleet:   Fleet{Clusters: 1000, Endpoints: 3, Clients: 5000, Changes: 10, SkipSnapshot: true},
		Timeout: 3 * time.Minute,
	}
}

// Tiny is for tests: every scenario, seconds in all.
func Tiny() Profile {
	return Profile{
		Name:      "tiny",
		FullPush:  FullPush{Clusters: 10, Endpoints: 10, Clients: []int{3, 6}, Pushes: 2},
		OneOfMany: OneOfMany{Clusters: 50, Endpoints: 4, Clients: 6, Solo: 2, Changes: 2},
		Churn: Churn{
			Clusters: 60, Endpoints: 4, Clients: 10, Mix: [3]int{50, 30, 20}, ShareMilli: 500,
			FlapsPerSecond: 40, Duration: time.Second, ReconnectPercent: 20,
			Rollout: 10, AddRemove: 5, RESTInterval: 100 * time.Millisecond,
		},
		IPC:     IPC{Clusters: 10, Endpoints: 100, Repeats: 2},
		Fleet:   Fleet{Clusters: 40, Endpoints: 3, Clients: 12, Changes: 2},
		Timeout: 30 * time.Second,
	}
}

// ProfileByName returns quick, full or tiny.
func ProfileByName(name string) (Profile, error) {
	switch name {
	case "quick":
		return Quick(), nil
	case "full":
		return Full(), nil
	case "tiny":
		return Tiny(), nil
	}
	return Profile{}, fmt.Errorf("unknown profile %q (want quick, full or tiny)", name)
}
