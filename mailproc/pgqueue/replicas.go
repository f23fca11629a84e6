package pgqueue

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Live replicas: every replica upserts its row of relay_replicas with each
// heartbeat (every Lease/3) and deletes it in Close; a replica is live
// while its last beat is less than a Lease (three beats) old. The count
// divides the SES sending rate among replicas (mailproc/pace.Peers).

// replicaGone is how long the row of a replica that died (no Close) is
// kept before prune deletes it; it stopped counting as live long before.
const replicaGone = time.Hour

// beat records this replica as live.
func (q *Queue) beat() {
	err := q.do(context.Background(), "replica_heartbeat", func(ctx context.Context, p *pgxpool.Pool) error {
		_, err := p.Exec(ctx, `
INSERT INTO relay_replicas AS r (id) VALUES ($1)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()`, q.o.Replica)
		return err
	})
	if err != nil {
		q.log.Warn("recording this replica as live failed", "err", err)
	}
}

// Peers returns the number of live replicas sharing the database, this
// one included (at least 1: this one counts itself even while its own
// beat could not be written). It implements mailproc/pace.Peers.
func (q *Queue) Peers(ctx context.Context) (int, error) {
	var n int
	err := q.do(ctx, "replicas", func(ctx context.Context, p *pgxpool.Pool) error {
		return p.QueryRow(ctx, `
SELECT count(*) FILTER (WHERE id <> $1) FROM relay_replicas
WHERE heartbeat_at > now() - make_interval(secs => $2)`, q.o.Replica, q.o.Lease.Seconds()).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("pgqueue: counting live replicas: %w", err)
	}
	return n + 1, nil
}

// leave deletes this replica's row (a graceful stop): the others count
// one replica fewer at their next look instead of after a Lease.
func (q *Queue) leave() {
	err := q.do(context.Background(), "replica_leave", func(ctx context.Context, p *pgxpool.Pool) error {
		_, err := p.Exec(ctx, `DELETE FROM relay_replicas WHERE id = $1`, q.o.Replica)
		return err
	})
	if err != nil {
		q.log.Warn("removing this replica from the live ones failed; it stops counting after a lease", "err", err)
	}
}

// pruneReplicas deletes the rows of replicas that died long ago.
func (q *Queue) pruneReplicas(ctx context.Context, p *pgxpool.Pool) error {
	_, err := p.Exec(ctx, `DELETE FROM relay_replicas WHERE heartbeat_at < now() - make_interval(secs => $1)`,
		replicaGone.Seconds())
	return err
}
