// Package vulngate reads the JSON stream of `govulncheck -format json` and
// decides whether a scan passes: it fails on every vulnerability that the
// scanned code reaches at the symbol level (a finding whose trace starts at a
// function), except those accepted, with a written reason, in the table of
// deploy/vulnerabilities.md. Module- and package-level findings (required or
// imported, never called) are reported but do not fail the scan.
package vulngate

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Frame is one entry of a finding's trace, as govulncheck writes it.
type Frame struct {
	Module   string `json:"module"`
	Version  string `json:"version,omitempty"`
	Package  string `json:"package,omitempty"`
	Function string `json:"function,omitempty"`
	Receiver string `json:"receiver,omitempty"`
}

// Finding is one govulncheck finding: the vulnerability, the first version
// that fixes it, and the trace from the vulnerable symbol (first frame) to
// the scanned code.
type Finding struct {
	OSV          string   `json:"osv"`
	FixedVersion string   `json:"fixed_version,omitempty"`
	Trace        []*Frame `json:"trace,omitempty"`
}

// Config is the first message of the stream.
type Config struct {
	ProtocolVersion string `json:"protocol_version"`
	ScannerVersion  string `json:"scanner_version,omitempty"`
	DB              string `json:"db,omitempty"`
	GoVersion       string `json:"go_version,omitempty"`
	ScanLevel       string `json:"scan_level,omitempty"`
}

// OSV is the part of an OSV entry that the report shows.
type OSV struct {
	ID      string `json:"id"`
	Summary string `json:"summary,omitempty"`
}

type message struct {
	Config  *Config  `json:"config,omitempty"`
	OSV     *OSV     `json:"osv,omitempty"`
	Finding *Finding `json:"finding,omitempty"`
}

// Level is how far a finding reaches.
type Level int

// The levels, from the weakest.
const (
	Module  Level = iota // the module is required
	Package              // a vulnerable package is imported
	Symbol               // a vulnerable symbol is called
)

func (l Level) String() string {
	return [...]string{"module", "package", "symbol"}[l]
}

// Level tells the finding's level from its first frame.
func (f *Finding) Level() Level {
	if len(f.Trace) == 0 || f.Trace[0] == nil {
		return Module
	}
	switch {
	case f.Trace[0].Function != "":
		return Symbol
	case f.Trace[0].Package != "":
		return Package
	}
	return Module
}

// Vuln is one vulnerability as the scan saw it: its strongest level and the
// module it was found in (the standard library is "stdlib").
type Vuln struct {
	ID, Summary, Module, Version, Fixed string
	Level                               Level
	Example                             string // one calling frame, for a symbol finding
}

// Scan is a parsed govulncheck stream.
type Scan struct {
	Config Config
	Vulns  []Vuln // sorted by ID, then module
}

// Parse reads a govulncheck JSON stream (a sequence of JSON objects).
func Parse(r io.Reader) (*Scan, error) {
	dec := json.NewDecoder(bufio.NewReader(r))
	s := &Scan{}
	sawConfig := false
	summaries := map[string]string{}
	type key struct{ id, mod string }
	vulns := map[key]*Vuln{}
	for {
		var m message
		err := dec.Decode(&m)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("govulncheck output: %w", err)
		}
		switch {
		case m.Config != nil:
			s.Config, sawConfig = *m.Config, true
		case m.OSV != nil:
			summaries[m.OSV.ID] = m.OSV.Summary
		case m.Finding != nil:
			f := m.Finding
			if f.OSV == "" || len(f.Trace) == 0 || f.Trace[0] == nil {
				continue
			}
			k := key{f.OSV, f.Trace[0].Module}
			v := vulns[k]
			if v == nil {
				v = &Vuln{ID: f.OSV, Module: f.Trace[0].Module, Version: f.Trace[0].Version, Fixed: f.FixedVersion, Level: -1}
				vulns[k] = v
			}
			lvl := f.Level()
			if lvl > v.Level {
				v.Level, v.Example = lvl, ""
			}
			// The smallest example, so that the report is stable.
			if ex := example(f.Trace); lvl == Symbol && (v.Example == "" || ex < v.Example) {
				v.Example = ex
			}
		}
	}
	if !sawConfig {
		return nil, fmt.Errorf("govulncheck output has no config message: the scan did not run")
	}
	for _, v := range vulns {
		v.Summary = summaries[v.ID]
		s.Vulns = append(s.Vulns, *v)
	}
	sort.Slice(s.Vulns, func(i, j int) bool {
		if s.Vulns[i].ID != s.Vulns[j].ID {
			return s.Vulns[i].ID < s.Vulns[j].ID
		}
		return s.Vulns[i].Module < s.Vulns[j].Module
	})
	return s, nil
}

