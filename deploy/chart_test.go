package deploy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/mailproc/aliases"
)

const (
	chartDir       = "helm/mailrelay"
	productionFile = "helm/values-production.yaml"
	testTopicARN   = "arn:aws:sns:us-east-1:123456789012:mailrelay-inbound"
)

// required are the two values without a default.
func required() map[string]any {
	return map[string]any{
		"config": map[string]any{"RELAY_SNS_TOPIC_ARNS": testTopicARN},
		"aws":    map[string]any{"region": "us-east-1"},
	}
}

// Minimal local types of the Prometheus Operator CRDs: strict decoding into
// them rejects any field the checks do not know.
type serviceMonitor struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			HonorLabels   bool   `json:"honorLabels"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

type prometheusRule struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       ruleFile          `json:"spec"`
}

// ruleFile is a Prometheus rule file, also a PrometheusRule's spec.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// rendered is a chart render decoded into API types.
type rendered struct {
	sts      *appsv1.StatefulSet // without a database
	deploy   *appsv1.Deployment  // with a database
	services map[string]*corev1.Service
	sa       *corev1.ServiceAccount
	cms      map[string]*corev1.ConfigMap
	pdb      *policyv1.PodDisruptionBudget
	hpa      *autoscalingv2.HorizontalPodAutoscaler
	netpol   *networkingv1.NetworkPolicy
	ingress  *networkingv1.Ingress
	sm       *serviceMonitor
	rule     *prometheusRule
}

var strictDecoder = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// render renders the chart and strictly decodes every object.
func render(t *testing.T, files []string, set map[string]any) *rendered {
	t.Helper()
	ms, _, err := RenderChart(context.Background(), chartDir, RenderOptions{ValuesFiles: files, Set: set})
	if err != nil {
		t.Fatal(err)
	}
	r := &rendered{services: map[string]*corev1.Service{}, cms: map[string]*corev1.ConfigMap{}}
	for _, m := range ms {
		if m.Kind == "ServiceMonitor" || m.Kind == "PrometheusRule" {
			var dst any = &r.sm
			if m.Kind == "PrometheusRule" {
				dst = &r.rule
			}
			if err := yaml.UnmarshalStrict(m.YAML, dst); err != nil {
				t.Fatalf("%s %s: %v", m.Kind, m.Name, err)
			}
			continue
		}
		obj, _, err := strictDecoder.Decode(m.YAML, nil, nil)
		if err != nil {
			t.Fatalf("%s (%s %s): %v\n%s", m.Source, m.Kind, m.Name, err, m.YAML)
		}
		switch o := obj.(type) {
		case *appsv1.StatefulSet:
			setOnce(t, &r.sts, o)
		case *appsv1.Deployment:
			setOnce(t, &r.deploy, o)
		case *corev1.Service:
			r.services[o.Name] = o
		case *corev1.ServiceAccount:
			setOnce(t, &r.sa, o)
		case *corev1.ConfigMap:
			r.cms[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			setOnce(t, &r.pdb, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			setOnce(t, &r.hpa, o)
		case *networkingv1.NetworkPolicy:
			setOnce(t, &r.netpol, o)
		case *networkingv1.Ingress:
			setOnce(t, &r.ingress, o)
		default:
			t.Fatalf("%s: unexpected kind %T", m.Source, obj)
		}
	}
	if (r.sts == nil) == (r.deploy == nil) {
		t.Fatalf("StatefulSet rendered: %v, Deployment rendered: %v; want exactly one", r.sts != nil, r.deploy != nil)
	}
	return r
}

// kind is the workload's kind: StatefulSet or Deployment.
func (r *rendered) kind() string {
	if r.deploy != nil {
		return "Deployment"
	}
	return "StatefulSet"
}

// name is the workload's name.
func (r *rendered) name() string {
	if r.deploy != nil {
		return r.deploy.Name
	}
	return r.sts.Name
}

// pod is the workload's pod template.
func (r *rendered) pod() *corev1.PodTemplateSpec {
	if r.deploy != nil {
		return &r.deploy.Spec.Template
	}
	return &r.sts.Spec.Template
}

// replicas is the workload's spec.replicas (nil when the HPA owns it).
func (r *rendered) replicas() *int32 {
	if r.deploy != nil {
		return r.deploy.Spec.Replicas
	}
	return r.sts.Spec.Replicas
}

func setOnce[T runtime.Object](t *testing.T, dst *T, v T) {
	t.Helper()
	var zero T
	if any(*dst) != any(zero) {
		t.Fatalf("two objects of kind %T", v)
	}
	*dst = v
}

func TestChartRenders(t *testing.T) {
	withExtras := withDatabase(required())
	withExtras["ingress"] = map[string]any{"enabled": true, "className": "alb"}
	withExtras["existingSecret"] = map[string]any{"name": "mailrelay-env", "optional": true}
	withExtras["autoscaling"] = map[string]any{"enabled": true, "queueMessages": map[string]any{"enabled": true}}
	withExtras["extraEnv"] = []any{map[string]any{"name": "AWS_ENDPOINT_URL", "value": "http://localstack:4566"}}
	withExtras["goMemLimit"] = ""
	withExtras["admin"] = map[string]any{"tokenSecret": map[string]any{"name": "mailrelay-admin"}}
	noHPA := withDatabase(required())
	noHPA["replicas"] = 3
	noHPA["serviceMonitor"] = map[string]any{"enabled": false}
	noHPA["prometheusRule"] = map[string]any{"enabled": false}
	noHPA["networkPolicy"] = map[string]any{"enabled": false}
	onePodHPA := required()
	onePodHPA["autoscaling"] = map[string]any{"enabled": true, "minReplicas": 1, "maxReplicas": 1}
	sqsOnly := withIntake(withDatabase(required()), "sqs")
	sqsOnly["ingress"] = map[string]any{"enabled": true}
	both := withIntake(withDatabase(required()), "http,sqs")
	both["ingress"] = map[string]any{"enabled": true}

	for _, tc := range []struct {
		name    string
		files   []string
		set     map[string]any
		kind    string // workload
		hpa     bool
		http    bool // inbound port, Service and rule
		ingress bool
		roleARN string
	}{
		{name: "defaults", set: required(), kind: "StatefulSet", http: true},
		{name: "production", files: []string{productionFile}, kind: "Deployment", hpa: true, http: true, ingress: true,
			roleARN: "arn:aws:iam::123456789012:role/mailrelay-relay"},
		{name: "optional parts on", set: withExtras, kind: "Deployment", hpa: true, http: true, ingress: true},
		{name: "no autoscaling or monitoring", set: noHPA, kind: "Deployment", http: true},
		{name: "one pod autoscaled without a database", set: onePodHPA, kind: "StatefulSet", hpa: true, http: true},
		{name: "sqs intake only", set: sqsOnly, kind: "Deployment"},
		{name: "http and sqs intakes", set: both, kind: "Deployment", http: true, ingress: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.files, tc.set)
			if r.kind() != tc.kind {
				t.Fatalf("workload %s, want %s", r.kind(), tc.kind)
			}
			if (r.hpa != nil) != tc.hpa {
				t.Errorf("HPA rendered: %v, want %v", r.hpa != nil, tc.hpa)
			}
			checkWorkload(t, r, tc.http)
			checkServices(t, r, tc.http)
			checkPolicies(t, r, tc.http)
			checkMonitoring(t, r)
			if (r.ingress != nil) != tc.ingress {
				t.Errorf("ingress rendered: %v, want %v", r.ingress != nil, tc.ingress)
			}
			if r.ingress != nil {
				checkIngress(t, r)
			}
			if r.sa == nil {
				t.Fatal("no ServiceAccount")
			}
			if got := r.sa.Annotations["eks.amazonaws.com/role-arn"]; got != tc.roleARN {
				t.Errorf("IRSA annotation %q, want %q", got, tc.roleARN)
			}
		})
	}
}

// portNumber resolves a probe's port (name or number) on the container.
func portNumber(t *testing.T, c corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	t.Fatalf("port %q is not a container port", p.StrVal)
	return 0
}

func listenPort(t *testing.T, addr string) (string, int32) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return host, int32(n)
}

// checkWorkload checks the StatefulSet or Deployment and its pods; http says
// whether the http intake (the inbound port) is on.
func checkWorkload(t *testing.T, r *rendered, http bool) {
	t.Helper()
	spec := r.pod().Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	e := env(t, c)

	// Every RELAY_* variable is a setting of the relay, and together they load.
	known := map[string]bool{}
	for _, f := range config.Flags() {
		known[f.Env] = true
	}
	for name := range e {
		if strings.HasPrefix(name, "RELAY_") && !known[name] {
			t.Errorf("%s is not a relay setting (mailrelay config lists them)", name)
		}
	}
	cfg, err := config.Load(nil, func(k string) (string, bool) { v, ok := e[k]; return v, ok }, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("the relay refuses the chart's environment: %v", err)
	}
	if e["AWS_REGION"] == "" {
		t.Error("AWS_REGION not set")
	}

	// Listeners: inbound and health on all interfaces at the container ports, admin on loopback.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	inHost, inPort := listenPort(t, cfg.Listen)
	hHost, hPort := listenPort(t, cfg.HealthListen)
	if http && (inHost != "0.0.0.0" || inPort != ports["inbound"]) {
		t.Errorf("RELAY_LISTEN %s does not serve container port inbound %d", cfg.Listen, ports["inbound"])
	}
	if hHost != "0.0.0.0" || hPort != ports["health"] || hPort != 8081 {
		t.Errorf("RELAY_HEALTH_LISTEN %s does not serve container port health %d (8081)", cfg.HealthListen, ports["health"])
	}
	if aHost, _ := listenPort(t, cfg.AdminListen); !net.ParseIP(aHost).IsLoopback() {
		t.Errorf("RELAY_ADMIN_LISTEN %s is not loopback", cfg.AdminListen)
	}
	if _, ok := ports["health"]; !ok || len(ports) != map[bool]int{true: 2, false: 1}[http] {
		t.Errorf("container ports %v, want health, and inbound with the http intake (%v) only", ports, http)
	}

	// Probes: all three, HTTP on the health port, never the inbound port.
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"startup", c.StartupProbe, "/livez"},
		{"liveness", c.LivenessProbe, "/livez"},
		{"readiness", c.ReadinessProbe, "/readyz"},
	} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("%s probe: want an httpGet probe", pr.name)
			continue
		}
		if pr.probe.HTTPGet.Path != pr.path {
			t.Errorf("%s probe path %q, want %q", pr.name, pr.probe.HTTPGet.Path, pr.path)
		}
		if p := pr.probe.HTTPGet.Port; p.String() != "health" {
			t.Errorf("%s probe port %s, want the named port health", pr.name, p.String())
		}
		if n := portNumber(t, c, pr.probe.HTTPGet.Port); n != hPort || n == inPort || n == 8080 {
			t.Errorf("%s probe on port %d; health is %d, inbound %d", pr.name, n, hPort, inPort)
		}
	}

	// Security.
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v: want non-root 65532 with RuntimeDefault seccomp", psc)
	}
	if psc != nil && (psc.FSGroup == nil || *psc.FSGroup != 65532) {
		t.Error("pod securityContext: want fsGroup 65532 so the spool volume is writable")
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
		t.Errorf("container securityContext %+v: want read-only root, no privilege escalation, non-root, drop ALL", sc)
	}

	// Drain: a sleep preStop (no exec: the image has no shell) and a grace period beyond it plus the relay's drain.
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Exec != nil {
		t.Fatal("preStop: want the lifecycle sleep action")
	}
	preStop := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if preStop <= 0 {
		t.Error("preStop sleep is 0")
	}
	if spec.TerminationGracePeriodSeconds == nil {
		t.Fatal("no terminationGracePeriodSeconds")
	}
	grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	if grace <= preStop+cfg.ShutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %v is not more than preStop %v + shutdown timeout %v", grace, preStop, cfg.ShutdownTimeout)
	}

	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m
	}
	if r.sts != nil {
		checkSpoolClaim(t, r, cfg.SpoolDir, mounts)
	} else {
		checkDataEmptyDir(t, r, cfg.SpoolDir, mounts)
	}

	// Aliases: a ConfigMap volume at the directory of RELAY_ALIASES_FILE, holding a valid alias file.
	m, ok := mounts["aliases"]
	if !ok || path.Dir(cfg.AliasesFile) != m.MountPath {
		t.Fatalf("RELAY_ALIASES_FILE %s is not in the aliases mount %+v", cfg.AliasesFile, m)
	}
	var cmName string
	for _, v := range spec.Volumes {
		if v.Name == "aliases" && v.ConfigMap != nil {
			cmName = v.ConfigMap.Name
		}
	}
	if cm, ok := r.cms[cmName]; ok {
		data, ok := cm.Data[path.Base(cfg.AliasesFile)]
		if !ok {
			t.Fatalf("ConfigMap %s has no key %s", cmName, path.Base(cfg.AliasesFile))
		}
		if _, err := aliases.Parse([]byte(data)); err != nil {
			t.Errorf("the rendered alias file does not load: %v\n%s", err, data)
		}
		if r.pod().Annotations["checksum/aliases"] == "" {
			t.Error("no checksum/aliases annotation: alias changes would not roll the pods")
		}
	}

	if spec.ServiceAccountName != r.sa.Name {
		t.Errorf("pods use service account %q, chart created %q", spec.ServiceAccountName, r.sa.Name)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
	if r.sts != nil {
		headless, ok := r.services[r.sts.Spec.ServiceName]
		if !ok || headless.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("serviceName %q is not a headless Service of the chart", r.sts.Spec.ServiceName)
		}
	}
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	p, dir = path.Clean(p), path.Clean(dir)
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func podLabels(r *rendered) labels.Set { return labels.Set(r.pod().Labels) }

// checkServices: the headless Service, and the inbound one with the http intake only.
func checkServices(t *testing.T, r *rendered, http bool) {
	t.Helper()
	if want := map[bool]int{true: 2, false: 1}[http]; len(r.services) != want {
		t.Errorf("%d Services, want %d: the headless one, and the inbound one with the http intake (%v)", len(r.services), want, http)
	}
	for name, s := range r.services {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels(r)) || len(s.Spec.Selector) == 0 {
			t.Errorf("Service %s does not select the pods", name)
		}
		for _, p := range s.Spec.Ports {
			if p.TargetPort.String() != "inbound" && p.TargetPort.String() != "health" {
				t.Errorf("Service %s exposes target port %s", name, p.TargetPort.String())
			}
			if p.Port == 8082 {
				t.Errorf("Service %s exposes the admin port", name)
			}
		}
	}
	in, ok := r.services[r.name()]
	if http && (!ok || len(in.Spec.Ports) != 1 || in.Spec.Ports[0].TargetPort.String() != "inbound") {
		t.Errorf("inbound Service %s: want exactly the inbound port", r.name())
	}
	if !http && ok {
		t.Errorf("inbound Service %s rendered without the http intake", r.name())
	}
}

func checkPolicies(t *testing.T, r *rendered, http bool) {
	t.Helper()
	if r.pdb == nil {
		t.Error("no PodDisruptionBudget")
	} else if sel, err := metav1.LabelSelectorAsSelector(r.pdb.Spec.Selector); err != nil || !sel.Matches(podLabels(r)) {
		t.Error("PodDisruptionBudget does not select the pods")
	}
	if r.hpa != nil {
		ref := r.hpa.Spec.ScaleTargetRef
		if ref.APIVersion != "apps/v1" || ref.Kind != r.kind() || ref.Name != r.name() {
			t.Errorf("HPA scales %s %s %s, want apps/v1 %s %s", ref.APIVersion, ref.Kind, ref.Name, r.kind(), r.name())
		}
		if r.replicas() != nil {
			t.Errorf("replicas set on a %s the HPA scales: every upgrade would reset it", r.kind())
		}
		var cpu bool
		for _, m := range r.hpa.Spec.Metrics {
			cpu = cpu || (m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource.Name == corev1.ResourceCPU)
		}
		if !cpu {
			t.Error("HPA does not scale on CPU")
		}
		if r.deploy != nil {
			checkScaleIn(t, r.hpa)
		}
	} else if n := r.replicas(); n == nil || *n < 1 {
		t.Error("no HPA and no replicas")
	}
	if np := r.netpol; np != nil {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(podLabels(r)) {
			t.Error("NetworkPolicy does not select the pods")
		}
		in := map[string]bool{}
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				in[p.Port.String()] = true
			}
		}
		if in["inbound"] != http || !in["health"] || len(in) != map[bool]int{true: 2, false: 1}[http] {
			t.Errorf("NetworkPolicy ingress ports %v, want health, and inbound with the http intake (%v)", in, http)
		}
		checkEgress(t, np, r.deploy != nil)
	}
}

func checkMonitoring(t *testing.T, r *rendered) {
	t.Helper()
	if sm := r.sm; sm != nil {
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil {
			t.Fatal(err)
		}
		var selected []*corev1.Service
		for _, s := range r.services {
			if sel.Matches(labels.Set(s.Labels)) {
				selected = append(selected, s)
			}
		}
		if len(selected) != 1 || len(sm.Spec.Endpoints) != 1 {
			t.Fatalf("ServiceMonitor selects %d Services with %d endpoints, want 1 and 1", len(selected), len(sm.Spec.Endpoints))
		}
		ep := sm.Spec.Endpoints[0]
		var found bool
		for _, p := range selected[0].Spec.Ports {
			found = found || (p.Name == ep.Port && p.TargetPort.String() == "health")
		}
		if !found || ep.Path != "/metrics" {
			t.Errorf("ServiceMonitor scrapes port %q path %q, want the health port's /metrics", ep.Port, ep.Path)
		}
		if !ep.HonorLabels {
			t.Error("ServiceMonitor must honor labels: the relay's label service collides with the target label service")
		}
		if !selected[0].Spec.PublishNotReadyAddresses {
			t.Error("the metrics Service must publish not-ready pods: a full spool makes a pod not ready")
		}
	}
	if r.rule != nil {
		b, err := os.ReadFile(path.Join(chartDir, "files/alerts.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var want ruleFile
		if err := yaml.UnmarshalStrict(b, &want); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(want) != fmt.Sprint(r.rule.Spec) || len(want.Groups) == 0 {
			t.Error("PrometheusRule spec differs from files/alerts.yaml")
		}
	}
}

func checkIngress(t *testing.T, r *rendered) {
	t.Helper()
	for _, rule := range r.ingress.Spec.Rules {
		for _, p := range rule.HTTP.Paths {
			if p.Path != "/sns" || p.Backend.Service == nil || p.Backend.Service.Name != r.name() ||
				p.Backend.Service.Port.Name != "inbound" {
				t.Errorf("Ingress routes %s to %+v, want only /sns to the inbound Service", p.Path, p.Backend.Service)
			}
		}
	}
}

// TestChartRefuses checks that values the relay could not run with fail
// the render with a message naming them.
func TestChartRefuses(t *testing.T) {
	with := func(mut func(map[string]any)) map[string]any {
		v := required()
		mut(v)
		return v
	}
	for _, tc := range []struct {
		name string
		set  map[string]any
		kube string
		want string
	}{
		{"no topic", with(func(v map[string]any) { v["config"] = map[string]any{"RELAY_SNS_TOPIC_ARNS": ""} }), "", "RELAY_SNS_TOPIC_ARNS is required"},
		{"no region", with(func(v map[string]any) { v["aws"] = map[string]any{"region": ""} }), "", "aws.region is required"},
		{"listener in config", with(func(v map[string]any) {
			v["config"].(map[string]any)["RELAY_LISTEN"] = "0.0.0.0:9090"
		}), "", "config.RELAY_LISTEN is set by the chart"},
		{"shutdown in config", with(func(v map[string]any) {
			v["config"].(map[string]any)["RELAY_SHUTDOWN_TIMEOUT"] = "60s"
		}), "", "config.RELAY_SHUTDOWN_TIMEOUT is set by the chart"},
		{"not a RELAY variable", with(func(v map[string]any) {
			v["config"].(map[string]any)["AWS_REGION"] = "eu-west-1"
		}), "", "config holds RELAY_* variables only"},
		{"no grace margin", with(func(v map[string]any) {
			v["shutdown"] = map[string]any{"graceMarginSeconds": 0}
		}), "", "graceMarginSeconds must be at least 1"},
		{"kubernetes without the sleep action", required(), "v1.29.0", "kubeVersion"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := RenderChart(context.Background(), chartDir, RenderOptions{Set: tc.set, KubeVersion: tc.kube})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("render error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestChartRollsOnAliasChange checks the checksum annotation follows the alias content.
func TestChartRollsOnAliasChange(t *testing.T) {
	a := render(t, nil, required())
	changed := required()
	changed["aliases"] = map[string]any{"content": map[string]any{
		"domains": []any{"relay.example.com"},
		"aliases": []any{map[string]any{"address": "x@relay.example.com", "forward_to": []any{"y@example.org"}}},
	}}
	b := render(t, nil, changed)
	ka, kb := a.pod().Annotations["checksum/aliases"], b.pod().Annotations["checksum/aliases"]
	if ka == "" || ka == kb {
		t.Errorf("checksum/aliases %q then %q: want a change", ka, kb)
	}
}

// TestAlertsSingleSource checks deploy/prometheus/alerts.yaml is the chart's file.
func TestAlertsSingleSource(t *testing.T) {
	a, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path.Join(chartDir, "files/alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("prometheus/alerts.yaml differs from helm/mailrelay/files/alerts.yaml: keep it a link")
	}
}
