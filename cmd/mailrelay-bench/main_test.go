package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
cpu: Test CPU
BenchmarkWorkerPath/size=5KB         	   99302	     36797 ns/op	 142.35 MB/s	    4984 B/op	      78 allocs/op
BenchmarkWorkerPath/size=5KB         	   64977	     32490 ns/op	 161.22 MB/s	    4984 B/op	      78 allocs/op
BenchmarkWorkerPath/size=5KB         	   87198	     40910 ns/op	 128.04 MB/s	    4984 B/op	      80 allocs/op
BenchmarkIntakePaced-2   	   20000	   2191551 ns/op	      2017 cpu-us/mail	        26.59 p50-ms
PASS
`

func TestParseRender(t *testing.T) {
	res, cpu, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if cpu != "Test CPU" || len(res) != 2 || res[1].name != "IntakePaced" {
		t.Fatalf("cpu %q, results %v", cpu, res)
	}
	out := render(res, "m")
	for _, want := range []string{
		"| WorkerPath | runs | ns/op | MB/s | B/op | allocs/op |",
		"| size=5KB | 3 | 36,797 | 142 | 4,984 | 78.0 |",
		"| IntakePaced | runs | ns/op | cpu-us/mail | p50-ms |",
		"| - | 1 | 2,191,551 | 2,017 | 26.6 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

func TestReplaceSection(t *testing.T) {
	tests := []struct{ doc, want string }{
		{"a\n" + beginMarker + "\nold\n" + endMarker + "\nb\n", "a\nNEW\nb\n"},
		{"a\n", "a\n\nNEW\n"},
	}
	for _, tc := range tests {
		got, err := replaceSection([]byte(tc.doc), "NEW\n")
		if err != nil || string(got) != tc.want {
			t.Errorf("replaceSection(%q) = %q, %v; want %q", tc.doc, got, err, tc.want)
		}
	}
	if _, err := replaceSection([]byte(beginMarker+"\nx"), "NEW\n"); err == nil {
		t.Error("begin marker without end: no error")
	}
}
