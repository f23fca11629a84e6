package aliases

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchSettle is how long WatchFile waits after the last event before
// reading the file: an editor or a ConfigMap update is several events.
const watchSettle = 100 * time.Millisecond

// WatchFile reloads the alias file when it changes, until ctx ends. It
// watches the directory holding the file (and, when the path is a
// symbolic link, the directory of its target), not the file itself: an
// editor replaces the file by a rename, and Kubernetes updates a mounted
// ConfigMap by pointing the "..data" symbolic link at a new directory,
// neither of which a watch on the old file would see. Any event there
// leads to a read, and a reload only when the content differs from the
// table in use. report, if not nil, is called after each reload with what
// changed, or the error (the previous table stays in use).
//
// WatchFile returns once the watch is in place; the reloads run in a
// goroutine.
func (r *Reloadable) WatchFile(ctx context.Context, report func(Change, error)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch alias file: %w", err)
	}
	dirs := []string{filepath.Dir(r.path)}
	if real, err := filepath.EvalSymlinks(r.path); err == nil && filepath.Dir(real) != dirs[0] {
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			w.Close()
			return fmt.Errorf("watch alias file directory %s: %w", d, err)
		}
	}
	last := r.digest()
	go func() {
		defer w.Close()
		var settle <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-w.Events:
				if !ok {
					return
				}
				settle = time.After(watchSettle)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				if report != nil {
					report(Change{}, fmt.Errorf("watch alias file: %w", err))
				}
			case <-settle:
				settle = nil
				d := r.digest()
				if d == nil || bytes.Equal(d, last) {
					continue // unreadable for a moment (mid-swap), or unchanged
				}
				last = d // an invalid file is reported once, not at every event
				c, err := r.Reload()
				if report != nil {
					report(c, err)
				}
			}
		}
	}()
	return nil
}

// digest is the SHA-256 of the file's content, nil when unreadable.
func (r *Reloadable) digest() []byte {
	data, err := os.ReadFile(r.path)
	if err != nil {
		return nil
	}
	s := sha256.Sum256(data)
	return s[:]
}
