package mailproc

import "testing"

func TestBufClass(t *testing.T) {
	tests := []struct{ n, class int }{
		{0, 0}, {1, 0}, {64 << 10, 0}, {64<<10 + 1, 1}, {256 << 10, 1}, {256<<10 + 1, 2},
		{1 << 20, 2}, {5 << 20, 4}, {16 << 20, 4}, {64 << 20, 5}, {64<<20 + 1, -1},
	}
	for _, tc := range tests {
		if got := bufClass(tc.n); got != tc.class {
			t.Errorf("bufClass(%d) = %d, want %d", tc.n, got, tc.class)
		}
	}
}

func TestGetBufRoom(t *testing.T) {
	for _, n := range []int{0, 100, 64 << 10, 300 << 10, 5 << 20, 70 << 20} {
		b := getBuf(n)
		if b.Len() != 0 || b.Cap() < n {
			t.Fatalf("getBuf(%d): len %d cap %d", n, b.Len(), b.Cap())
		}
		b.WriteString("x")
		putBuf(b)
		if b2 := getBuf(n); b2.Len() != 0 || b2.Cap() < n {
			t.Fatalf("getBuf(%d) after putBuf: len %d cap %d", n, b2.Len(), b2.Cap())
		}
	}
}
