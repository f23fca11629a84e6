package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// fromExporter are metrics the dashboard and alerts read that the relay
// does not export, each with where it comes from. Nothing else is exempt.
var fromExporter = map[string]string{
	"aws_sqs_approximate_number_of_messages_visible_average": "Prometheus CloudWatch exporter (AWS/SQS ApproximateNumberOfMessagesVisible, Average), deploy/prometheus/cloudwatch-exporter.yaml",
}

// targetLabels are added by Prometheus (ServiceMonitor relabelling), not by the relay.
// The relay's own label service (of mailrelay_external_call_duration_seconds) collides with
// the operator's target label service; the ServiceMonitor sets honorLabels so the relay's wins.
var targetLabels = map[string]bool{"namespace": true, "pod": true, "job": true, "instance": true, "service": true, "container": true, "endpoint": true}

// grafanaDashboard is the part of the dashboard JSON the checks read.
type grafanaDashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaPanel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource map[string]any `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // collapsed rows
}

func loadDashboard(t *testing.T) grafanaDashboard {
	t.Helper()
	b, err := os.ReadFile("grafana/mailrelay.json")
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	return d
}

func flatPanels(ps []grafanaPanel) []grafanaPanel {
	var out []grafanaPanel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, flatPanels(p.Panels)...)
	}
	return out
}

func loadAlerts(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.UnmarshalStrict(b, &rf); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	return rf
}

// checkExpr parses expr and checks every metric it reads is exported by the
// relay (or listed in fromExporter) with the labels it matches and groups on.
// It returns the metric families read.
func checkExpr(errorf func(format string, args ...any), where, expr string, got exported) []string {
	sels, err := PromQLSelectors(expr)
	if err != nil {
		errorf("%s: %v", where, err)
		return nil
	}
	if len(sels) == 0 {
		errorf("%s: %q reads no metric", where, expr)
	}
	var fams []string
	for _, s := range sels {
		fam := MetricFamily(s.Metric)
		fams = append(fams, fam)
		if _, ok := fromExporter[s.Metric]; ok {
			continue
		}
		labels, ok := got[fam]
		if !ok {
			errorf("%s: %s (family %s) is not exported by the relay", where, s.Metric, fam)
			continue
		}
		if fam != s.Metric && !strings.HasPrefix(s.Metric, fam+"_") {
			errorf("%s: %s", where, s.Metric)
		}
		if s.Metric != fam && !labels["le"] {
			errorf("%s: %s is not a histogram", where, fam)
		}
		for _, l := range append(append([]string{}, s.Labels...), s.Grouping...) {
			if !labels[l] && !targetLabels[l] {
				errorf("%s: %s has no label %q (has %v)", where, fam, l, keys(labels))
			}
		}
	}
	return fams
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestDashboardAndAlertsReadExportedMetrics parses every dashboard panel
// expression and every alert expression with the PromQL parser and checks
// each metric against what a running relay's /metrics exports.
func TestDashboardAndAlertsReadExportedMetrics(t *testing.T) {
	got := scrapeRelay(t)
	d := loadDashboard(t)
	rf := loadAlerts(t)

	t.Run("dashboard", func(t *testing.T) {
		read := map[string]bool{}
		ids := map[int]bool{}
		for _, p := range flatPanels(d.Panels) {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				continue
			}
			if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: bad gridPos %+v", p.Title, p.GridPos)
			}
			if p.Datasource["uid"] != "${datasource}" {
				t.Errorf("panel %q: datasource %v, want the ${datasource} variable", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				expr := ExpandGrafana(tg.Expr, map[string]string{"namespace": "mailrelay", "pod": "mailrelay-0"})
				for _, f := range checkExpr(t.Errorf, "panel "+p.Title, expr, got) {
					read[f] = true
				}
			}
		}
		// What operators asked for after the incident.
		for _, want := range []string{
			"mailrelay_external_call_duration_seconds", "mailrelay_breaker_state", "mailrelay_ack_duration_seconds",
			"mailrelay_queue_messages", "mailrelay_queue_oldest_age_seconds", "mailrelay_deadletter_messages",
			"mailrelay_messages_total", "mailrelay_inbound_requests_total", "mailrelay_health_request_duration_seconds",
			"mailrelay_inflight_bytes",
			// SES account health: feedback and the sending pace.
			"mailrelay_feedback_total", "mailrelay_ses_send_rate_limit", "mailrelay_ses_max_send_rate",
			"mailrelay_ses_throttles_total", "mailrelay_ses_token_wait_seconds", "mailrelay_ses_daily_quota_used_ratio",
		} {
			if !read[want] {
				t.Errorf("no panel shows %s", want)
			}
		}
		vars := map[string]bool{}
		for _, v := range d.Templating.List {
			vars[v.Name] = true
		}
		for _, want := range []string{"datasource", "namespace", "pod"} {
			if !vars[want] {
				t.Errorf("dashboard has no variable $%s", want)
			}
		}
		if d.UID == "" || d.Title == "" {
			t.Error("dashboard needs a uid and a title")
		}
	})

	t.Run("alerts", func(t *testing.T) {
		names := map[string]bool{}
		read := map[string]bool{}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" || names[r.Alert] {
					t.Errorf("alert name %q empty or used twice", r.Alert)
				}
				names[r.Alert] = true
				if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
					t.Errorf("alert %s needs a severity label and a summary", r.Alert)
				}
				for _, f := range checkExpr(t.Errorf, "alert "+r.Alert, r.Expr, got) {
					read[f] = true
				}
			}
		}
		for _, want := range []string{
			"mailrelay_breaker_state", "mailrelay_queue_oldest_age_seconds", "mailrelay_queue_messages",
			"mailrelay_ack_duration_seconds", "mailrelay_deadletter_messages", "mailrelay_inbound_requests_total",
			"mailrelay_panics_total", "aws_sqs_approximate_number_of_messages_visible_average",
		} {
			if !read[want] {
				t.Errorf("no alert reads %s", want)
			}
		}
	})
}

// TestCheckExprCatches makes sure the metric check can fail.
func TestCheckExprCatches(t *testing.T) {
	got := exported{
		"mailrelay_ack_duration_seconds": {"le": true},
		"mailrelay_breaker_state":        {"dependency": true},
	}
	for _, tc := range []struct {
		expr string
		ok   bool
	}{
		{`max by (pod, dependency) (mailrelay_breaker_state{namespace="x"}) == 2`, true},
		{`histogram_quantile(0.99, sum by (le) (rate(mailrelay_ack_duration_seconds_bucket[5m])))`, true},
		{`aws_sqs_approximate_number_of_messages_visible_average > 0`, true},
		{`mailrelay_breaker_states == 2`, false},                      // typo in the name
		{`mailrelay_breaker_state{outcome="ok"} == 2`, false},         // label it does not have
		{`max by (reason) (mailrelay_breaker_state)`, false},          // grouping on a label it does not have
		{`rate(mailrelay_breaker_state_bucket[5m])`, false},           // not a histogram
		{`sum(rate(mailrelay_ack_duration_seconds_bucket[5m]`, false}, // does not parse
		{`{__name__=~"mailrelay_.*"}`, false},                         // names no metric
	} {
		var complaints []string
		checkExpr(func(f string, a ...any) { complaints = append(complaints, fmt.Sprintf(f, a...)) }, "case", tc.expr, got)
		if (len(complaints) == 0) != tc.ok {
			t.Errorf("%q: complaints %q, want ok=%v", tc.expr, complaints, tc.ok)
		}
	}
}

// TestAlertFileIsPlainRuleFile checks alerts.yaml is a rule file Prometheus
// loads directly: only groups at the top.
func TestAlertFileIsPlainRuleFile(t *testing.T) {
	b, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]any
	if err := yaml.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	if len(top) != 1 || top["groups"] == nil {
		t.Errorf("top-level keys %v, want groups only", top)
	}
	if !bytes.Contains(b, []byte("CloudWatch exporter")) {
		t.Error("alerts.yaml must say which metric comes from the CloudWatch exporter")
	}
}
