package spool

// Stats returns the current size of the spool from in-memory counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Messages: len(s.items), Bytes: s.bytes,
		DeadLetters: len(s.deadItems), DeadLetterBytes: s.deadBytes, DeadLettersExpired: s.deadExpired}
	if len(s.age) > 0 {
		st.Oldest = s.age[0].enq
	}
	if len(s.deadAge) > 0 {
		st.OldestDeadLetter = s.deadAge[0].at
	}
	return st
}

// Full reports whether the spool is at or over either bound, counting the
// dead letters with the pending entries, or cannot store for want of disk
// space or after a storage failure (Err): Put accepts nothing then.
func (s *Spool) Full() bool {
	if s.Err() != nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)+len(s.deadItems) >= s.maxMsgs || s.bytes+s.deadBytes >= s.maxBytes
}
