package deploy

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

// Selector is one vector or matrix selector of a PromQL expression.
type Selector struct {
	Metric string   // the metric name as written (e.g. ..._bucket)
	Labels []string // label names matched on, without __name__
	// Grouping are the labels of by (...) clauses of aggregations over this
	// selector alone (so they must exist on this metric or its target).
	Grouping []string
}

// PromQLSelectors parses expr and returns its selectors in order of
// appearance. A selector without a metric name is an error: every
// expression in the dashboard and the alerts names what it reads.
func PromQLSelectors(expr string) ([]Selector, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("parsing %q: %w", expr, err)
	}
	var out []Selector
	index := map[*parser.VectorSelector]int{}
	var bad error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		sel := Selector{Metric: vs.Name}
		for _, m := range vs.LabelMatchers {
			if m.Name == "__name__" {
				if sel.Metric == "" {
					sel.Metric = m.Value
				}
				continue
			}
			sel.Labels = append(sel.Labels, m.Name)
		}
		if sel.Metric == "" && bad == nil {
			bad = fmt.Errorf("%q: selector %s names no metric", expr, vs)
		}
		index[vs] = len(out)
		out = append(out, sel)
		return nil
	})
	if bad != nil {
		return nil, bad
	}
	// Grouping labels of aggregations whose argument reads a single selector.
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		agg, ok := n.(*parser.AggregateExpr)
		if !ok || agg.Without || len(agg.Grouping) == 0 {
			return nil
		}
		var inner []*parser.VectorSelector
		parser.Inspect(agg.Expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				inner = append(inner, vs)
			}
			return nil
		})
		if len(inner) == 1 {
			i := index[inner[0]]
			out[i].Grouping = union(out[i].Grouping, agg.Grouping)
		}
		return nil
	})
	return out, nil
}

func union(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range append(append([]string{}, a...), b...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// MetricFamily is the name of the metric family a series name belongs to:
// a histogram's or summary's _bucket, _sum and _count series belong to the
// family without the suffix.
func MetricFamily(series string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if s, ok := strings.CutSuffix(series, suffix); ok {
			return s
		}
	}
	return series
}

// grafanaVar matches $name, ${name} and ${name:format} (and Grafana's
// deprecated [[name]]).
var grafanaVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[A-Za-z]+)?\}|\$([A-Za-z_][A-Za-z0-9_]*)|\[\[([A-Za-z_][A-Za-z0-9_]*)\]\]`)

// ExpandGrafana replaces Grafana's template variables in a panel query so
// that the PromQL parser can read it: interval variables become a duration
// and every other variable becomes vars[name], or "x" if vars has none.
func ExpandGrafana(expr string, vars map[string]string) string {
	return grafanaVar.ReplaceAllStringFunc(expr, func(m string) string {
		sub := grafanaVar.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		switch name {
		case "__rate_interval", "__interval", "__range":
			return "5m"
		case "__interval_ms", "__range_ms":
			return "300000"
		case "__range_s":
			return "300"
		}
		if v, ok := vars[name]; ok {
			return v
		}
		return "x"
	})
}
