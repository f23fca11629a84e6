package awsclient

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	// MaxDeleteBatch is S3's limit of keys in one DeleteObjects request.
	MaxDeleteBatch = 1000
	// DefaultDeleteQueue bounds the deletes waiting for their batch: 25
	// s at 2,000 mails/s with a 200 ms interval is far more than one
	// interval's worth, so it fills only while S3 is slow or down.
	DefaultDeleteQueue = 10000
	// deleteTries is how many DeleteObjects requests an object gets: the
	// first, and one retry an interval later.
	deleteTries = 2
)

// BatchedS3 is the S3 client with its deletes batched: Delete queues the
// object and returns, and one goroutine removes the queued objects with
// one DeleteObjects request per bucket (up to MaxDeleteBatch keys) every
// interval, or as soon as a bucket has a full batch. Get, Available and
// BreakerState are the S3 client's.
//
// DeleteObjects goes through the same breaker, timeout (S3DeleteTimeout)
// and call timer (operation DeleteObjects) as every S3 call. An object the
// request did not delete (the whole request failed, or S3 listed the key
// among its per-key errors) is tried once more an interval later; after
// that it is counted in mailrelay_s3_objects_not_deleted_total, logged and
// left to the bucket's lifecycle expiry.
//
// When the queue is full (S3 slow or down for a long time) Delete deletes
// the object itself with one DeleteObject, as without batching: the
// workers are slowed by S3 as before, and no delete is dropped.
//
// A crash loses at most the queue: objects of mail finished in the last
// interval stay in the bucket until the lifecycle expiry. The mail itself
// is finished (never lost, never sent twice by the relay on its own).
type BatchedS3 struct {
	*S3
	interval time.Duration
	queue    chan objectRef
	closing  chan context.Context
	done     chan struct{}
	// base is the context of the requests made between intervals; Close
	// cancels it when its own deadline passes first.
	base       context.Context
	cancelBase context.CancelFunc
	notDeleted prometheus.Counter
	log        *slog.Logger

	mu     sync.RWMutex // closed; Delete holds it shared while it queues
	closed bool
	left   int // objects not deleted by the final flush (read after done)
}

type objectRef struct {
	bucket, key string
	tries       int // DeleteObjects requests made for it so far
}

// BatchDeletes returns c with its deletes batched every interval (> 0),
// at most queueSize (DefaultDeleteQueue if ≤ 0) waiting. Close it at
// shutdown, after the last Delete.
func (c *S3) BatchDeletes(interval time.Duration, queueSize int) *BatchedS3 {
	if queueSize <= 0 {
		queueSize = DefaultDeleteQueue
	}
	base, cancel := context.WithCancel(context.Background())
	b := &BatchedS3{
		S3:         c,
		interval:   interval,
		queue:      make(chan objectRef, queueSize),
		closing:    make(chan context.Context, 1),
		done:       make(chan struct{}),
		base:       base,
		cancelBase: cancel,
		notDeleted: c.dep.timer.metrics.S3ObjectsNotDeleted,
		log:        c.dep.log,
	}
	go b.run()
	return b
}

// Delete queues the object for the next batch and returns nil. After
// Close, or with the queue full, it deletes the object at once (S3.Delete).
func (b *BatchedS3) Delete(ctx context.Context, bucket, key string) error {
	b.mu.RLock()
	if !b.closed {
		select {
		case b.queue <- objectRef{bucket: bucket, key: key}:
			b.mu.RUnlock()
			return nil
		default:
		}
	}
	b.mu.RUnlock()
	return b.S3.Delete(ctx, bucket, key)
}

// Close sends what is queued (and one more try for what failed) and stops
// the batching goroutine, within ctx. It returns an error naming how many
// objects were left in the bucket. Later Deletes delete at once.
func (b *BatchedS3) Close(ctx context.Context) error {
	b.mu.Lock()
	first := !b.closed
	b.closed = true
	b.mu.Unlock()
	if first {
		b.closing <- ctx
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		b.cancelBase() // a request under way between intervals gives up too
		<-b.done       // quick: every call now fails on its context
	}
	b.cancelBase()
	if b.left > 0 {
		return fmt.Errorf("s3 batched delete: %d objects left in the bucket for the lifecycle expiry", b.left)
	}
	return nil
}

// batches is what the goroutine holds: objects per bucket for the next
// request, and objects to retry at the next interval.
type batches struct {
	pending map[string][]objectRef
	later   []objectRef
}

