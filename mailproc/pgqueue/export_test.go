package pgqueue

// Crash stops q as a killed process would: no heartbeat any more and no
// claim released.
func (q *Queue) Crash() {
	q.mu.Lock()
	q.closed = true
	close(q.done)
	q.mu.Unlock()
	q.wg.Wait()
}

// Refresh takes a snapshot now.
func (q *Queue) Refresh() { q.refresh() }
