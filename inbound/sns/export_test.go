package sns

// SetJoinHook installs f, called whenever a verification joins a certificate
// download already in flight.
func SetJoinHook(v *Verifier, f func()) {
	v.mu.Lock()
	v.joinHook = f
	v.mu.Unlock()
}

// CacheLen reports the number of cached certificates.
func CacheLen(v *Verifier) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.cache.len()
}
