package deploy

import (
	"context"
	"strings"
	"testing"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
)

const testQueueURL = "https://sqs.us-east-1.amazonaws.com/123456789012/mailrelay-inbound"

// withDatabase adds a PostgreSQL database (its URL in the Secret
// mailrelay-database) and the NetworkPolicy's egress to it.
func withDatabase(v map[string]any) map[string]any {
	v["database"] = map[string]any{"urlSecret": map[string]any{"name": "mailrelay-database"}}
	v["networkPolicy"] = map[string]any{"egress": map[string]any{
		"databaseTo": []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.0.64.0/20"}}},
	}}
	return v
}

// withIntake sets config.RELAY_INTAKE, and the queue URL when it has sqs.
func withIntake(v map[string]any, intake string) map[string]any {
	c := v["config"].(map[string]any)
	c["RELAY_INTAKE"] = intake
	if strings.Contains(intake, "sqs") {
		c["RELAY_SQS_QUEUE_URL"] = testQueueURL
	}
	return v
}

// checkScaleIn: with a database the HPA scales in, gradually: a
// stabilization window and at least one policy bounding each step.
func checkScaleIn(t *testing.T, hpa *autoscalingv2.HorizontalPodAutoscaler) {
	t.Helper()
	b := hpa.Spec.Behavior
	if b == nil || b.ScaleDown == nil {
		t.Fatal("HPA has no scaleDown behaviour: want a gradual scale-in")
	}
	d := b.ScaleDown
	if d.SelectPolicy != nil && *d.SelectPolicy == autoscalingv2.DisabledPolicySelect {
		t.Error("HPA scale-in disabled: with a database any pod may be removed")
	}
	if d.StabilizationWindowSeconds == nil || *d.StabilizationWindowSeconds < 60 {
		t.Errorf("HPA scaleDown stabilization window %v, want at least 60 s", d.StabilizationWindowSeconds)
	}
	if len(d.Policies) == 0 {
		t.Error("HPA scaleDown has no policy: it could remove every surplus pod at once")
	}
	for _, p := range d.Policies {
		if p.Value < 1 || p.PeriodSeconds < 15 {
			t.Errorf("HPA scaleDown policy %+v", p)
		}
	}
}

// envVar returns the container's variable name.
func envVar(c corev1.Container, name string) (corev1.EnvVar, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

// TestChartDatabase: the database URL and the admin token come from Secrets
// (secretKeyRef, the key defaulting to url and token), RELAY_DATABASE_MIGRATE
// follows database.migrate, and without a database neither is set.
func TestChartDatabase(t *testing.T) {
	custom := withDatabase(required())
	custom["database"] = map[string]any{"urlSecret": map[string]any{"name": "pg", "key": "dsn"}, "migrate": false}
	custom["admin"] = map[string]any{"tokenSecret": map[string]any{"name": "adm", "key": "bearer"}}
	for _, tc := range []struct {
		name    string
		set     map[string]any
		refs    map[string]string // variable -> secret/key
		migrate string            // RELAY_DATABASE_MIGRATE, "" for unset
	}{
		{name: "no database", set: required(), refs: map[string]string{}},
		{name: "database, default key", set: withDatabase(required()),
			refs: map[string]string{"RELAY_DATABASE_URL": "mailrelay-database/url"}, migrate: "true"},
		{name: "custom keys, no migration at start-up", set: custom,
			refs: map[string]string{"RELAY_DATABASE_URL": "pg/dsn", "RELAY_ADMIN_TOKEN": "adm/bearer"}, migrate: "false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, nil, tc.set)
			c := r.pod().Spec.Containers[0]
			got := secretRefs(c)
			if len(got) != len(tc.refs) {
				t.Errorf("variables from Secrets %v, want %v", got, tc.refs)
			}
			for k, want := range tc.refs {
				if got[k] != want {
					t.Errorf("%s from %q, want %q", k, got[k], want)
				}
				if e, _ := envVar(c, k); e.Value != "" {
					t.Errorf("%s has a plain value besides its secretKeyRef", k)
				}
			}
			e, ok := envVar(c, "RELAY_DATABASE_MIGRATE")
			if ok != (tc.migrate != "") || e.Value != tc.migrate {
				t.Errorf("RELAY_DATABASE_MIGRATE %q (set %v), want %q", e.Value, ok, tc.migrate)
			}
			if _, ok := envVar(c, "RELAY_ADMIN_LISTEN"); !ok {
				t.Error("RELAY_ADMIN_LISTEN not set")
			}
			checkWorkload(t, r, true)
		})
	}
}

