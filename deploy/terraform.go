package deploy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// Terraform is a parsed Terraform module: the top-level blocks of its .tf
// files. It is HCL syntax only, no provider schema: what terraform validate
// and plan would add needs the providers and is not done here.
type Terraform struct {
	Blocks []*hclsyntax.Block
}

// LoadTerraform parses every .tf file in dir.
func LoadTerraform(dir string) (*Terraform, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no .tf files in %s", dir)
	}
	sort.Strings(files)
	p := hclparse.NewParser()
	tf := &Terraform{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		file, diags := p.ParseHCL(src, f)
		if diags.HasErrors() {
			return nil, diags
		}
		tf.Blocks = append(tf.Blocks, file.Body.(*hclsyntax.Body).Blocks...)
	}
	return tf, nil
}

// Find returns the top-level blocks of a type whose labels start with
// labels (resource "aws_sns_topic" finds every topic).
func (tf *Terraform) Find(typ string, labels ...string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range tf.Blocks {
		if b.Type != typ || len(b.Labels) < len(labels) {
			continue
		}
		match := true
		for i, l := range labels {
			match = match && b.Labels[i] == l
		}
		if match {
			out = append(out, b)
		}
	}
	return out
}

// functions are the Terraform functions the module may use in what the
// checks evaluate.
var functions = map[string]function.Function{
	"concat":     stdlib.ConcatFunc,
	"contains":   stdlib.ContainsFunc,
	"element":    stdlib.ElementFunc,
	"format":     stdlib.FormatFunc,
	"join":       stdlib.JoinFunc,
	"jsonencode": stdlib.JSONEncodeFunc,
	"jsondecode": stdlib.JSONDecodeFunc,
	"length":     stdlib.LengthFunc,
	"lower":      stdlib.LowerFunc,
	"max":        stdlib.MaxFunc,
	"merge":      stdlib.MergeFunc,
	"min":        stdlib.MinFunc,
	"split":      stdlib.SplitFunc,
	"startswith": function.New(&function.Spec{
		Params: []function.Parameter{{Name: "str", Type: cty.String}, {Name: "prefix", Type: cty.String}},
		Type:   function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.BoolVal(strings.HasPrefix(args[0].AsString(), args[1].AsString())), nil
		},
	}),
	"toset":  stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
	"tolist": stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
	"upper":  stdlib.UpperFunc,
}

// EvalContext evaluates expressions as a plan would before anything
// exists: variables take their defaults (overridden by vars; unknown if
// there is none), locals are computed, and attributes of resources and data
// sources are unknown.
func (tf *Terraform) EvalContext(vars map[string]cty.Value) (*hcl.EvalContext, error) {
	v := map[string]cty.Value{}
	for _, b := range tf.Find("variable") {
		name := b.Labels[0]
		v[name] = cty.DynamicVal
		if a, ok := b.Body.Attributes["default"]; ok {
			val, diags := a.Expr.Value(nil)
			if diags.HasErrors() {
				return nil, fmt.Errorf("variable %s default: %w", name, diags)
			}
			v[name] = val
		}
		if val, ok := vars[name]; ok {
			v[name] = val
		}
	}
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(v)}, Functions: functions}

	// Resources and data sources: known to exist, attributes unknown.
	types := map[string]map[string]cty.Value{}
	data := map[string]map[string]cty.Value{}
	for _, b := range tf.Blocks {
		switch {
		case b.Type == "resource" && len(b.Labels) == 2:
			if types[b.Labels[0]] == nil {
				types[b.Labels[0]] = map[string]cty.Value{}
			}
			types[b.Labels[0]][b.Labels[1]] = cty.DynamicVal
		case b.Type == "data" && len(b.Labels) == 2:
			if data[b.Labels[0]] == nil {
				data[b.Labels[0]] = map[string]cty.Value{}
			}
			data[b.Labels[0]][b.Labels[1]] = cty.DynamicVal
		}
	}
	for t, names := range types {
		ctx.Variables[t] = cty.ObjectVal(names)
	}
	d := map[string]cty.Value{}
	for t, names := range data {
		d[t] = cty.ObjectVal(names)
	}
	ctx.Variables["data"] = cty.ObjectVal(d)

	// Locals may refer to each other: evaluate in rounds until all are done.
	pending := map[string]hcl.Expression{}
	for _, b := range tf.Find("locals") {
		for name, a := range b.Body.Attributes {
			pending[name] = a.Expr
		}
	}
	locals := map[string]cty.Value{}
	for round := 0; len(pending) > 0; round++ {
		if round > len(pending)+1 {
			names := make([]string, 0, len(pending))
			for n := range pending {
				names = append(names, n)
			}
			sort.Strings(names)
			return nil, fmt.Errorf("locals cannot be evaluated (cycle or unknown reference): %s", strings.Join(names, ", "))
		}
		ctx.Variables["local"] = cty.ObjectVal(locals)
		for name, expr := range pending {
			val, diags := expr.Value(ctx)
			if diags.HasErrors() {
				continue
			}
			locals[name] = val
			delete(pending, name)
		}
	}
	ctx.Variables["local"] = cty.ObjectVal(locals)
	return ctx, nil
}

