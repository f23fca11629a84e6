// Package docs holds no code: it is the repository's documentation, and
// its tests enforce the rules of the repository itself (what may sit at the
// top level, which packages may depend on which, package comments and file
// lengths, and that documentation links stay inside the repository).
package docs

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/telemetry"
)

// module is the main module's path.
const module = "github.com/mailrelay/mailrelay"

// maxLines is the most lines a non-test .go file may have.
const maxLines = 700

// repoRoot returns the repository root: the parent of this package's
// directory, checked by its go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatalf("repository root %s: %v", root, err)
	}
	if !bytes.Contains(data, []byte("module "+module+"\n")) {
		t.Fatalf("%s/go.mod is not module %s", root, module)
	}
	return root
}

// ignoredDirs are directories skipped when git is not available: build
// output and local state, all gitignored.
var ignoredDirs = map[string]bool{"bin": true, "data": true, "tmp": true, "node_modules": true}

// repoFiles returns the repository's files as slash-separated paths relative
// to root: those git tracks plus new ones it does not ignore (so a file is
// checked before it is committed), or, without git, every file below root
// outside dot entries and ignoredDirs.
func repoFiles(t *testing.T, root string) []string {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		var files []string
		for _, f := range strings.Split(string(out), "\x00") {
			if f == "" {
				continue
			}
			// A tracked file deleted in the working tree is gone for us too.
			if _, err := os.Lstat(filepath.Join(root, filepath.FromSlash(f))); err != nil {
				continue
			}
			files = append(files, f)
		}
		sort.Strings(files)
		files = slices.Compact(files)
		return files
	}
	var files []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		name := d.Name()
		if d.IsDir() {
			if strings.HasPrefix(name, ".") || ignoredDirs[name] {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(name, ".") {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatalf("listing the repository: %v", err)
	}
	return files
}

// TestTopLevel: the top level holds only the agreed folders and files (and
// dot-files such as .gitignore).
func TestTopLevel(t *testing.T) {
	allowed := map[string]bool{}
	for _, name := range []string{
		"cmd", "inbound", "mailproc", "awsclient", "health", "telemetry", "deploy", "localstack", "docs",
		"go.mod", "go.sum", "Makefile", "README.md", "LICENSE",
	} {
		allowed[name] = true
	}
	root := repoRoot(t)
	found := map[string][]string{} // top-level entry -> a file under it
	for _, f := range repoFiles(t, root) {
		top, _, _ := strings.Cut(f, "/")
		found[top] = append(found[top], f)
	}
	var extra []string
	for top := range found {
		if !allowed[top] && !strings.HasPrefix(top, ".") {
			extra = append(extra, top)
		}
	}
	sort.Strings(extra)
	for _, top := range extra {
		t.Errorf("top level: %q is not allowed there (e.g. %s); move it under one of cmd, inbound, mailproc, awsclient, health, telemetry, deploy, localstack, docs",
			top, found[top][0])
	}
}

// goList runs the go command in dir and returns its output lines.
func goList(t *testing.T, dir string, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return strings.Fields(strings.TrimSpace(string(out)))
}

// under reports whether pkg is prefix or a package below it.
func under(pkg, prefix string) bool {
	return pkg == prefix || strings.HasPrefix(pkg, prefix+"/")
}

func anyUnder(prefixes ...string) func(string) bool {
	return func(pkg string) bool {
		for _, p := range prefixes {
			if under(pkg, p) {
				return true
			}
		}
		return false
	}
}

const sdk = "github.com/aws/aws-sdk-go-v2/service/"

// s3OrSES are the S3 and SES SDK packages (and their subpackages, such as
// .../service/s3/types).
var s3OrSES = anyUnder(sdk+"s3", sdk+"ses", sdk+"sesv2")

// TestDependencyRules checks, transitively and without test-only imports,
// that the packages under inbound/, health/ and mailproc/ stay away from
// what they must not depend on.
func TestDependencyRules(t *testing.T) {
	rules := []struct {
		tree      string            // packages ./tree/...
		skip      func(string) bool // packages of the tree the rule does not apply to
		forbidden func(string) bool // dependencies not allowed
		what      string            // forbidden, for messages
	}{
		{
			tree: "inbound",
			forbidden: func(p string) bool {
				return under(p, module+"/awsclient") || s3OrSES(p) || p == module+"/mailproc"
			},
			what: "awsclient, the S3/SES SDK packages or the mailproc package",
		},
		{
			tree: "health",
			forbidden: func(p string) bool {
				return anyUnder(module+"/awsclient", module+"/mailproc", module+"/inbound")(p) || strings.HasPrefix(p, sdk)
			},
			what: "awsclient, mailproc, inbound or any AWS SDK service package",
		},
		{
			tree: "mailproc",
			// Test helper packages (mailproc/mailtest, ...) may wire real parts.
			skip: func(p string) bool { return strings.HasSuffix(path.Base(p), "test") },
			forbidden: func(p string) bool {
				return under(p, module+"/inbound") || under(p, "github.com/labstack/echo") || s3OrSES(p)
			},
			what: "inbound, echo or the S3/SES SDK packages",
		},
	}
	root := repoRoot(t)
	for _, r := range rules {
		t.Run(r.tree, func(t *testing.T) {
			// Packages with non-test Go files only: -deps below ignores tests.
			pkgs := goList(t, root, "-f", "{{if .GoFiles}}{{.ImportPath}}{{end}}", "./"+r.tree+"/...")
			if len(pkgs) == 0 {
				t.Fatalf("no packages under %s/", r.tree)
			}
			for _, pkg := range pkgs {
				if r.skip != nil && r.skip(pkg) {
					continue
				}
				graph := importGraph(t, root, pkg)
				var bad []string
				for dep := range graph {
					if dep != pkg && r.forbidden(dep) {
						bad = append(bad, dep)
					}
				}
				sort.Strings(bad)
				for _, dep := range bad {
					t.Errorf("%s must not depend on %s, but reaches %s via %s",
						pkg, r.what, dep, strings.Join(importChain(graph, pkg, dep), " → "))
				}
			}
		})
	}
}

// importGraph returns pkg and everything it depends on (not counting test
// files), each with its direct imports.
func importGraph(t *testing.T, dir, pkg string) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", pkg)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr.Bytes())
	}
	graph := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 {
			graph[f[0]] = f[1:]
		}
	}
	return graph
}

