package deploy

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/releaseutil"
	"sigs.k8s.io/yaml"
)

// Manifest is one rendered Kubernetes object.
type Manifest struct {
	Source string // template file, e.g. mailrelay/templates/statefulset.yaml
	Kind   string
	Name   string
	YAML   []byte
}

// RenderOptions say what to render the chart with.
type RenderOptions struct {
	ReleaseName string // default "mailrelay"
	Namespace   string // default "mailrelay"
	KubeVersion string // default "v1.31.0"
	// ValuesFiles are merged in order over the chart's values.yaml, then Set.
	ValuesFiles []string
	Set         map[string]any
}

// RenderChart renders the chart in chartDir as `helm template` does
// (install, dry run, client only: no cluster), and returns every object
// sorted by kind and name, and the rendered NOTES.txt.
func RenderChart(ctx context.Context, chartDir string, opts RenderOptions) ([]Manifest, string, error) {
	if opts.ReleaseName == "" {
		opts.ReleaseName = "mailrelay"
	}
	if opts.Namespace == "" {
		opts.Namespace = "mailrelay"
	}
	if opts.KubeVersion == "" {
		opts.KubeVersion = "v1.31.0"
	}
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return nil, "", fmt.Errorf("loading chart %s: %w", chartDir, err)
	}
	vals := map[string]any{}
	for _, f := range opts.ValuesFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, "", fmt.Errorf("values file: %w", err)
		}
		var v map[string]any
		if err := yaml.Unmarshal(b, &v); err != nil {
			return nil, "", fmt.Errorf("values file %s: %w", f, err)
		}
		vals = chartutil.CoalesceTables(v, vals)
	}
	if opts.Set != nil {
		vals = chartutil.CoalesceTables(deepCopy(opts.Set), vals)
	}
	kv, err := chartutil.ParseKubeVersion(opts.KubeVersion)
	if err != nil {
		return nil, "", fmt.Errorf("kube version: %w", err)
	}

	install := action.NewInstall(&action.Configuration{})
	install.DryRun = true
	install.DryRunOption = "client"
	install.ClientOnly = true
	install.Replace = true
	install.IncludeCRDs = true
	install.ReleaseName = opts.ReleaseName
	install.Namespace = opts.Namespace
	install.KubeVersion = kv
	rel, err := install.RunWithContext(ctx, chrt, vals)
	if err != nil {
		return nil, "", fmt.Errorf("rendering chart: %w", err)
	}

	var out []Manifest
	for _, doc := range releaseutil.SplitManifests(rel.Manifest) {
		src := ""
		if strings.HasPrefix(doc, "---\n") {
			doc = strings.TrimPrefix(doc, "---\n")
		}
		if strings.HasPrefix(doc, "# Source: ") {
			line, rest, _ := strings.Cut(doc, "\n")
			src, doc = strings.TrimPrefix(line, "# Source: "), rest
		}
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			return nil, "", fmt.Errorf("%s: %w", src, err)
		}
		out = append(out, Manifest{Source: src, Kind: meta.Kind, Name: meta.Metadata.Name, YAML: []byte(doc)})
	}
	if len(rel.Hooks) > 0 {
		return nil, "", fmt.Errorf("chart has %d hooks; the checks do not cover hooks", len(rel.Hooks))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Name < out[j].Name
	})
	return out, rel.Info.Notes, nil
}

// deepCopy copies nested maps so that coalescing never changes the caller's.
func deepCopy(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if mm, ok := v.(map[string]any); ok {
			v = deepCopy(mm)
		}
		out[k] = v
	}
	return out
}