// example names the vulnerable symbol and the frame of the scanned code that
// leads to it (the last frame).
func example(trace []*Frame) string {
	name := func(fr *Frame) string {
		n := fr.Function
		if fr.Receiver != "" {
			n = strings.TrimPrefix(fr.Receiver, "*") + "." + n
		}
		return fr.Package + "." + n
	}
	out := name(trace[0])
	if last := trace[len(trace)-1]; len(trace) > 1 && last != nil {
		out += " <- " + name(last)
	}
	return out
}

// Accepted maps an accepted vulnerability ID to the module it is accepted
// for.
type Accepted map[string]string

// ParseAccepted reads the accepted vulnerabilities from a Markdown table:
// every row whose first cell is a Go vulnerability ID (GO-YYYY-NNNN) and
// whose second cell names the module, both possibly in backquotes.
func ParseAccepted(r io.Reader) (Accepted, error) {
	acc := Accepted{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 2 {
			continue
		}
		clean := func(s string) string { return strings.Trim(strings.TrimSpace(s), "`") }
		id, mod := clean(cells[0]), clean(cells[1])
		if !strings.HasPrefix(id, "GO-") {
			continue
		}
		if mod == "" {
			return nil, fmt.Errorf("accepted %s names no module", id)
		}
		acc[id] = mod
	}
	return acc, sc.Err()
}

// Result is the decision on a scan.
type Result struct {
	Failed   []Vuln   // reached at the symbol level and not accepted
	Accepted []Vuln   // reached, but accepted for that module
	Other    []Vuln   // required or imported only
	Unused   []string // accepted IDs the scan did not report at all
}

// Decide applies the accepted list to a scan.
func Decide(s *Scan, acc Accepted) Result {
	var r Result
	seen := map[string]bool{}
	for _, v := range s.Vulns {
		seen[v.ID] = true
		switch {
		case v.Level < Symbol:
			r.Other = append(r.Other, v)
		case acc[v.ID] == v.Module:
			r.Accepted = append(r.Accepted, v)
		default:
			r.Failed = append(r.Failed, v)
		}
	}
	for id := range acc {
		if !seen[id] {
			r.Unused = append(r.Unused, id)
		}
	}
	sort.Strings(r.Unused)
	return r
}

// Report writes the decision for a person.
func (r Result) Report(w io.Writer, c Config) {
	fmt.Fprintf(w, "govulncheck %s, %s, db %s, scan level %s\n", c.ScannerVersion, c.GoVersion, c.DB, c.ScanLevel)
	line := func(v Vuln) {
		fixed := "fixed in " + v.Fixed
		if v.Fixed == "" {
			fixed = "no fixed version"
		}
		fmt.Fprintf(w, "  %s %s@%s (%s): %s\n", v.ID, v.Module, v.Version, fixed, v.Summary)
		if v.Example != "" {
			fmt.Fprintf(w, "      %s\n", v.Example)
		}
	}
	fmt.Fprintf(w, "reachable (symbol level), not accepted: %d\n", len(r.Failed))
	for _, v := range r.Failed {
		line(v)
	}
	fmt.Fprintf(w, "reachable, accepted in deploy/vulnerabilities.md: %d\n", len(r.Accepted))
	for _, v := range r.Accepted {
		line(v)
	}
	fmt.Fprintf(w, "required or imported only (not called): %d\n", len(r.Other))
	for _, v := range r.Other {
		fmt.Fprintf(w, "  %s %s@%s (%s level)\n", v.ID, v.Module, v.Version, v.Level)
	}
	if len(r.Unused) > 0 {
		fmt.Fprintf(w, "accepted but not reported any more (drop them from deploy/vulnerabilities.md): %s\n", strings.Join(r.Unused, ", "))
	}
}
