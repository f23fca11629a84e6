package deploy

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestDockerfile checks the image definition without a docker engine: a Go
// build stage producing a static, stripped binary of ./cmd/mailrelay, and a
// distroless nonroot final stage that runs it as 65532.
func TestDockerfile(t *testing.T) {
	f, err := os.Open("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	args, stages, err := ParseDockerfileArgs(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) != 2 {
		t.Fatalf("%d stages, want build and final", len(stages))
	}
	build, final := stages[0], stages[1]
	for _, st := range stages {
		if err := CheckPinned(st.Image, args); err != nil {
			t.Error(err)
		}
	}
	if tag, _, _ := strings.Cut(build.Image, "@"); tag != "golang:1.27.3" || build.Name == "" {
		t.Errorf("build stage FROM %s AS %q, want golang:1.27.3 (the standard library fixes) with a name", build.Image, build.Name)
	}
	var local bool
	for _, in := range build.Find("ENV") {
		local = local || in.Args == "GOTOOLCHAIN=local"
	}
	if !local {
		t.Error("build stage does not set GOTOOLCHAIN=local: go could download another toolchain")
	}
	var goBuild string
	for _, in := range build.Find("RUN") {
		if strings.Contains(in.Args, "go build") {
			goBuild = in.Args
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w"`, "./cmd/mailrelay", "-o /out/mailrelay"} {
		if !strings.Contains(goBuild, want) {
			t.Errorf("go build line %q lacks %s", goBuild, want)
		}
	}
	if tag, _, _ := strings.Cut(final.Image, "@"); tag != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("final stage FROM %s", final.Image)
	}
	var copied bool
	for _, in := range final.Find("COPY") {
		copied = copied || in.Args == "--from="+build.Name+" /out/mailrelay /mailrelay"
	}
	if !copied {
		t.Error("final stage does not copy /out/mailrelay from the build stage to /mailrelay")
	}
	users := final.Find("USER")
	if len(users) != 1 || strings.Split(users[0].Args, ":")[0] != "65532" {
		t.Errorf("USER %v, want 65532", users)
	}
	for _, tc := range []struct {
		cmd  string
		want []string
	}{{"ENTRYPOINT", []string{"/mailrelay"}}, {"CMD", []string{"serve"}}} {
		ins := final.Find(tc.cmd)
		if len(ins) != 1 {
			t.Errorf("%d %s, want 1", len(ins), tc.cmd)
			continue
		}
		got, err := ExecForm(ins[0].Args)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s %s, want exec form %q (%v)", tc.cmd, ins[0].Args, tc.want, err)
		}
	}
	var exposed []string
	for _, in := range final.Find("EXPOSE") {
		exposed = append(exposed, strings.Fields(in.Args)...)
	}
	if !slices.Equal(exposed, []string{"8080", "8081"}) {
		t.Errorf("EXPOSE %v, want 8080 8081 (the admin port stays on loopback)", exposed)
	}
}

func TestCheckPinned(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	args := []Arg{{Name: "D"}, {Name: "WITHDIGEST", Default: digest, HasDefault: true}, {Name: "TAGGED", Default: "latest", HasDefault: true}}
	for img, ok := range map[string]bool{
		"golang:1.27.3@" + digest:            true,
		"golang@" + digest:                   true,
		"golang:1.27.3@${D}":                 true,
		"golang:1.27.3@$D":                   true,
		"golang:1.27.3@${WITHDIGEST}":        true,
		"golang:1.27.3":                      false,
		"golang:1.27.3@sha256:abc":           false,
		"golang:1.27.3@${TAGGED}":            false,
		"golang:1.27.3@${UNDECLARED}":        false,
		"golang:${D}":                        false,
		"golang:1.27.3@" + digest + "${D}":   false,
		"golang:1.27.3@${D:-sha256:0000000}": false,
	} {
		if err := CheckPinned(img, args); (err == nil) != ok {
			t.Errorf("CheckPinned(%q) = %v, want pinned %v", img, err, ok)
		}
	}
}

var dockerfileSeeds = []string{
	"FROM golang:1.26 AS build\nRUN go build \\\n  -o /x ./cmd/y\nFROM scratch\nCOPY --from=build /x /x\n",
	"# syntax=docker/dockerfile:1\nARG V=1\nFROM --platform=$BUILDPLATFORM alpine\nRUN echo\n",
	"RUN echo before from\n",
	"FROM a b c\n",
	"",
	"FROM a AS b\n# comment\n\nUSER 1:1\nENTRYPOINT [\"/a\"]\n",
}

