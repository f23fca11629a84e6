package vulngate

import (
	"bytes"
	"strings"
	"testing"
)

const stream = `{"config":{"protocol_version":"v1.0.0","scanner_version":"v1.9.0","go_version":"go1.27.3","scan_level":"symbol"}}
{"progress":{"message":"Scanning your code"}}
{"osv":{"id":"GO-2026-0001","summary":"called, accepted"}}
{"osv":{"id":"GO-2026-0002","summary":"called, not accepted"}}
{"finding":{"osv":"GO-2026-0001","trace":[{"module":"example.com/a","version":"v1.0.0"}]}}
{"finding":{"osv":"GO-2026-0001","trace":[{"module":"example.com/a","version":"v1.0.0","package":"example.com/a"}]}}
{"finding":{"osv":"GO-2026-0001","trace":[{"module":"example.com/a","version":"v1.0.0","package":"example.com/a","function":"F"},{"module":"m","package":"m/p","function":"G"}]}}
{"finding":{"osv":"GO-2026-0002","fixed_version":"v1.2.0","trace":[{"module":"stdlib","version":"v1.26.8","package":"net/http","function":"Read","receiver":"*conn"},{"module":"m","package":"m/p","function":"H"}]}}
{"finding":{"osv":"GO-2026-0003","trace":[{"module":"example.com/b","version":"v0.1.0","package":"example.com/b"}]}}
{"finding":{"osv":"GO-2026-0004","trace":[{"module":"example.com/a","version":"v1.0.0","package":"example.com/a","function":"F"}]}}
`

const table = "| ID | Module | Why |\n| --- | --- | --- |\n" +
	"| GO-2026-0001 | `example.com/a` | not reached |\n" +
	"| GO-2026-0004 | example.com/other | accepted for another module |\n" +
	"| GO-2026-0009 | example.com/c | gone |\n"

func TestDecide(t *testing.T) {
	scan, err := Parse(strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	acc, err := ParseAccepted(strings.NewReader(table))
	if err != nil || len(acc) != 3 || acc["GO-2026-0001"] != "example.com/a" {
		t.Fatalf("accepted %v, %v", acc, err)
	}
	r := Decide(scan, acc)
	ids := func(vs []Vuln) string {
		var out []string
		for _, v := range vs {
			out = append(out, v.ID+"/"+v.Level.String())
		}
		return strings.Join(out, " ")
	}
	if got := ids(r.Failed); got != "GO-2026-0002/symbol GO-2026-0004/symbol" {
		t.Errorf("failed %s", got)
	}
	if got := ids(r.Accepted); got != "GO-2026-0001/symbol" {
		t.Errorf("accepted %s", got)
	}
	if got := ids(r.Other); got != "GO-2026-0003/package" {
		t.Errorf("other %s", got)
	}
	if strings.Join(r.Unused, " ") != "GO-2026-0009" {
		t.Errorf("unused %v", r.Unused)
	}
	var out bytes.Buffer
	r.Report(&out, scan.Config)
	for _, want := range []string{"net/http.conn.Read <- m/p.H", "fixed in v1.2.0", "GO-2026-0009"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestParseErrors(t *testing.T) {
	if _, err := Parse(strings.NewReader(`{"progress":{}}`)); err == nil {
		t.Error("a stream without config passed")
	}
	if _, err := Parse(strings.NewReader(`{"config":`)); err == nil {
		t.Error("a broken stream passed")
	}
	if _, err := ParseAccepted(strings.NewReader("| GO-2026-0001 | |\n")); err == nil {
		t.Error("an accepted row without module passed")
	}
}