// TestChartRefusesReplicas: without a database the chart refuses more than
// one pod, saying why; values that would bypass the Secret or the intake
// rules fail too.
func TestChartRefusesReplicas(t *testing.T) {
	const why = "acknowledged mail lives on one pod's spool volume"
	with := func(base map[string]any, mut func(map[string]any)) map[string]any {
		mut(base)
		return base
	}
	for _, tc := range []struct {
		name string
		set  map[string]any
		want []string
	}{
		{"two replicas without a database", with(required(), func(v map[string]any) { v["replicas"] = 2 }),
			[]string{"replicas: 2 refused", why, "database.urlSecret.name"}},
		{"autoscaling to three without a database", with(required(), func(v map[string]any) {
			v["autoscaling"] = map[string]any{"enabled": true, "minReplicas": 1, "maxReplicas": 3}
		}), []string{"autoscaling.maxReplicas: 3 refused", why, "database.urlSecret.name"}},
		{"autoscaling with the default bounds without a database", with(required(), func(v map[string]any) {
			v["autoscaling"] = map[string]any{"enabled": true}
		}), []string{"autoscaling.maxReplicas: 6 refused", why}},
		{"one pod autoscaled with the default minimum", with(required(), func(v map[string]any) {
			v["autoscaling"] = map[string]any{"enabled": true, "maxReplicas": 1}
		}), []string{"autoscaling.minReplicas 2 is above autoscaling.maxReplicas 1"}},
		{"the URL as a value", with(required(), func(v map[string]any) {
			v["database"] = map[string]any{"url": "postgres://u:p@db/mailrelay"}
		}), []string{"database.url is not read", "database.urlSecret.name"}},
		{"the URL in config", with(withDatabase(required()), func(v map[string]any) {
			v["config"].(map[string]any)["RELAY_DATABASE_URL"] = "postgres://u:p@db/mailrelay"
		}), []string{"config.RELAY_DATABASE_URL is set by the chart"}},
		{"the URL in extraEnv", with(required(), func(v map[string]any) {
			v["extraEnv"] = []any{map[string]any{"name": "RELAY_DATABASE_URL", "value": "postgres://u:p@db/mailrelay"}}
		}), []string{"extraEnv sets RELAY_DATABASE_URL"}},
		{"the admin token in config", with(required(), func(v map[string]any) {
			v["config"].(map[string]any)["RELAY_ADMIN_TOKEN"] = "x"
		}), []string{"config.RELAY_ADMIN_TOKEN is set by the chart"}},
		{"sqs without a queue", with(required(), func(v map[string]any) {
			v["config"].(map[string]any)["RELAY_INTAKE"] = "sqs"
		}), []string{"RELAY_SQS_QUEUE_URL"}},
		{"an unknown intake", with(required(), func(v map[string]any) {
			v["config"].(map[string]any)["RELAY_INTAKE"] = "http,kafka"
		}), []string{`RELAY_INTAKE "http,kafka"`, "http, sqs or http,sqs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := RenderChart(context.Background(), chartDir, RenderOptions{Set: tc.set})
			if err == nil {
				t.Fatal("rendered; want a refusal")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("render error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestChartManyReplicas: with a database any replica count renders, as a
// Deployment whose replicas are the value.
func TestChartManyReplicas(t *testing.T) {
	for _, n := range []int{1, 2, 5} {
		v := withDatabase(required())
		v["replicas"] = n
		r := render(t, nil, v)
		if r.deploy == nil || r.deploy.Spec.Replicas == nil || int(*r.deploy.Spec.Replicas) != n {
			t.Errorf("replicas %d: Deployment %v", n, r.deploy != nil)
		}
	}
}
