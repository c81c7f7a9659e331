// Package sdktest is a conformance kit for source plugins. A plugin author
// runs it against their own plugin binary, which it drives through the same
// host protocol xdsbridge uses: the go-plugin handshake with AutoMTLS, Info,
// Configure and Watch. It needs no import beyond the sdk and this package.
//
// A plugin's test builds the binary, runs the standard checks, and then
// plays scenarios against a fake registry:
//
//	func TestPlugin(t *testing.T) {
//		registry := httptest.NewServer(fakeRegistry())
//		defer registry.Close()
//		opts := sdktest.Options{
//			Command: []string{sdktest.Build(t, ".")},
//			Config:  "url: " + registry.URL + "\ninterval: 50ms\n",
//		}
//
//		sdktest.Conformance(t, opts,
//			sdktest.BadConfig{Config: "interval: 5s\n", WantPath: "url"},
//			sdktest.BadConfig{Config: "url: ftp://x\n", WantPath: "url"},
//		)
//
//		p := sdktest.Start(t, opts)
//		full := p.NextData(t, 5*time.Second)
//		if !full.Full || len(full.Clusters) != 2 {
//			t.Fatalf("first update: %s", sdktest.Describe(full))
//		}
//		// … change the fake registry …
//		if change := p.NextData(t, 5*time.Second); change.Full {
//			t.Fatalf("want a change set, got %s", sdktest.Describe(change))
//		}
//		// … check the change's Clusters and RemovedClusters, or the
//		// accumulated p.Clusters(); make the fake registry fail …
//		if st := p.NextStatus(t, 5*time.Second); st.State != sdk.Disconnected {
//			t.Fatalf("status %v", st)
//		}
//	}
//
// Every update Next, NextData and NextStatus return is checked with
// CheckUpdate (the rules xdsbridge's aggregator applies, and a few the SDK
// documents), and a change set before the first full state is an error:
// scenario tests check conformance as they go. Plugin logs go to t.Log.
//
// The plugin runs with the environment xdsbridge gives plugins, only a few
// variables such as PATH, HOME and TMPDIR, so a plugin that passes here does
// not depend on variables the host will not pass.
package sdktest