// importChain returns a shortest import path from -> to in graph.
func importChain(graph map[string][]string, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == to {
			var chain []string
			for ; p != ""; p = prev[p] {
				chain = append(chain, strings.TrimPrefix(p, module+"/"))
			}
			slices.Reverse(chain)
			return chain
		}
		for _, next := range graph[p] {
			if _, seen := prev[next]; !seen {
				prev[next] = p
				queue = append(queue, next)
			}
		}
	}
	return []string{from, "…", to}
}

// goPackages returns, per directory (slash-separated, relative to root),
// the non-test .go files of every package in the repository: both modules
// (the main one and deploy/), testdata and dot directories left out.
func goPackages(t *testing.T, root string) map[string][]string {
	t.Helper()
	pkgs := map[string][]string{}
	for _, f := range repoFiles(t, root) {
		if !strings.HasSuffix(f, ".go") || strings.HasSuffix(f, "_test.go") {
			continue
		}
		dir := path.Dir(f)
		if slices.ContainsFunc(strings.Split(dir, "/"), func(e string) bool {
			return e == "testdata" || e == "vendor" || strings.HasPrefix(e, ".") || strings.HasPrefix(e, "_")
		}) {
			continue
		}
		pkgs[dir] = append(pkgs[dir], f)
	}
	return pkgs
}

// TestPackageDocs: every package says what it is for in a package comment
// ("// Package x ..."; "// Command x ..." for a main package).
func TestPackageDocs(t *testing.T) {
	root := repoRoot(t)
	pkgs := goPackages(t, root)
	if len(pkgs) == 0 {
		t.Fatal("no Go packages found")
	}
	dirs := make([]string, 0, len(pkgs))
	for dir := range pkgs {
		dirs = append(dirs, dir)
	}
	sort.Strings(dirs)
	for _, dir := range dirs {
		var name string
		documented := false
		for _, f := range pkgs[dir] {
			file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, filepath.FromSlash(f)), nil,
				parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			name = file.Name.Name
			if docOK(file) {
				documented = true
				break
			}
		}
		if !documented && name != "" {
			want := "// Package " + name + " ..."
			if name == "main" {
				want = "// Command " + path.Base(dir) + " ..."
			}
			t.Errorf("package %s (%s/) has no package comment: add %q above the package clause of one of its files",
				name, dir, want)
		}
	}
}

// TestDesignMapsEveryPackage: docs/design.md's package map names every
// package of the main module (as `dir`), so a new package is placed in
// the map when it is added. The deploy module has its own row.
func TestDesignMapsEveryPackage(t *testing.T) {
	root := repoRoot(t)
	design, err := os.ReadFile(filepath.Join(root, "docs", "design.md"))
	if err != nil {
		t.Fatal(err)
	}
	for dir := range goPackages(t, root) {
		if dir == "." || dir == "deploy" || strings.HasPrefix(dir, "deploy/") {
			continue
		}
		if !strings.Contains(string(design), "`"+dir+"`") {
			t.Errorf("package %s/ is not in docs/design.md's package map: add a row | `%s` | what it does | what it uses |", dir, dir)
		}
	}
}

// docOK reports whether file has a package comment in the usual form.
func docOK(file *ast.File) bool {
	if file.Doc == nil {
		return false
	}
	text := file.Doc.Text()
	if strings.HasPrefix(text, "Package "+file.Name.Name+" ") || strings.HasPrefix(text, "Package "+file.Name.Name+"\n") {
		return true
	}
	return file.Name.Name == "main" && strings.HasPrefix(text, "Command ")
}

// TestFileLength: no non-test .go file is longer than maxLines lines.
func TestFileLength(t *testing.T) {
	root := repoRoot(t)
	for _, files := range goPackages(t, root) {
		for _, f := range files {
			data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
			if err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			n := bytes.Count(data, []byte("\n"))
			if len(data) > 0 && data[len(data)-1] != '\n' {
				n++
			}
			if n > maxLines {
				t.Errorf("%s has %d lines, more than %d: split it", f, n, maxLines)
			}
		}
	}
}

