package dns

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/xdsbridge/xdsbridge/sdk"
)

func TestDecodeTestdata(t *testing.T) {
	tests := []struct {
		file string
		want func(c *Config)
	}{
		{"full.yaml", func(c *Config) {
			c.Names = []Name{{Name: "_http._tcp.web.example.com."}, {Name: "_grpc._tcp.api.example.com.", Cluster: "api"}}
			c.Servers = []string{"10.0.0.53", "10.0.0.54:5353", "[2001:db8::53]:53", "ns1.example.internal:53"}
			c.Timeout = 2 * time.Second
			c.Attempts = 3
			c.EDNS0BufferSize = 4096
			c.MinRefresh = time.Second
			c.MaxRefresh = 10 * time.Minute
			c.MaxRetryInterval = time.Minute
		}},
		{"address.yaml", func(c *Config) {
			c.Names = []Name{{Name: "www.example.com"}}
			c.Type = "A+AAAA"
			c.Port = 8443
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got := DefaultConfig()
			if err := sdk.DecodeConfig(data, &got); err != nil {
				t.Fatalf("DecodeConfig: %v", err)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			want := DefaultConfig()
			tt.want(&want)
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("config (-want +got):\n%s", d)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // "path: message"
	}{
		{"empty", ``, []string{"names: at least one name is required"}},
		{"unknown key", "names: [{name: a.}]\nserver: [1.2.3.4]", []string{`server: unknown key "server" (did you mean "servers"?)`}},
		{"bad type", "names: [{name: a.}]\ntype: MX", []string{`type: unknown type "MX" (want SRV, A, AAAA or A+AAAA)`}},
		{"address needs port", "names: [{name: a.}]\ntype: aaaa", []string{"port: required for type aaaa"}},
		{"port range", "names: [{name: a.}]\ntype: A\nport: 70000", []string{"port: 70000 is out of range 1-65535"}},
		{"name missing", "names: [{cluster: x}]", []string{"names[0].name: required"}},
		{"name invalid", "names: [{name: 'a..b'}]", []string{`names[0].name: "a..b" is not a valid domain name`}},
		{"derived cluster clash", "names: [{name: Web.example.}, {name: web.example}]", []string{`names[1].name: cluster "web.example" is already fed by names[0]`}},
		{"explicit cluster clash", "names: [{name: a.}, {name: b., cluster: a}]", []string{`names[1].cluster: cluster "a" is already fed by names[0]`}},
		{"server names", "names: [{name: a.}]\nservers: [ns1.example.internal:53, ns2.example., '[2001:db8::1]:5353', 2001:db8::2]", nil},
		{"bad servers", "names: [{name: a.}]\nservers: ['1.2.3.4:0', 'a..b:53', 'ns1:', '[ns1]:53', 'ns1:dns', '1:2:3', '.']", []string{
			`servers[0]: "1.2.3.4:0": port "0" is out of range 1-65535`,
			`servers[1]: "a..b:53": "a..b" is neither an IP address nor a host name`,
			`servers[2]: "ns1:": port "" is out of range 1-65535`,
			`servers[3]: "[ns1]:53": "ns1" is neither an IP address nor a host name`,
			`servers[4]: "ns1:dns": port "dns" is out of range 1-65535`,
			`servers[5]: "1:2:3" is not ip, ip:port, host or host:port`,
			`servers[6]: ".": "." is neither an IP address nor a host name`,
		}},
		{"attempts", "names: [{name: a.}]\nattempts: 6", []string{"attempts: 6 is out of range 1-5 (0: default)"}},
		{"durations", "names: [{name: a.}]\ntimeout: -1s\nmin_refresh: 10s\nmax_refresh: 5s\nmax_retry_interval: -1s", []string{
			"timeout: must not be negative, got -1s (0: default)",
			"max_refresh: 5s is less than min_refresh 10s",
			"max_retry_interval: must be positive, got -1s",
		}},
		{"min_refresh above max_retry_interval is fine", "names: [{name: a.}]\nmin_refresh: 1m", nil},
		{"duration type", "names: [{name: a.}]\ntimeout: 5", []string{"timeout: cannot unmarshal !!int `5` into time.Duration"}},
		{"edns0", "names: [{name: a.}]\nedns0_buffer_size: 100", []string{"edns0_buffer_size: 100 is out of range 512-65535 (0 disables EDNS0)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Plugin("test").Configure(t.Context(), sdk.ConfigureRequest{Config: []byte(tt.yaml), ValidateOnly: true})
			var ce sdk.ConfigErrors
			if err != nil && !errors.As(err, &ce) {
				t.Fatalf("Configure error = %v, want sdk.ConfigErrors", err)
			}
			var got []string
			for _, e := range ce {
				got = append(got, e.Error())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestClusterName(t *testing.T) {
	for in, want := range map[string]string{
		"_http._tcp.Web.Example.com.": "_http._tcp.web.example.com",
		"web.service.consul":          "web.service.consul",
	} {
		if got := ClusterName(in); got != want {
			t.Errorf("ClusterName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPluginConfigure(t *testing.T) {
	p := Plugin("1.2.3")
	if p.Name != "dns" || p.Version != "1.2.3" {
		t.Fatalf("Plugin = %q %q", p.Name, p.Version)
	}
	src, err := p.Configure(t.Context(), sdk.ConfigureRequest{
		Config:       []byte("names: [{name: _x._tcp.example.}]\nservers: [127.0.0.1]\n"),
		ValidateOnly: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := src.(*Source)
	if got := s.names; !slices.Equal(got, []watched{{name: "_x._tcp.example.", cluster: "_x._tcp.example"}}) {
		t.Errorf("names = %+v", got)
	}
	if got := s.resolver().servers; !slices.Equal(got, []string{"127.0.0.1:53"}) {
		t.Errorf("servers = %q", got)
	}
}

func TestSystemResolver(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Names = []Name{{Name: "_x._tcp.web"}}
	s, err := New(cfg, Options{ResolvConf: filepath.Join("testdata", "resolv.conf")})
	if err != nil {
		t.Fatal(err)
	}
	res := s.resolver()
	if got, want := res.servers, []string{"192.0.2.53:53", "[2001:db8::53]:53"}; !slices.Equal(got, want) {
		t.Errorf("servers = %q, want %q", got, want)
	}
	// ndots:2 and two dots: the name as it is first, then the search list.
	if got, want := res.conf.NameList("_x._tcp.web"), []string{"_x._tcp.web.", "_x._tcp.web.corp.example.", "_x._tcp.web.example.com."}; !slices.Equal(got, want) {
		t.Errorf("search names = %q, want %q", got, want)
	}

	for _, f := range []string{"resolv-empty.conf", "missing.conf"} {
		if _, err := New(cfg, Options{ResolvConf: filepath.Join("testdata", f)}); err == nil {
			t.Errorf("New with %s: no error", f)
		}
	}
	// Explicit servers: the system configuration is not read.
	cfg.Servers = []string{"127.0.0.1:5353"}
	if _, err := New(cfg, Options{ResolvConf: filepath.Join("testdata", "missing.conf")}); err != nil {
		t.Errorf("New with servers: %v", err)
	}
}

// TestTimeoutAndAttempts checks where a lookup's timeout and attempts come
// from: the plugin's options, else resolv.conf's (with the C library's
// bounds) when servers are unset, else the defaults.
func TestTimeoutAndAttempts(t *testing.T) {
	tests := []struct {
		name         string
		servers      []string
		options      string // of resolv.conf
		timeout      time.Duration
		attempts     int
		wantTimeout  time.Duration
		wantAttempts int
	}{
		{name: "resolv.conf without options", wantTimeout: 5 * time.Second, wantAttempts: 2},
		{name: "resolv.conf options", options: "timeout:1 attempts:3", wantTimeout: time.Second, wantAttempts: 3},
		{name: "resolv.conf options over the bounds", options: "timeout:60 attempts:9", wantTimeout: 30 * time.Second, wantAttempts: 5},
		{name: "plugin options win", options: "timeout:1 attempts:3", timeout: 300 * time.Millisecond, attempts: 1, wantTimeout: 300 * time.Millisecond, wantAttempts: 1},
		{name: "one plugin option", options: "timeout:1 attempts:3", attempts: 4, wantTimeout: time.Second, wantAttempts: 4},
		{name: "servers set", servers: []string{"127.0.0.1"}, options: "timeout:1 attempts:3", wantTimeout: 5 * time.Second, wantAttempts: 1},
		{name: "servers set, plugin options", servers: []string{"127.0.0.1"}, timeout: 2 * time.Second, attempts: 3, wantTimeout: 2 * time.Second, wantAttempts: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "resolv.conf")
			if err := os.WriteFile(path, []byte("nameserver 127.0.0.1\noptions "+tt.options+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg := DefaultConfig()
			cfg.Names = []Name{{Name: "a."}}
			cfg.Servers, cfg.Timeout, cfg.Attempts = tt.servers, tt.timeout, tt.attempts
			s, err := New(cfg, Options{ResolvConf: path})
			if err != nil {
				t.Fatal(err)
			}
			if r := s.resolver(); r.timeout != tt.wantTimeout || r.attempts != tt.wantAttempts {
				t.Errorf("timeout %s, attempts %d; want %s, %d", r.timeout, r.attempts, tt.wantTimeout, tt.wantAttempts)
			}
		})
	}
}

func TestDelays(t *testing.T) {
	s := &Source{minRefresh: time.Second, maxRefresh: time.Minute, maxRetryInterval: 10 * time.Second}
	within := func(what string, got, lo, hi time.Duration) {
		t.Helper()
		if got < lo || got > hi {
			t.Errorf("%s = %s, want within [%s, %s]", what, got, lo, hi)
		}
	}
	for range 100 {
		within("refresh ttl 0", s.refreshDelay(0), time.Second, 1100*time.Millisecond)
		within("refresh ttl 30", s.refreshDelay(30), 30*time.Second, 33*time.Second)
		within("refresh ttl 86400", s.refreshDelay(86400), time.Minute, time.Minute)
		within("retry 1", s.retryDelay(1), time.Second, 1100*time.Millisecond)
		within("retry 3", s.retryDelay(3), 4*time.Second, 4400*time.Millisecond)
		within("retry 50", s.retryDelay(50), 10*time.Second, 10*time.Second)
	}
	// A retry cap below min_refresh: retries stay at min_refresh.
	s.maxRetryInterval = time.Millisecond
	within("retry under min_refresh", s.retryDelay(5), time.Second, time.Second)
}
