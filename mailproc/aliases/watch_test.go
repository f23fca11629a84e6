package aliases

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const watchV1 = "domains: [r.example]\naliases:\n  - address: a@r.example\n    forward_to: [x@example.org]\n"
const watchV2 = watchV1 + "  - address: b@r.example\n    forward_to: [y@example.org]\n"

// waitReload waits (bounded) for the next reload report.
func waitReload(t *testing.T, reports <-chan error) error {
	t.Helper()
	select {
	case err := <-reports:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no reload after the file changed")
		return nil
	}
}

func TestWatchFile(t *testing.T) {
	tests := []struct {
		name string
		// setup writes version 1 and returns the path to load and a
		// function that switches to content.
		setup func(t *testing.T, dir string) (path string, update func(content string))
	}{
		{"rewrite in place", func(t *testing.T, dir string) (string, func(string)) {
			p := filepath.Join(dir, "aliases.yaml")
			write(t, p, watchV1)
			return p, func(c string) { write(t, p, c) }
		}},
		{"editor rename", func(t *testing.T, dir string) (string, func(string)) {
			p := filepath.Join(dir, "aliases.yaml")
			write(t, p, watchV1)
			return p, func(c string) {
				write(t, p+".tmp", c)
				if err := os.Rename(p+".tmp", p); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"configmap ..data swap", func(t *testing.T, dir string) (string, func(string)) {
			// What the kubelet does: aliases.yaml -> ..data/aliases.yaml,
			// ..data -> ..<timestamp>; an update writes a new timestamp
			// directory and renames a new link over ..data.
			mkVersion := func(name, content string) {
				if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
					t.Fatal(err)
				}
				write(t, filepath.Join(dir, name, "aliases.yaml"), content)
			}
			mkVersion("..2026_11_01_v1", watchV1)
			symlink(t, "..2026_11_01_v1", filepath.Join(dir, "..data"))
			symlink(t, "..data/aliases.yaml", filepath.Join(dir, "aliases.yaml"))
			v := 1
			return filepath.Join(dir, "aliases.yaml"), func(c string) {
				old := fmt.Sprintf("..2026_11_01_v%d", v)
				v++
				cur := fmt.Sprintf("..2026_11_01_v%d", v)
				mkVersion(cur, c)
				symlink(t, cur, filepath.Join(dir, "..data_tmp"))
				if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
					t.Fatal(err)
				}
				if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
					t.Fatal(err)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, update := tt.setup(t, t.TempDir())
			r, err := NewReloadable(path)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			reports := make(chan error, 10)
			if err := r.WatchFile(ctx, func(c Change, err error) { reports <- err }); err != nil {
				t.Fatal(err)
			}
			update(watchV2)
			if err := waitReload(t, reports); err != nil {
				t.Fatalf("reload: %v", err)
			}
			if _, err := r.Resolve(ctx, "b@r.example"); err != nil {
				t.Fatalf("new alias not loaded: %v", err)
			}
			// An invalid file is reported and the table kept.
			update("domains: []\n")
			if err := waitReload(t, reports); err == nil {
				t.Fatal("invalid file: no error reported")
			}
			if _, err := r.Resolve(ctx, "b@r.example"); err != nil {
				t.Fatalf("table lost after a bad reload: %v", err)
			}
		})
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
