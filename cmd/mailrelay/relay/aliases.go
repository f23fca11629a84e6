package relay

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/mailrelay/mailrelay/mailproc/aliasdb"
	"github.com/mailrelay/mailrelay/mailproc/aliases"
)

// aliasSet is the relay's aliases: the file (read-only, reloaded when it
// changes), the store of managed aliases, the resolver over both, and the
// counters.
type aliasSet struct {
	file     *aliases.Reloadable
	store    *aliasdb.Store
	resolver *aliases.Combined
	counter  *aliasdb.Counter
	manager  *aliases.Manager
}

// aliasDBPath is the SQLite file of the managed aliases: --alias-db, or
// aliases.db beside the spool directory (on the same volume).
func aliasDBPath(aliasDB, spoolDir string) string {
	if aliasDB != "" {
		return aliasDB
	}
	return filepath.Join(filepath.Dir(filepath.Clean(spoolDir)), "aliases.db")
}

// openAliases loads the alias file, opens (and migrates) the alias store,
// and starts the file watch, the store's version poll and the counters'
// flush; all stop, the counters flushed, when the relay stops.
func (r *run) openAliases(ctx context.Context) (*aliasSet, error) {
	cfg, log := r.cfg, r.log.With("component", "aliases")
	file, err := aliases.NewReloadable(cfg.AliasesFile)
	if err != nil {
		return nil, fmt.Errorf("aliases: %w", err)
	}
	t := file.Table()
	log.Info("aliases loaded", "file", cfg.AliasesFile, "aliases", t.Len(), "domains", strings.Join(t.Domains(), ","))

	var store *aliasdb.Store
	if cfg.DatabaseURL != "" {
		store, err = aliasdb.OpenPostgres(ctx, cfg.DatabaseURL)
		log.Info("alias store opened", "backend", "postgres")
	} else {
		path := aliasDBPath(cfg.AliasDB, cfg.SpoolDir)
		store, err = aliasdb.OpenSQLite(ctx, path)
		log.Info("alias store opened", "backend", "sqlite", "file", path)
	}
	if err != nil {
		return nil, fmt.Errorf("alias store: %w", err)
	}
	r.onStop(func() { _ = store.Close() })

	as := &aliasSet{file: file, store: store, counter: aliasdb.NewCounter(store, log)}
	as.resolver = aliases.NewCombined(file.Table, store, aliases.CombinedOptions{Logger: log})
	as.manager = aliases.NewManager(file.Table, store, as.resolver)

	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { as.resolver.Run(bg) })
	wg.Go(func() { as.counter.Run(bg) })
	r.onStop(func() { stop(); wg.Wait() })
	if err := file.WatchFile(bg, func(c aliases.Change, err error) {
		if err != nil {
			log.Error("alias file changed but cannot be used; keeping the previous table", "err", err)
			return
		}
		log.Info("alias file reloaded", "file", cfg.AliasesFile, "added", c.Added, "removed", c.Removed, "total", c.Total)
	}); err != nil {
		// SIGHUP still reloads; say why changes are not picked up alone.
		log.Warn("not watching the alias file; reload it with SIGHUP", "err", err)
	}
	return as, nil
}
