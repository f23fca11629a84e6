// Command mailrelay-bench renders `go test -bench` output as markdown tables
// and puts them in docs/benchmarks.md between the markers
// "<!-- bench:begin -->" and "<!-- bench:end -->" (make bench). Each
// benchmark line becomes a row; its metrics (ns/op, B/op, allocs/op and
// the custom ones such as mails/s or p99-ms) become columns, grouped by
// benchmark family. Repeated runs (-count) of one benchmark are reduced to
// their median. The machine (CPU, cores, load average) heads the section.
//
//	go test -run '^$' -bench . ./mailproc | go run ./cmd/mailrelay-bench -doc docs/benchmarks.md
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	beginMarker = "<!-- bench:begin -->"
	endMarker   = "<!-- bench:end -->"
)

func main() {
	doc := flag.String("doc", "", "markdown file whose bench section is replaced (default: print to stdout)")
	flag.Parse()
	if err := run(os.Stdin, os.Stdout, *doc); err != nil {
		fmt.Fprintln(os.Stderr, "mailrelay-bench:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer, doc string) error {
	res, cpu, err := parse(in)
	if err != nil {
		return err
	}
	section := render(res, machine(cpu))
	if doc == "" {
		_, err := io.WriteString(out, section)
		return err
	}
	old, err := os.ReadFile(doc)
	if err != nil {
		return err
	}
	updated, err := replaceSection(old, section)
	if err != nil {
		return fmt.Errorf("%s: %w", doc, err)
	}
	return os.WriteFile(doc, updated, 0o644)
}

// result is one benchmark: its runs' metrics by unit.
type result struct {
	name    string
	metrics map[string][]float64
	units   []string // in first-seen order
}

// parse reads benchmark lines ("BenchmarkX-2  N  v unit  v unit ...").
func parse(in io.Reader) ([]*result, string, error) {
	var (
		order []*result
		byKey = map[string]*result{}
		cpu   string
	)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if c, ok := strings.CutPrefix(line, "cpu: "); ok {
			cpu = c
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i] // the GOMAXPROCS suffix
			}
		}
		r := byKey[name]
		if r == nil {
			r = &result{name: name, metrics: map[string][]float64{}}
			byKey[name] = r
			order = append(order, r)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, "", fmt.Errorf("bad value %q in %q", f[i], line)
			}
			unit := f[i+1]
			if _, seen := r.metrics[unit]; !seen {
				r.units = append(r.units, unit)
			}
			r.metrics[unit] = append(r.metrics[unit], v)
		}
	}
	return order, cpu, sc.Err()
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// family is the benchmark's name before its first "/".
func family(name string) string {
	if i := strings.IndexByte(name, '/'); i > 0 {
		return name[:i]
	}
	return name
}

func render(res []*result, machine string) string {
	var b strings.Builder
	b.WriteString(beginMarker + "\n\n")
	fmt.Fprintf(&b, "Last `make bench` (%s), %s. Medians of the runs.\n", time.Now().UTC().Format("2006-01-02"), machine)
	for i := 0; i < len(res); {
		fam := family(res[i].name)
		j := i
		var units []string
		for ; j < len(res) && family(res[j].name) == fam; j++ {
			for _, u := range res[j].units {
				if !slices.Contains(units, u) {
					units = append(units, u)
				}
			}
		}
		fmt.Fprintf(&b, "\n| %s | runs | %s |\n", fam, strings.Join(units, " | "))
		b.WriteString("|---|---|" + strings.Repeat("---|", len(units)) + "\n")
		for _, r := range res[i:j] {
			sub := strings.TrimPrefix(strings.TrimPrefix(r.name, fam), "/")
			if sub == "" {
				sub = "-"
			}
			runs := 0
			cells := make([]string, len(units))
			for k, u := range units {
				if v := r.metrics[u]; len(v) > 0 {
					cells[k] = format(median(v))
					runs = max(runs, len(v))
				}
			}
			fmt.Fprintf(&b, "| %s | %d | %s |\n", sub, runs, strings.Join(cells, " | "))
		}
		i = j
	}
	b.WriteString("\n" + endMarker + "\n")
	return b.String()
}

// format prints v with 3 significant digits, thousands separated.
func format(v float64) string {
	switch {
	case v >= 1000:
		s := strconv.FormatInt(int64(v+0.5), 10)
		var out []byte
		for i := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				out = append(out, ',')
			}
			out = append(out, s[i])
		}
		return string(out)
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// machine describes where the benchmarks ran.
func machine(cpu string) string {
	if cpu == "" {
		cpu = "unknown CPU"
	}
	s := fmt.Sprintf("%s %s, %s, %d cores", runtime.GOOS, runtime.GOARCH, cpu, runtime.NumCPU())
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(l)); len(f) >= 3 {
			s += ", load average " + strings.Join(f[:3], " ") + " at the end"
		}
	}
	return s
}

// replaceSection replaces the text between the markers (inclusive), or
// appends section when the markers are absent.
func replaceSection(doc []byte, section string) ([]byte, error) {
	i := bytes.Index(doc, []byte(beginMarker))
	if i < 0 {
		return append(append(doc, '\n'), section...), nil
	}
	j := bytes.Index(doc[i:], []byte(endMarker))
	if j < 0 {
		return nil, fmt.Errorf("%q without %q", beginMarker, endMarker)
	}
	j += i + len(endMarker)
	if j < len(doc) && doc[j] == '\n' {
		j++
	}
	return slices.Concat(doc[:i], []byte(section), doc[j:]), nil
}
