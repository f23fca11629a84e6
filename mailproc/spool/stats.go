package spool

// Stats returns the current size of the spool from in-memory counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Messages: len(s.items), Bytes: s.bytes, DeadLetters: s.dead}
	if len(s.age) > 0 {
		st.Oldest = s.age[0].enq
	}
	return st
}

// Full reports whether the spool is at or over either bound.
func (s *Spool) Full() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items) >= s.maxMsgs || s.bytes >= s.maxBytes
}
