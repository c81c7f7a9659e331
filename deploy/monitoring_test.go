package deploy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"
)

const (
	alertsFile    = "prometheus/alerts.yaml"
	alertTests    = "prometheus/alerts_test.yaml"
	dashboardFile = "grafana/xdsbridge.json"
)

// TestAlertRules checks the rules with promtool and runs their unit tests
// (prometheus/alerts_test.yaml): each alert fires on the series it is for,
// after its `for`, and not on the others.
func TestAlertRules(t *testing.T) {
	promtool := tool(t, "PROMTOOL", "promtool")
	run(t, promtool, "check", "rules", alertsFile)
	run(t, promtool, "test", "rules", alertTests)

	// Every alert has a unit test and a runbook line in the README.
	readme := string(readFile(t, filepath.Join(repo, "README.md")))
	tests := string(readFile(t, alertTests))
	for _, a := range alerts(t) {
		if !strings.Contains(tests, "alertname: "+a.Alert) {
			t.Errorf("alert %s has no test in %s", a.Alert, alertTests)
		}
		if !strings.Contains(readme, "| `"+a.Alert+"` |") {
			t.Errorf("alert %s has no runbook line in README.md (a table row starting | `%s` |)", a.Alert, a.Alert)
		}
	}
}

type rule struct {
	Alert string `json:"alert"`
	Expr  string `json:"expr"`
}

func alerts(t *testing.T) []rule {
	t.Helper()
	var f struct {
		Groups []struct {
			Rules []rule `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(readFile(t, alertsFile), &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no rules", alertsFile)
	}
	return out
}

// panelQueries returns every query of the dashboard's panels and variables,
// by where it is.
func panelQueries(t *testing.T) map[string]string {
	t.Helper()
	var d struct {
		Panels []struct {
			ID         int             `json:"id"`
			Type       string          `json:"type"`
			Title      string          `json:"title"`
			Datasource json.RawMessage `json:"datasource"`
			Targets    []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(readFile(t, dashboardFile), &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	out := map[string]string{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("%s: panel id %d is used twice", dashboardFile, p.ID)
		}
		ids[p.ID] = true
		// Every panel with queries reads the data source the user picks.
		if p.Type != "row" && !strings.Contains(string(p.Datasource), `"${datasource}"`) {
			t.Errorf("panel %q: data source %s, want the ${datasource} variable", p.Title, p.Datasource)
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				t.Errorf("panel %q query %s is empty", p.Title, tg.RefID)
			}
			out[fmt.Sprintf("panel %q query %s", p.Title, tg.RefID)] = tg.Expr
		}
	}
	// label_values(SELECTOR, label) reads the series of SELECTOR.
	lv := regexp.MustCompile(`^label_values\((.+), *[a-z_]+\)$`)
	for _, v := range d.Templating.List {
		if m := lv.FindStringSubmatch(v.Definition); m != nil {
			out["variable "+v.Name] = m[1]
		}
	}
	return out
}

// grafanaVars stands in for the dashboard's variables, so that its queries
// are PromQL.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$job", "xdsbridge", "$instance", ".+")

// TestDashboardQueries checks every query of the dashboard with promtool,
// as recording rules (with Grafana's variables filled in): PromQL that does
// not parse fails here rather than as an empty panel.
func TestDashboardQueries(t *testing.T) {
	promtool := tool(t, "PROMTOOL", "promtool")
	qs := panelQueries(t)
	if len(qs) < 10 {
		t.Fatalf("%s: %d queries, want the dashboard's panels", dashboardFile, len(qs))
	}
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, where := range slices.Sorted(func(yield func(string) bool) {
		for k := range qs {
			if !yield(k) {
				return
			}
		}
	}) {
		q, err := json.Marshal(grafanaVars.Replace(qs[where]))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "      - record: dashboard:query_%d # %s\n        expr: %s\n", i, strings.ReplaceAll(where, "\n", " "), q)
	}
	rules := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(rules, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules on the dashboard's queries: %v\n%s\n%s", err, out, b.String())
	}
}

// metricName matches xdsbridge's metric names in a query.
var metricName = regexp.MustCompile(`\bxdsbridge_[a-z0-9_]+\b`)

// TestMonitoringMetricsExist runs xdsbridge on the seed example, drives an
// xDS client through it (ACKs and a NACK, so that the counters that appear
// with traffic appear), and checks that every metric the dashboard and the
// alerts use is in /metrics, as a family of the right kind: a
// histogram's _bucket series, a counter's rate.
func TestMonitoringMetricsExist(t *testing.T) {
	b := serveSeed(t, bridgeBin)
	a := dialADS(t, b.grpcAddr, "monitoring-test")
	_, eds := fetchSeed(t, a)
	// NACK the EDS response: the client keeps nothing new, the NACK counter appears.
	a.request(eds.GetTypeUrl(), []string{"some_service"}, eds, "deploy test: rejected on purpose")

	families := scrape(t, "http://"+b.adminAddr+"/metrics")
	if f := families["xdsbridge_xds_nacks_total"]; f == nil || len(f.GetMetric()) == 0 {
		// The NACK travels asynchronously; scrape until it shows.
		families = scrapeUntil(t, "http://"+b.adminAddr+"/metrics", "xdsbridge_xds_nacks_total")
	}

	used := map[string][]string{}
	for where, q := range panelQueries(t) {
		for _, n := range metricName.FindAllString(q, -1) {
			used[n] = append(used[n], where)
		}
	}
	for _, r := range alerts(t) {
		for _, n := range metricName.FindAllString(r.Expr, -1) {
			used[n] = append(used[n], "alert "+r.Alert)
		}
	}
	if len(used) < 10 {
		t.Fatalf("only %d metrics used by the dashboard and alerts: the extraction is broken", len(used))
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range used {
			if !yield(k) {
				return
			}
		}
	}) {
		family, kind := name, dto.MetricType(-1)
		if f, ok := families[name]; ok {
			kind = f.GetType()
		} else if base, ok := strings.CutSuffix(name, "_bucket"); ok && families[base].GetType() == dto.MetricType_HISTOGRAM {
			family, kind = base, dto.MetricType_HISTOGRAM
		}
		if kind < 0 {
			t.Errorf("%s (used by %s) is not in /metrics", name, strings.Join(used[name], ", "))
			continue
		}
		if len(families[family].GetMetric()) == 0 {
			t.Errorf("%s has no series in /metrics", family)
		}
		// A counter is read with rate or increase; a gauge is not.
		for _, where := range used[name] {
			q := queryAt(t, where)
			counterUse := regexp.MustCompile(`(rate|increase)\(` + name + `\b`).MatchString(q)
			if (kind == dto.MetricType_COUNTER || kind == dto.MetricType_HISTOGRAM) != counterUse {
				t.Errorf("%s: %s is a %v, used as %q", where, name, kind, q)
			}
		}
	}
}

// queryAt returns the query of a dashboard panel or an alert by where it is.
func queryAt(t *testing.T, where string) string {
	t.Helper()
	if name, ok := strings.CutPrefix(where, "alert "); ok {
		for _, r := range alerts(t) {
			if r.Alert == name {
				return r.Expr
			}
		}
	}
	return panelQueries(t)[where]
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return families
}

func scrapeUntil(t *testing.T, url, family string) map[string]*dto.MetricFamily {
	t.Helper()
	var families map[string]*dto.MetricFamily
	for range 100 {
		families = scrape(t, url)
		if f := families[family]; f != nil && len(f.GetMetric()) > 0 {
			return families
		}
		waitABit()
	}
	t.Fatalf("%s did not appear in /metrics", family)
	return nil
}
