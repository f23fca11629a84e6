package reply

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var (
	key  = []byte("0123456789abcdef0123456789abcdef")
	key2 = []byte("fedcba9876543210fedcba9876543210")
	day0 = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
)

func codec(t testing.TB, k, prev []byte, age time.Duration) *Codec {
	t.Helper()
	c, err := New(k, prev, age)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRoundTrip(t *testing.T) {
	c := codec(t, key, nil, 0)
	for _, tc := range []struct{ alias, sender, want string }{
		{"shop@relay.example.com", "newsletter@mail.example.com", "newsletter@mail.example.com"},
		{"a@relay.example.com", "x@y.z", "x@y.z"},
		{"shop@Relay.Example.COM", "Bob.Smith@Example.ORG", "Bob.Smith@example.org"},
		{"k7qz2m4x@relay.example.com", "noreply@github.com", "noreply@github.com"},
		{"shop@relay.example.com", "bounce+a=b@em.example.io", "bounce+a=b@em.example.io"},
		{"shop@relay.example.com", "o'brien&co@example.net", "o'brien&co@example.net"},
		{"s.h-o_p@relay.example.com", "first.last@gmail.com", "first.last@gmail.com"},
	} {
		addr, err := c.Encode(tc.alias, tc.sender, day0)
		if err != nil {
			t.Errorf("Encode(%q, %q): %v", tc.alias, tc.sender, err)
			continue
		}
		local, domain, _ := strings.Cut(addr, "@")
		if len(local) > MaxLocalLen || !strings.HasPrefix(local, Prefix) || domain != strings.ToLower(tc.alias[strings.IndexByte(tc.alias, '@')+1:]) {
			t.Errorf("Encode(%q, %q) = %q: bad shape", tc.alias, tc.sender, addr)
		}
		if local != strings.ToLower(local) {
			t.Errorf("%q is not lower case", addr)
		}
		if !Looks(addr) {
			t.Errorf("Looks(%q) = false", addr)
		}
		for _, variant := range []string{addr, strings.ToUpper(addr)} {
			got, err := c.Decode(variant, day0.Add(24*time.Hour))
			if err != nil {
				t.Errorf("Decode(%q): %v", variant, err)
				continue
			}
			if got.Alias != strings.ToLower(tc.alias[:strings.IndexByte(tc.alias, '@')])+"@"+domain && got.Alias != tc.alias[:strings.IndexByte(tc.alias, '@')]+"@"+domain {
				t.Errorf("Decode(%q).Alias = %q, want %q", variant, got.Alias, tc.alias)
			}
			if got.Sender != tc.want {
				t.Errorf("Decode(%q).Sender = %q, want %q", variant, got.Sender, tc.want)
			}
			if want := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC); !got.Issued.Equal(want) {
				t.Errorf("Issued = %s, want %s", got.Issued, want)
			}
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	c := codec(t, key, nil, 0)
	for _, tc := range []struct {
		alias, sender string
		tooLong       bool
	}{
		{"relay.example.com", "a@b.c", false},
		{"@relay.example.com", "a@b.c", false},
		{"shop@", "a@b.c", false},
		{"shop@relay.example.com", "nobody", false},
		{"shop@relay.example.com", "a@", false},
		{"shop@relay.example.com", "bounces+1234567890abcdef-xyz@mailer.longdomain.example.com", true},
		{strings.Repeat("a", 40) + "@relay.example.com", "a@b.c", true},
	} {
		_, err := c.Encode(tc.alias, tc.sender, day0)
		if err == nil {
			t.Errorf("Encode(%q, %q): no error", tc.alias, tc.sender)
			continue
		}
		if errors.Is(err, ErrTooLong) != tc.tooLong {
			t.Errorf("Encode(%q, %q) = %v; too long: want %v", tc.alias, tc.sender, err, tc.tooLong)
		}
	}
	if _, err := c.Encode("a@b.c", "x@y.z", time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)); err == nil {
		t.Error("a date past 16 bits of days was encoded")
	}
}

func TestCapacity(t *testing.T) {
	c := codec(t, key, nil, 0)
	// The longest sender of plain symbols that fits with alias "x".
	for n := 1; n < 80; n++ {
		sender := strings.Repeat("q", n) + "@q.qq"
		addr, err := c.Encode("x@relay.example.com", sender, day0)
		fits := 1+1+n+5 <= MaxSymbols
		if (err == nil) != fits {
			t.Fatalf("sender of %d bytes: err %v, want fits=%v", len(sender), err, fits)
		}
		if err == nil && len(addr[:strings.IndexByte(addr, '@')]) > MaxLocalLen {
			t.Fatalf("%q: local part over 64", addr)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	c := codec(t, key, nil, 30*24*time.Hour)
	good, err := c.Encode("shop@relay.example.com", "news@example.com", day0)
	if err != nil {
		t.Fatal(err)
	}
	local, domain, _ := strings.Cut(good, "@")
	flip := func(i int) string {
		b := []byte(local)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b) + "@" + domain
	}
	other := codec(t, key2, nil, 0)
	forged, _ := other.Encode("shop@relay.example.com", "news@example.com", day0)
	for _, tc := range []struct {
		name, addr string
		now        time.Time
		want       error
	}{
		{"alias", "shop@relay.example.com", day0, ErrNotReply},
		{"no prefix", local[len(Prefix):] + "@" + domain, day0, ErrNotReply},
		{"not base32", local[:len(local)-1] + "1@" + domain, day0, ErrNotReply},
		{"too short", Prefix + "abc@" + domain, day0, ErrNotReply},
		{"too long", Prefix + strings.Repeat("a", 62) + "@" + domain, day0, ErrNotReply},
		{"no domain", local, day0, ErrNotReply},
		{"tag changed", flip(len(Prefix)), day0, ErrTampered},
		{"day changed", flip(len(Prefix) + tagChars), day0, ErrTampered},
		{"sender changed", flip(len(local) - 2), day0, ErrTampered},
		{"truncated", local[:len(local)-1] + "@" + domain, day0, ErrTampered},
		{"other domain", local + "@other.example.com", day0, ErrTampered},
		{"other key", forged, day0, ErrTampered},
		{"expired", good, day0.Add(31 * 24 * time.Hour), ErrExpired},
		{"from the future", good, day0.Add(-3 * 24 * time.Hour), ErrExpired},
	} {
		_, err := c.Decode(tc.addr, tc.now)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Decode(%q) = %v, want %v", tc.name, tc.addr, err, tc.want)
		}
		if tc.want != ErrNotReply && !Looks(tc.addr) {
			t.Errorf("%s: Looks(%q) = false", tc.name, tc.addr)
		}
	}
	if _, err := c.Decode(good, day0.Add(29*24*time.Hour)); err != nil {
		t.Errorf("within max age: %v", err)
	}
}

func TestKeyRotation(t *testing.T) {
	old := codec(t, key, nil, 0)
	addr, err := old.Encode("shop@relay.example.com", "news@example.com", day0)
	if err != nil {
		t.Fatal(err)
	}
	rotated := codec(t, key2, key, 0)
	if got, err := rotated.Decode(addr, day0); err != nil || got.Sender != "news@example.com" {
		t.Errorf("after rotation: %+v, %v", got, err)
	}
	fresh, _ := rotated.Encode("shop@relay.example.com", "news@example.com", day0)
	if fresh == addr {
		t.Error("the new key made the same tag")
	}
	if _, err := old.Decode(fresh, day0); !errors.Is(err, ErrTampered) {
		t.Errorf("old codec accepted the new key's address: %v", err)
	}
	retired := codec(t, key2, nil, 0)
	if _, err := retired.Decode(addr, day0); !errors.Is(err, ErrTampered) {
		t.Errorf("retired key still accepted: %v", err)
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		k, prev []byte
		ok      bool
	}{
		{key, nil, true},
		{key, key2, true},
		{key[:MinKeyBytes-1], nil, false},
		{nil, nil, false},
		{key, []byte("short"), false},
	} {
		if _, err := New(tc.k, tc.prev, 0); (err == nil) != tc.ok {
			t.Errorf("New(%d bytes, %d bytes): %v", len(tc.k), len(tc.prev), err)
		}
	}
}

func TestPack(t *testing.T) {
	for _, s := range []string{"", "a", "A", "\x00\xff", "gmail.com", "mailnewsnoreply", "=?@", "x@outlook.com"} {
		got, err := unpack(pack(s))
		if err != nil || got != s {
			t.Errorf("unpack(pack(%q)) = %q, %v", s, got, err)
		}
	}
	if n := len(pack("newsletter@mail.example.com")); n > 20 {
		t.Errorf("common sender packs into %d symbols", n)
	}
	for _, bad := range [][]byte{{symEscape}, {symEscape, 1}, {symEscape, 16, 0}} {
		if _, err := unpack(bad); err == nil {
			t.Errorf("unpack(%v): no error", bad)
		}
	}
}

func FuzzDecode(f *testing.F) {
	c := codec(f, key, key2, 0)
	good, _ := c.Encode("shop@relay.example.com", "news@example.com", day0)
	f.Add(good)
	f.Add("shop@relay.example.com")
	f.Add(Prefix + strings.Repeat("7", 61) + "@x")
	f.Add(strings.ToUpper(good))
	f.Fuzz(func(t *testing.T, addr string) {
		a, err := c.Decode(addr, day0)
		if err != nil {
			if !errors.Is(err, ErrNotReply) && !errors.Is(err, ErrTampered) && !errors.Is(err, ErrExpired) {
				t.Fatalf("Decode(%q): unexpected error %v", addr, err)
			}
			if errors.Is(err, ErrNotReply) == Looks(addr) {
				t.Fatalf("Decode(%q) = %v but Looks = %v", addr, err, Looks(addr))
			}
			return
		}
		// Anything that authenticates encodes back to an address that
		// decodes to the same thing.
		again, err := c.Encode(a.Alias, a.Sender, a.Issued)
		if err != nil {
			t.Fatalf("Encode(%+v): %v", a, err)
		}
		b, err := c.Decode(again, day0)
		if err != nil || b != a {
			t.Fatalf("re-encoded %+v as %q: %+v, %v", a, again, b, err)
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	c := codec(f, key, nil, 0)
	f.Add("shop", "news", "example.com", uint16(20526))
	f.Add("a", "Bob.Smith", "Example.ORG", uint16(0))
	f.Add("x", "\x00\xff", "gmail.com", uint16(65535))
	f.Fuzz(func(t *testing.T, aLocal, sLocal, sDomain string, day uint16) {
		alias, sender := aLocal+"@relay.example.com", sLocal+"@"+sDomain
		now := time.Unix(int64(day)*86400+3600, 0)
		addr, err := c.Encode(alias, sender, now)
		if err != nil {
			return // invalid or too long: refused, fine
		}
		local, _, _ := strings.Cut(addr, "@")
		if len(local) > MaxLocalLen || !Looks(addr) {
			t.Fatalf("Encode(%q, %q) = %q", alias, sender, addr)
		}
		got, err := c.Decode(addr, now)
		if err != nil {
			t.Fatalf("Decode(Encode(%q, %q)) = %v", alias, sender, err)
		}
		at := strings.LastIndexByte(sender, '@')
		wantSender := sender[:at] + "@" + strings.ToLower(sender[at+1:])
		if got.Alias != alias || got.Sender != wantSender {
			t.Fatalf("round trip of %q, %q: %+v", alias, sender, got)
		}
	})
}
