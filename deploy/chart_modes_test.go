package deploy

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
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

// secretPlaceholders stand in for the values of variables taken from a
// Secret, so that the environment can be loaded as the relay would.
var secretPlaceholders = map[string]string{
	"RELAY_DATABASE_URL": "postgres://mailrelay:secret@db.example.org:5432/mailrelay?sslmode=verify-full",
	"RELAY_ADMIN_TOKEN":  "0123456789abcdef0123456789abcdef",
}

// env returns the container's environment variables: plain values, and for
// a secretKeyRef its placeholder (secretPlaceholders).
func env(t *testing.T, c corev1.Container) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range c.Env {
		if _, dup := out[e.Name]; dup {
			t.Errorf("environment variable %s set twice", e.Name)
		}
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			p, ok := secretPlaceholders[e.Name]
			if !ok {
				t.Errorf("%s comes from a Secret the checks have no placeholder for", e.Name)
			}
			v = p
		}
		out[e.Name] = v
	}
	return out
}

// secretRefs returns the variables taken from a Secret as "secret/key".
func secretRefs(c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			out[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	return out
}

// checkSpoolClaim: without a database the spool is on the claim template's
// volume, at RELAY_SPOOL_DIR, retained on scale-in, and there is one pod.
func checkSpoolClaim(t *testing.T, r *rendered, spoolDir string, mounts map[string]corev1.VolumeMount) {
	t.Helper()
	sts := r.sts
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q, want Parallel", sts.Spec.PodManagementPolicy)
	}
	var claim *corev1.PersistentVolumeClaim
	for i := range sts.Spec.VolumeClaimTemplates {
		if sts.Spec.VolumeClaimTemplates[i].Name == "spool" {
			claim = &sts.Spec.VolumeClaimTemplates[i]
		}
	}
	if claim == nil {
		t.Fatal("no volumeClaimTemplate spool")
	}
	if q := claim.Spec.Resources.Requests[corev1.ResourceStorage]; q.IsZero() {
		t.Error("spool claim requests no storage")
	}
	if m, ok := mounts["spool"]; !ok || m.ReadOnly || !within(spoolDir, m.MountPath) {
		t.Errorf("RELAY_SPOOL_DIR %s is not on the spool volume (mounts %v)", spoolDir, mounts)
	}
	if sts.Spec.PersistentVolumeClaimRetentionPolicy == nil ||
		sts.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
		t.Error("spool claims must be retained on scale-in: they may hold acknowledged mail")
	}
	if n := sts.Spec.Replicas; n != nil && *n != 1 {
		t.Errorf("StatefulSet replicas %d without a database, want 1", *n)
	}
	if r.hpa != nil && r.hpa.Spec.MaxReplicas > 1 {
		t.Errorf("HPA maxReplicas %d without a database, want 1", r.hpa.Spec.MaxReplicas)
	}
}

// checkDataEmptyDir: with a database no volume is persistent; the data
// directory is a size-limited emptyDir; the URL comes from a Secret.
func checkDataEmptyDir(t *testing.T, r *rendered, spoolDir string, mounts map[string]corev1.VolumeMount) {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range r.pod().Spec.Volumes {
		vols[v.Name] = v
		if v.PersistentVolumeClaim != nil || v.Ephemeral != nil {
			t.Errorf("volume %s is persistent: with a database no pod owns state", v.Name)
		}
	}
	m, ok := mounts["data"]
	if !ok || m.ReadOnly || !within(spoolDir, m.MountPath) {
		t.Fatalf("RELAY_SPOOL_DIR %s is not on the data volume (mounts %v)", spoolDir, mounts)
	}
	if v := vols["data"]; v.EmptyDir == nil || v.EmptyDir.SizeLimit == nil || v.EmptyDir.SizeLimit.IsZero() {
		t.Errorf("data volume %+v: want an emptyDir with a sizeLimit", v.VolumeSource)
	}
	if ref := secretRefs(r.pod().Spec.Containers[0])["RELAY_DATABASE_URL"]; ref == "" {
		t.Error("RELAY_DATABASE_URL is not from a Secret")
	}
}
