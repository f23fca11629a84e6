package rewrite

import "testing"

// needsRepairByByte is needsRepair's definition, byte by byte.
func needsRepairByByte(f []byte, crlf bool) bool {
	for i, c := range f {
		switch {
		case c == '\r' && (i+1 == len(f) || f[i+1] != '\n'):
			return true
		case c == '\n' && crlf && (i == 0 || f[i-1] != '\r'):
			return true
		}
	}
	return false
}

// TestNeedsRepair compares needsRepair with its definition on every field
// of up to 7 bytes over 'a', CR and LF, in both modes.
func TestNeedsRepair(t *testing.T) {
	alphabet := []byte{'a', '\r', '\n'}
	var f []byte
	var walk func(n int)
	walk = func(n int) {
		for _, crlf := range []bool{false, true} {
			if got, want := needsRepair(f, crlf), needsRepairByByte(f, crlf); got != want {
				t.Fatalf("needsRepair(%q, crlf %v) = %v, want %v", f, crlf, got, want)
			}
		}
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			f = append(f, c)
			walk(n - 1)
			f = f[:len(f)-1]
		}
	}
	walk(7)
}
