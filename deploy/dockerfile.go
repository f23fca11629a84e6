package deploy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Instruction is one Dockerfile instruction with its continuation lines
// joined.
type Instruction struct {
	Line int    // line of the keyword, from 1
	Cmd  string // upper case: FROM, RUN, COPY, ...
	Args string // the rest, trimmed
}

// Stage is a build stage: a FROM and the instructions up to the next one.
type Stage struct {
	Image, Name  string // FROM image [AS name]
	Instructions []Instruction
}

// ParseDockerfile reads the stages of a Dockerfile: comments and blank lines
// are skipped, lines ending in a backslash continue, parser directives
// (# syntax=...) are comments. Instructions before the first FROM other than
// ARG are an error, as is a file without FROM.
func ParseDockerfile(r io.Reader) ([]Stage, error) {
	_, stages, err := ParseDockerfileArgs(r)
	return stages, err
}

// Arg is a global build argument: an ARG before the first FROM, which FROM
// lines may use as ${NAME}.
type Arg struct {
	Name, Default string
	HasDefault    bool
}

// ParseDockerfileArgs is ParseDockerfile that also returns the global ARGs.
func ParseDockerfileArgs(r io.Reader) ([]Arg, []Stage, error) {
	var globals []Arg
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	var stages []Stage
	var cur strings.Builder
	start, n := 0, 0
	flush := func() error {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := Instruction{Line: start, Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args)}
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") { // --platform=...
				f = f[1:]
			}
			st := Stage{}
			switch {
			case len(f) == 1:
				st.Image = f[0]
			case len(f) == 3 && strings.EqualFold(f[1], "AS"):
				st.Image, st.Name = f[0], f[2]
			default:
				return fmt.Errorf("line %d: FROM %q: want IMAGE [AS NAME]", start, in.Args)
			}
			stages = append(stages, st)
			return nil
		}
		if len(stages) == 0 {
			if in.Cmd == "ARG" {
				for _, f := range strings.Fields(in.Args) {
					name, def, has := strings.Cut(f, "=")
					globals = append(globals, Arg{Name: name, Default: strings.Trim(def, `"`), HasDefault: has})
				}
				return nil
			}
			return fmt.Errorf("line %d: %s before the first FROM", start, in.Cmd)
		}
		last := &stages[len(stages)-1]
		last.Instructions = append(last.Instructions, in)
		return nil
	}
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cur.Len() == 0 {
			if trimmed == "" {
				continue
			}
			start = n
		}
		if s, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			cur.WriteString(s)
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(line)
		if err := flush(); err != nil {
			return nil, nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	if err := flush(); err != nil {
		return nil, nil, err
	}
	if len(stages) == 0 {
		return nil, nil, fmt.Errorf("no FROM")
	}
	return globals, stages, nil
}

// Find returns the stage's instructions of one kind.
func (s Stage) Find(cmd string) []Instruction {
	var out []Instruction
	for _, in := range s.Instructions {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// ExecForm decodes an instruction's JSON exec form (["a", "b"]).
func ExecForm(args string) ([]string, error) {
	var out []string
	if err := json.Unmarshal([]byte(args), &out); err != nil {
		return nil, fmt.Errorf("not the exec form %q: %w", args, err)
	}
	return out, nil
}

var (
	sha256Digest = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	argRef       = regexp.MustCompile(`^\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))$`)
)

// CheckPinned reports whether a FROM image is pinned by digest: either
// IMAGE@sha256:<64 hex>, or IMAGE@${ARG} with ARG a global build argument
// that has no default (the build fails unless a digest is given: the
// reference would end in "@") or a sha256 digest as its default.
func CheckPinned(image string, args []Arg) error {
	_, digest, ok := strings.Cut(image, "@")
	if !ok {
		return fmt.Errorf("FROM %s: not pinned by digest (IMAGE@sha256:... or IMAGE@${ARG})", image)
	}
	if sha256Digest.MatchString(digest) {
		return nil
	}
	m := argRef.FindStringSubmatch(digest)
	if m == nil {
		return fmt.Errorf("FROM %s: digest %q is neither sha256:<64 hex> nor a build argument", image, digest)
	}
	name := m[1] + m[2]
	for _, a := range args {
		if a.Name != name {
			continue
		}
		if a.HasDefault && !sha256Digest.MatchString(a.Default) {
			return fmt.Errorf("FROM %s: ARG %s defaults to %q, not a sha256 digest", image, name, a.Default)
		}
		return nil
	}
	return fmt.Errorf("FROM %s: ARG %s is not declared before the first FROM", image, name)
}
