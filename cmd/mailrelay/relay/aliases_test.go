package relay_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
)

// TestManagedAliases: an alias created through the admin API forwards,
// disabled it does not (the mail dropped as alias_disabled), enabled again
// it does; the alias file's aliases cannot be changed through the API.
func TestManagedAliases(t *testing.T) {
	h := newHarness(t, nil)
	admin := "http://" + h.Relay.AdminAddr
	call := func(method, path, body string, want int) aliases.Alias {
		t.Helper()
		req, err := http.NewRequest(method, admin+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json") // the admin guard's rule for a POST
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a aliases.Alias
		_ = json.NewDecoder(resp.Body).Decode(&a)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d", method, path, resp.StatusCode, want)
		}
		return a
	}
	a := call("POST", "/aliases", `{"to": "dana@example.org", "description": "test"}`, http.StatusCreated)
	if !strings.HasSuffix(a.Address, "@relay.example.com") || a.State != aliases.StateEnabled {
		t.Fatalf("created %+v", a)
	}
	h.Deliver("n1", "ses-n1", testMail(1), a.Address)
	if sent := h.WaitSent(1); sent[0].Source != a.Address || !slices.Equal(sent[0].Destinations, []string{"dana@example.org"}) {
		t.Fatalf("sent %+v", sent[0])
	}

	call("POST", "/aliases/"+a.Address+"/disable", "", http.StatusOK)
	h.Deliver("n2", "ses-n2", testMail(2), a.Address)
	waitFor(t, "the mail to the disabled alias finished", func() bool {
		return h.Relay.Spool.Stats().Messages == 0 && strings.Contains(gatherMessages(t, h), "alias_disabled")
	})
	if n := len(h.SES.Sent()); n != 1 {
		t.Fatalf("%d sends, want 1: mail to a disabled alias went out", n)
	}

	call("POST", "/aliases/"+a.Address+"/enable", "", http.StatusOK)
	h.Deliver("n3", "ses-n3", testMail(3), a.Address)
	h.WaitSent(2)

	call("POST", "/aliases/shop@relay.example.com/disable", "", http.StatusConflict)
	waitFor(t, "the counters written", func() bool {
		got := call("GET", "/aliases/"+a.Address, "", http.StatusOK)
		return got.Forwarded == 2 && got.Blocked == 1
	})
}
