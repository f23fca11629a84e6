package deploy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
)

// databasePort is the PostgreSQL egress port as egressPorts names it.
const databasePort = "5432/TCP"

// egressPorts maps each egress port ("53/UDP") to the peers its rules allow
// ("ipBlock:CIDR" or "selector"); a rule without peers allows "any".
func egressPorts(np *networkingv1.NetworkPolicy) map[string][]string {
	out := map[string][]string{}
	for _, rule := range np.Spec.Egress {
		var peers []string
		for _, p := range rule.To {
			if p.IPBlock != nil {
				peers = append(peers, "ipBlock:"+p.IPBlock.CIDR)
			} else {
				peers = append(peers, "selector")
			}
		}
		if len(peers) == 0 {
			peers = []string{"any"}
		}
		for _, p := range rule.Ports {
			k := fmt.Sprintf("%s/%s", p.Port.String(), *p.Protocol)
			out[k] = append(out[k], peers...)
		}
	}
	return out
}

// checkEgress: DNS only to the cluster DNS (a selector peer), HTTPS only to
// ipBlocks and never to every address, PostgreSQL (5432) to named peers with
// a database and not at all without, and no other egress port.
func checkEgress(t *testing.T, np *networkingv1.NetworkPolicy, database bool) {
	t.Helper()
	out := egressPorts(np)
	for _, port := range []string{"53/UDP", "53/TCP"} {
		if peers := out[port]; len(peers) == 0 || slices.ContainsFunc(peers, func(p string) bool { return p != "selector" }) {
			t.Errorf("NetworkPolicy egress %s to %v, want the cluster DNS only", port, peers)
		}
	}
	for _, p := range out["443/TCP"] {
		if !strings.HasPrefix(p, "ipBlock:") || p == "ipBlock:0.0.0.0/0" || p == "ipBlock:::/0" {
			t.Errorf("NetworkPolicy egress 443/TCP to %s", p)
		}
	}
	db := out[databasePort]
	if database && (len(db) == 0 || slices.Contains(db, "any") || slices.Contains(db, "ipBlock:0.0.0.0/0")) {
		t.Errorf("NetworkPolicy egress %s to %v, want the database's peers", databasePort, db)
	}
	if !database && len(db) > 0 {
		t.Errorf("NetworkPolicy egress %s to %v without a database", databasePort, db)
	}
	for port := range out {
		if port != "53/UDP" && port != "53/TCP" && port != "443/TCP" && port != databasePort {
			t.Errorf("NetworkPolicy egress has port %s", port)
		}
	}
}

// TestNetworkPolicyEgress: HTTPS egress goes only where the values say:
// nowhere by default (with a warning in the notes), to the named CIDRs, or
// everywhere only with allowAllHTTPS; and values that would open egress by
// accident fail the render.
func TestNetworkPolicyEgress(t *testing.T) {
	egress := func(e map[string]any) map[string]any {
		v := required()
		v["networkPolicy"] = map[string]any{"egress": e}
		return v
	}
	dbEgress := withDatabase(required())
	dbEgress["networkPolicy"] = map[string]any{"egress": map[string]any{
		"httpsCIDRs": []any{"10.0.0.0/16"},
		"databaseTo": []any{
			map[string]any{"ipBlock": map[string]any{"cidr": "10.0.64.0/20"}},
			map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "postgres"}}},
		},
		"databasePort": 6432,
	}}
	for _, tc := range []struct {
		name     string
		files    []string
		set      map[string]any
		https    []string // peers of 443/TCP
		database []string // peers of the database port
		dbPort   string
		warn     bool
	}{
		{name: "defaults", set: required(), warn: true},
		{name: "production", files: []string{productionFile}, set: nil, https: []string{"ipBlock:10.0.0.0/16"},
			database: []string{"ipBlock:10.0.64.0/20"}, dbPort: databasePort},
		{name: "database peers and port", set: dbEgress, https: []string{"ipBlock:10.0.0.0/16"},
			database: []string{"ipBlock:10.0.64.0/20", "selector"}, dbPort: "6432/TCP"},
		{name: "endpoint subnets", set: egress(map[string]any{"httpsCIDRs": []any{"10.0.1.0/24", "10.0.2.0/24"}}),
			https: []string{"ipBlock:10.0.1.0/24", "ipBlock:10.0.2.0/24"}},
		{name: "all HTTPS", set: egress(map[string]any{"allowAllHTTPS": true}), https: []string{"ipBlock:0.0.0.0/0", "ipBlock:::/0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := tc.set
			if set == nil {
				set = map[string]any{}
			}
			ms, notes, err := RenderChart(context.Background(), chartDir, RenderOptions{ValuesFiles: tc.files, Set: set})
			if err != nil {
				t.Fatal(err)
			}
			var np *networkingv1.NetworkPolicy
			for _, m := range ms {
				if m.Kind != "NetworkPolicy" {
					continue
				}
				obj, _, err := strictDecoder.Decode(m.YAML, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				np = obj.(*networkingv1.NetworkPolicy)
			}
			if np == nil {
				t.Fatal("no NetworkPolicy")
			}
			out := egressPorts(np)
			if got := out["443/TCP"]; !slices.Equal(got, tc.https) {
				t.Errorf("443/TCP to %v, want %v (ports %v)", got, tc.https, slices.Sorted(maps.Keys(out)))
			}
			if tc.dbPort != "" {
				if got := out[tc.dbPort]; !slices.Equal(got, tc.database) {
					t.Errorf("%s to %v, want %v", tc.dbPort, got, tc.database)
				}
			} else if got := out[databasePort]; len(got) > 0 {
				t.Errorf("%s to %v without a database", databasePort, got)
			}
			if !slices.Contains(tc.https, "ipBlock:0.0.0.0/0") && tc.dbPort != "6432/TCP" {
				checkEgress(t, np, tc.database != nil)
			}
			if got := strings.Contains(notes, "allows no HTTPS egress"); got != tc.warn {
				t.Errorf("notes warn of no HTTPS egress: %v, want %v", got, tc.warn)
			}
		})
	}

	for _, tc := range []struct {
		name string
		set  map[string]any
		want string
	}{
		{"0.0.0.0/0 as a CIDR", egress(map[string]any{"httpsCIDRs": []any{"0.0.0.0/0"}}), "allowAllHTTPS=true"},
		{"::/0 as a CIDR", egress(map[string]any{"httpsCIDRs": []any{"10.0.0.0/16", "::/0"}}), "allowAllHTTPS=true"},
		{"no DNS peers", egress(map[string]any{"dnsTo": []any{}}), "dnsTo is empty"},
		{"database without its peers", func() map[string]any {
			v := required()
			v["database"] = map[string]any{"urlSecret": map[string]any{"name": "mailrelay-database"}}
			return v
		}(), "networkPolicy.egress.databaseTo is empty"},
		{"former httpsTo", func() map[string]any {
			v := required()
			v["networkPolicy"] = map[string]any{"httpsTo": []any{map[string]any{"ipBlock": map[string]any{"cidr": "0.0.0.0/0"}}}}
			return v
		}(), "networkPolicy.httpsTo has moved"},
		{"former extraEgress", func() map[string]any {
			v := required()
			v["networkPolicy"] = map[string]any{"extraEgress": []any{}}
			return v
		}(), "networkPolicy.extraEgress has moved"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := RenderChart(context.Background(), chartDir, RenderOptions{Set: tc.set})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("render error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
