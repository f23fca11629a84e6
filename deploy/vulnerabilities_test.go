package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/mailrelay/mailrelay/deploy/vulngate"
)

// echoMiddleware is the echo v4 code behind the accepted echo findings of
// vulnerabilities.md: the middleware package (its Proxy and RateLimiter are
// where the reverse-proxy X-Real-IP forwarding of GO-2026-6875 and the
// X-Forwarded-For rate-limiter bypass of GO-2026-6872 live) and the client
// IP helpers of the echo package that the rate limiter's default identifier
// relies on.
const echoMiddleware = "github.com/labstack/echo/v4/middleware"

var echoIPSymbols = []string{"RealIP", "IPExtractor", "ExtractIPDirect", "ExtractIPFromXFFHeader", "ExtractIPFromRealIPHeader"}

// goListDeps lists, from the repository root, the packages that the main
// module's non-test code links (the same set govulncheck scans).
func goListDeps(t *testing.T, format string, pkgs ...string) []string {
	t.Helper()
	args := append([]string{"list", "-deps", "-f", format}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	return strings.Fields(string(out))
}

// TestEchoMiddlewareNotLinked: neither the relay binary nor any other
// command of the main module imports echo's middleware package, so the
// vulnerable proxy and rate-limiter middleware of the accepted echo findings
// is not in the code that runs.
func TestEchoMiddlewareNotLinked(t *testing.T) {
	relay := goListDeps(t, "{{.ImportPath}}", "./cmd/mailrelay")
	if len(relay) == 0 || !slices.Contains(relay, "github.com/labstack/echo/v4") {
		t.Fatalf("go list -deps ./cmd/mailrelay: %d packages, without echo: the check no longer looks at the relay", len(relay))
	}
	for _, set := range []string{"./cmd/mailrelay", "./..."} {
		if slices.Contains(goListDeps(t, "{{.ImportPath}}", set), echoMiddleware) {
			t.Errorf("%s depends on %s: the echo findings in vulnerabilities.md are no longer unreachable", set, echoMiddleware)
		}
	}
}

// TestEchoClientIPNotUsed: the main module's code never asks echo for the
// client IP (Context.RealIP) nor sets an IP extractor, so no decision of
// the relay rests on a spoofable X-Forwarded-For or X-Real-IP header.
func TestEchoClientIPNotUsed(t *testing.T) {
	lines := goListDeps(t, `{{if .Module}}{{if .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}} {{end}}{{end}}{{end}}`, "./...")
	if len(lines) < 10 {
		t.Fatalf("only %d source files of the main module listed", len(lines))
	}
	fset := token.NewFileSet()
	for _, f := range lines {
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && slices.Contains(echoIPSymbols, sel.Sel.Name) {
				t.Errorf("%s: uses %s: review the echo findings in vulnerabilities.md", fset.Position(sel.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
}

// TestAcceptedVulnerabilities: every vulnerability that vulnerabilities.md
// accepts names its module and a test of this package that proves it
// unreachable.
func TestAcceptedVulnerabilities(t *testing.T) {
	data, err := os.ReadFile("vulnerabilities.md")
	if err != nil {
		t.Fatal(err)
	}
	acc, err := vulngate.ParseAccepted(strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	if len(acc) == 0 {
		t.Fatal("vulnerabilities.md accepts nothing: drop the file's table or this test")
	}
	tests, _ := filepath.Glob("*_test.go")
	var src strings.Builder
	for _, f := range tests {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(b)
	}
	testName := regexp.MustCompile(`\bTest[A-Z]\w*`)
	for _, line := range strings.Split(string(data), "\n") {
		id, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "|"), "|")
		if _, ok := acc[strings.Trim(strings.TrimSpace(id), "`")]; !ok {
			continue
		}
		names := testName.FindAllString(line, -1)
		if len(names) == 0 {
			t.Errorf("accepted row names no test: %s", line)
		}
		for _, n := range names {
			if !strings.Contains(src.String(), "func "+n+"(t *testing.T)") {
				t.Errorf("accepted row names %s, which is no test of deploy/", n)
			}
		}
	}
}