// CheckReferences reports references to variables, locals, resources and
// data sources that the module does not declare (a typo terraform validate
// would find).
func (tf *Terraform) CheckReferences() error {
	declared := map[string]bool{}
	for _, b := range tf.Blocks {
		switch b.Type {
		case "variable":
			declared["var."+b.Labels[0]] = true
		case "resource":
			declared[b.Labels[0]+"."+b.Labels[1]] = true
		case "data":
			declared["data."+b.Labels[0]+"."+b.Labels[1]] = true
		case "locals":
			for name := range b.Body.Attributes {
				declared["local."+name] = true
			}
		}
	}
	var errs []error
	var walk func(body *hclsyntax.Body, iterators map[string]bool)
	check := func(expr hclsyntax.Expression, iterators map[string]bool) {
		for _, t := range expr.Variables() {
			root := t.RootName()
			var key string
			switch root {
			case "each", "count", "path", "terraform", "self", "module":
				continue
			case "var", "local":
				key = root + "." + traverseName(t, 1)
			case "data":
				key = "data." + traverseName(t, 1) + "." + traverseName(t, 2)
			default:
				if iterators[root] {
					continue
				}
				key = root + "." + traverseName(t, 1)
			}
			if !declared[key] {
				r := t.SourceRange()
				errs = append(errs, fmt.Errorf("%s:%d: %s is not declared", r.Filename, r.Start.Line, key))
			}
		}
	}
	walk = func(body *hclsyntax.Body, iterators map[string]bool) {
		for _, a := range body.Attributes {
			check(a.Expr, iterators)
		}
		for _, b := range body.Blocks {
			it := iterators
			if b.Type == "dynamic" && len(b.Labels) == 1 {
				it = map[string]bool{b.Labels[0]: true}
				for k := range iterators {
					it[k] = true
				}
			}
			walk(b.Body, it)
		}
	}
	for _, b := range tf.Blocks {
		body := b.Body
		if b.Type == "variable" {
			// type = string is a type constraint, not a reference.
			body = &hclsyntax.Body{Blocks: b.Body.Blocks, Attributes: hclsyntax.Attributes{}}
			for name, a := range b.Body.Attributes {
				if name != "type" {
					body.Attributes[name] = a
				}
			}
		}
		walk(body, map[string]bool{})
	}
	return errors.Join(errs...)
}

// traverseName is the attribute name of step i of a traversal, or "?".
func traverseName(t hcl.Traversal, i int) string {
	if i >= len(t) {
		return "?"
	}
	if a, ok := t[i].(hcl.TraverseAttr); ok {
		return a.Name
	}
	return "?"
}
