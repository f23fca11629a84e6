package awsclient

import (
	"context"
	"strings"
	"testing"
)

// TestSESConfigurationSet: with a configuration set every send names it
// and carries the alias tag, on both APIs (the fake SES checks tags as
// SES does); without one, neither.
func TestSESConfigurationSet(t *testing.T) {
	for _, mode := range []string{SendModeSES, SendModeSESv2} {
		for _, set := range []string{"mailrelay-feedback", ""} {
			t.Run(mode+"/"+set, func(t *testing.T) {
				fake, srv, _ := startSES(t)
				o := testOptions("", srv.URL)
				o.SendMode, o.ConfigurationSet = mode, set
				c := newClients(t, o)
				for _, from := range []string{"Shop.News+x@relay.example.com", ""} {
					if _, err := c.SES.SendRaw(context.Background(), from, []string{"alice@example.org"}, []byte(mail)); err != nil {
						t.Fatal(err)
					}
				}
				sent := fake.Sent()
				if len(sent) != 2 {
					t.Fatalf("sent %d", len(sent))
				}
				for i, want := range []map[string]string{{TagAlias: "Shop_News_x_relay_example_com"}, nil} {
					if set == "" {
						want = nil
					}
					s := sent[i]
					if s.ConfigurationSet != set || len(s.Tags) != len(want) || s.Tags[TagAlias] != want[TagAlias] {
						t.Errorf("send %d: configuration set %q, tags %v; want %q, %v", i, s.ConfigurationSet, s.Tags, set, want)
					}
				}
			})
		}
	}
}

func TestAliasTag(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"shop@relay.example.com", "shop_relay_example_com"},
		{"Dora-1_x@Relay.Example.COM", "Dora-1_x_Relay_Example_COM"},
		{"é@x.org", "___x_org"}, // bytes, not runes
		{"", ""},
		{strings.Repeat("a", 300), strings.Repeat("a", 256)},
	} {
		if got := AliasTag(tc.in); got != tc.want {
			t.Errorf("AliasTag(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzAliasTag(f *testing.F) {
	for _, s := range []string{"shop@relay.example.com", "", "é\x00\xff", strings.Repeat("ab.", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := AliasTag(s)
		if len(got) != min(len(s), 256) {
			t.Fatalf("AliasTag(%q) has %d bytes", s, len(got))
		}
		for _, c := range []byte(got) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				t.Fatalf("AliasTag(%q) = %q: byte %q not allowed", s, got, c)
			}
		}
	})
}