var (
	// fence opens or closes a fenced code block.
	fence = regexp.MustCompile("^ {0,3}(```|~~~)")
	// codeSpan is inline code, whose brackets are no links.
	codeSpan = regexp.MustCompile("`+[^`]*`+")
	// inlineLink is [text](target) or ![alt](target); the text may hold
	// one level of brackets.
	inlineLink = regexp.MustCompile(`!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+(?:"[^"]*"|'[^']*'|\([^)]*\)))?\s*\)`)
	// refDef is a reference definition: [label]: target.
	refDef = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)`)
	// scheme starts an absolute URL (http:, https:, mailto:, ...).
	scheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
)

// mdLinks returns the link targets of a Markdown document with their line
// numbers, skipping fenced code blocks and inline code.
func mdLinks(doc string) (targets []string, lines []int) {
	inFence := false
	for i, line := range strings.Split(doc, "\n") {
		if fence.MatchString(line) {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		if m := refDef.FindStringSubmatch(line); m != nil {
			targets, lines = append(targets, m[1]), append(lines, i+1)
			continue
		}
		line = codeSpan.ReplaceAllString(line, "code")
		for _, m := range inlineLink.FindAllStringSubmatch(line, -1) {
			targets, lines = append(targets, m[1]), append(lines, i+1)
		}
	}
	return targets, lines
}

// TestMarkdownLinks: every relative link in a Markdown file of the
// repository points at a file or directory inside the repository.
func TestMarkdownLinks(t *testing.T) {
	root := repoRoot(t)
	checked := 0
	for _, f := range repoFiles(t, root) {
		if !strings.HasSuffix(strings.ToLower(f), ".md") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		checked++
		targets, lines := mdLinks(string(data))
		for i, target := range targets {
			target = strings.TrimSuffix(strings.TrimPrefix(target, "<"), ">")
			if target == "" || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "//") || scheme.MatchString(target) {
				continue // in-page anchor or absolute URL
			}
			p, _, _ := strings.Cut(target, "#")
			p, _, _ = strings.Cut(p, "?")
			if unescaped, err := url.PathUnescape(p); err == nil {
				p = unescaped
			}
			var rel string
			if strings.HasPrefix(p, "/") {
				rel = path.Clean(strings.TrimPrefix(p, "/")) // repository-absolute, as GitHub reads it
			} else {
				rel = path.Clean(path.Join(path.Dir(f), p))
			}
			if rel == ".." || strings.HasPrefix(rel, "../") {
				t.Errorf("%s:%d: link %q points outside the repository", f, lines[i], target)
				continue
			}
			if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel))); err != nil {
				t.Errorf("%s:%d: link %q: %s does not exist in the repository", f, lines[i], target, rel)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no Markdown files found")
	}
}

// TestNoOutsideReferences: nothing in the repository refers to the
// documents kept beside it; docs/operations.md is the operator reference.
func TestNoOutsideReferences(t *testing.T) {
	// Built from parts so that this file does not match itself.
	forbidden := []string{".." + "/shared", "shared/" + "contract.md"}
	exts := map[string]bool{".md": true, ".go": true, ".yaml": true, ".yml": true, ".sh": true, ".tf": true, ".tpl": true, ".py": true}
	root := repoRoot(t)
	for _, f := range repoFiles(t, root) {
		base := path.Base(f)
		if !exts[strings.ToLower(path.Ext(base))] && base != "Makefile" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		for _, s := range forbidden {
			if i := bytes.Index(data, []byte(s)); i >= 0 {
				line := bytes.Count(data[:i], []byte("\n")) + 1
				t.Errorf("%s:%d: refers to %q, outside the repository; link docs/operations.md instead", f, line, s)
			}
		}
	}
}

// TestOperationsReference: docs/operations.md carries the configuration
// table exactly as `mailrelay config` prints it, and names every metric the
// relay registers.
func TestOperationsReference(t *testing.T) {
	root := repoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	if !strings.Contains(doc, config.MarkdownTable()) {
		t.Error("docs/operations.md: the configuration table is stale: paste the output of `go run ./cmd/mailrelay config`")
	}
	m := telemetry.NewMetrics()
	// Vector metrics appear in Gather only once they have a child.
	m.ExternalCallDuration.WithLabelValues("s3", "GetObject", "ok")
	m.InboundRequests.WithLabelValues("Notification", "200")
	m.BreakerState.WithLabelValues("s3")
	m.Messages.WithLabelValues("forwarded", "ok")
	m.Panics.WithLabelValues("inbound")
	m.HealthRequests.WithLabelValues("/livez")
	m.SQSMessages.WithLabelValues("accepted", "new")
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		name := f.GetName()
		if !strings.HasPrefix(name, "mailrelay_") {
			continue
		}
		n++
		if !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("docs/operations.md does not document the metric %s (%s)", name, f.GetHelp())
		}
	}
	if n == 0 {
		t.Error("no mailrelay_ metrics registered")
	}
}