func (b *BatchedS3) run() {
	defer close(b.done)
	t := time.NewTicker(b.interval)
	defer t.Stop()
	q := batches{pending: make(map[string][]objectRef)}
	for {
		select {
		case r := <-b.queue:
			q.pending[r.bucket] = append(q.pending[r.bucket], r)
			if len(q.pending[r.bucket]) >= MaxDeleteBatch {
				b.send(b.base, &q, r.bucket)
			}
		case <-t.C:
			for _, r := range q.later {
				q.pending[r.bucket] = append(q.pending[r.bucket], r)
			}
			q.later = q.later[:0]
			b.sendAll(b.base, &q)
		case ctx := <-b.closing:
			b.finish(ctx, &q)
			return
		}
	}
}

// finish empties the queue (no Delete queues once closed is set), sends
// everything, gives the failed objects their one retry at once, and counts
// what is left.
func (b *BatchedS3) finish(ctx context.Context, q *batches) {
	for {
		select {
		case r := <-b.queue:
			q.pending[r.bucket] = append(q.pending[r.bucket], r)
			continue
		default:
		}
		break
	}
	for len(q.pending) > 0 || len(q.later) > 0 {
		for _, r := range q.later {
			q.pending[r.bucket] = append(q.pending[r.bucket], r)
		}
		q.later = q.later[:0]
		b.left += b.sendAll(ctx, q)
	}
}

// sendAll sends every bucket's pending objects and returns how many were
// given up.
func (b *BatchedS3) sendAll(ctx context.Context, q *batches) int {
	n := 0
	for bucket := range q.pending {
		n += b.send(ctx, q, bucket)
	}
	return n
}

// send deletes bucket's pending objects, MaxDeleteBatch per request.
// Objects not deleted go to q.later for their retry, or are given up
// (counted, logged, and their number returned).
func (b *BatchedS3) send(ctx context.Context, q *batches, bucket string) int {
	given := 0
	refs := q.pending[bucket]
	delete(q.pending, bucket)
	for len(refs) > 0 {
		n := min(len(refs), MaxDeleteBatch)
		batch := refs[:n]
		refs = refs[n:]
		failed, err := b.deleteObjects(ctx, bucket, batch)
		if err != nil {
			b.log.Warn("s3 batched delete failed", "bucket", bucket, "objects", len(batch), "err", err)
		}
		var gaveUp []objectRef
		for _, r := range failed {
			r.tries++
			if r.tries < deleteTries && ctx.Err() == nil {
				q.later = append(q.later, r)
			} else {
				gaveUp = append(gaveUp, r)
			}
		}
		if len(gaveUp) > 0 {
			b.notDeleted.Add(float64(len(gaveUp)))
			b.log.Warn("s3 objects not deleted; the bucket's lifecycle expiry will remove them",
				"bucket", bucket, "objects", len(gaveUp), "first_key", gaveUp[0].key)
			given += len(gaveUp)
		}
	}
	return given
}

// deleteObjects sends one DeleteObjects (quiet: S3 lists only the keys it
// could not delete) and returns the objects not deleted: all of them when
// the request failed (err then says why), else those S3 listed.
func (b *BatchedS3) deleteObjects(ctx context.Context, bucket string, batch []objectRef) ([]objectRef, error) {
	ids := make([]s3types.ObjectIdentifier, len(batch))
	for i := range batch {
		ids[i].Key = &batch[i].key
	}
	var keyErrs []s3types.Error
	err := b.dep.do(ctx, "DeleteObjects", b.deleteTimeout, func(ctx context.Context) error {
		out, err := b.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: &bucket,
			Delete: &s3types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return fmt.Errorf("s3 delete %d objects in %s: %w", len(batch), bucket, err)
		}
		keyErrs = out.Errors
		return nil
	})
	if err != nil {
		return batch, err
	}
	if len(keyErrs) == 0 {
		return nil, nil
	}
	failed := make(map[string]bool, len(keyErrs))
	for _, e := range keyErrs {
		k := aws.ToString(e.Key)
		failed[k] = true
		b.log.Debug("s3 object not deleted", "bucket", bucket, "key", k, "code", aws.ToString(e.Code), "message", aws.ToString(e.Message))
	}
	b.log.Warn("s3 batched delete: some objects not deleted", "bucket", bucket, "objects", len(keyErrs),
		"first_key", aws.ToString(keyErrs[0].Key), "code", aws.ToString(keyErrs[0].Code), "message", aws.ToString(keyErrs[0].Message))
	var out []objectRef
	for _, r := range batch {
		if failed[r.key] {
			out = append(out, r)
		}
	}
	return out, nil
}