func TestParseDockerfile(t *testing.T) {
	for _, tc := range []struct {
		in     string
		stages int
		err    bool
	}{
		{dockerfileSeeds[0], 2, false},
		{dockerfileSeeds[1], 1, false},
		{dockerfileSeeds[2], 0, true},
		{dockerfileSeeds[3], 0, true},
		{dockerfileSeeds[4], 0, true},
		{dockerfileSeeds[5], 1, false},
	} {
		st, err := ParseDockerfile(strings.NewReader(tc.in))
		if (err != nil) != tc.err || len(st) != tc.stages {
			t.Errorf("%q: %d stages, err %v; want %d, error %v", tc.in, len(st), err, tc.stages, tc.err)
		}
	}
	st, _ := ParseDockerfile(strings.NewReader(dockerfileSeeds[0]))
	if run := st[0].Find("RUN"); len(run) != 1 || run[0].Args != "go build    -o /x ./cmd/y" || run[0].Line != 2 {
		t.Errorf("continuation: %+v", run)
	}
}

func FuzzParseDockerfile(f *testing.F) {
	for _, s := range dockerfileSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		stages, err := ParseDockerfile(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, st := range stages {
			if st.Image == "" {
				t.Fatalf("stage without image from %q", s)
			}
			for _, in := range st.Instructions {
				if in.Cmd == "FROM" || in.Line < 1 {
					t.Fatalf("bad instruction %+v from %q", in, s)
				}
			}
		}
	})
}

var grafanaSeeds = []string{
	`rate(x{pod=~"$pod"}[$__rate_interval])`,
	`sum by (le) (rate(m_bucket{namespace=~"${namespace:regex}"}[$__interval]))`,
	`x{a="[[pod]]"}`,
	`$`, `${`, `$$pod`,
}

func TestExpandGrafana(t *testing.T) {
	vars := map[string]string{"pod": "p0", "namespace": "ns"}
	for i, want := range []string{
		`rate(x{pod=~"p0"}[5m])`,
		`sum by (le) (rate(m_bucket{namespace=~"ns"}[5m]))`,
		`x{a="p0"}`,
		`$`, `${`, `$p0`,
	} {
		if got := ExpandGrafana(grafanaSeeds[i], vars); got != want {
			t.Errorf("ExpandGrafana(%q) = %q, want %q", grafanaSeeds[i], got, want)
		}
	}
}

func FuzzExpandGrafana(f *testing.F) {
	for _, s := range grafanaSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := ExpandGrafana(s, map[string]string{"pod": "p0"})
		if grafanaVar.MatchString(out) && !grafanaVar.MatchString(s) {
			t.Fatalf("expansion of %q introduced a variable: %q", s, out)
		}
	})
}

var promqlSeeds = []string{
	`max by (pod, dependency) (mailrelay_breaker_state) == 2`,
	`histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m]))) / b`,
	`{__name__="x", a="b"}`,
	`sum(`,
	`1 + 2`,
}

func TestPromQLSelectors(t *testing.T) {
	sels, err := PromQLSelectors(promqlSeeds[0])
	if err != nil || len(sels) != 1 || sels[0].Metric != "mailrelay_breaker_state" ||
		!slices.Equal(sels[0].Grouping, []string{"dependency", "pod"}) {
		t.Errorf("got %+v, %v", sels, err)
	}
	sels, err = PromQLSelectors(promqlSeeds[1])
	if err != nil || len(sels) != 2 || sels[0].Metric != "a_bucket" || sels[1].Metric != "b" ||
		!slices.Equal(sels[0].Grouping, []string{"le"}) {
		t.Errorf("got %+v, %v", sels, err)
	}
	sels, err = PromQLSelectors(promqlSeeds[2])
	if err != nil || len(sels) != 1 || sels[0].Metric != "x" || !slices.Equal(sels[0].Labels, []string{"a"}) {
		t.Errorf("got %+v, %v", sels, err)
	}
	if _, err := PromQLSelectors(promqlSeeds[3]); err == nil {
		t.Error("unbalanced expression parsed")
	}
	if MetricFamily("a_bucket") != "a" || MetricFamily("a_total") != "a_total" {
		t.Error("MetricFamily")
	}
}

func FuzzPromQLSelectors(f *testing.F) {
	for _, s := range promqlSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sels, err := PromQLSelectors(s)
		if err != nil {
			return
		}
		for _, sel := range sels {
			if sel.Metric == "" {
				t.Fatalf("selector without metric from %q", s)
			}
		}
	})
}
