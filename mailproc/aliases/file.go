package aliases

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// file is the YAML document. Unknown keys are an error.
type file struct {
	Domains []string `yaml:"domains"`
	Aliases []entry  `yaml:"aliases"`
}

type entry struct {
	Address   string   `yaml:"address"`
	ForwardTo []string `yaml:"forward_to"`
}

// Load reads and validates the alias file at path.
func Load(path string) (*Table, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read alias file: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("alias file %s: %w", path, err)
	}
	return t, nil
}

// Parse decodes and validates an alias file. Decoding is strict: unknown
// keys, a second YAML document and wrongly typed values are errors. Errors
// name the offending entry by its line, index and address.
//
// Validation rules:
//   - at least one domain; domains are ASCII (use the xn-- form for IDNs),
//     unique, case-insensitive;
//   - an alias address is "local@domain" or "@domain" (catch-all) on a listed
//     domain; the local part is a dot-atom without "+" (plus-addressing would
//     strip the tag before the lookup, so such an alias could never match);
//   - each alias is listed once (case-insensitively);
//   - forward_to is non-empty, holds plain ASCII addresses (no display names),
//     no duplicates, and none on a relay domain (that would loop).
func Parse(data []byte) (*Table, error) {
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty alias file")
		}
		return nil, fmt.Errorf("decode: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("decode: more than one YAML document")
	}
	lines := entryLines(data)

	t := &Table{
		domains:  map[string]struct{}{},
		exact:    map[string][]string{},
		catchAll: map[string][]string{},
	}
	if len(f.Domains) == 0 {
		return nil, errors.New("no domains listed")
	}
	for i, d := range f.Domains {
		nd := normDomain(strings.TrimSpace(d))
		if err := checkDomain(nd); err != nil {
			return nil, fmt.Errorf("domains[%d] %q: %w", i, d, err)
		}
		if _, dup := t.domains[nd]; dup {
			return nil, fmt.Errorf("domains[%d] %q: listed twice", i, d)
		}
		t.domains[nd] = struct{}{}
		t.order = append(t.order, nd)
	}

	for i, e := range f.Aliases {
		where := fmt.Sprintf("aliases[%d] (%q)", i, e.Address)
		if i < len(lines) && lines[i] > 0 {
			where = fmt.Sprintf("line %d: %s", lines[i], where)
		}
		if err := t.add(e); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	return t, nil
}

// add validates one entry and adds it to the table.
func (t *Table) add(e entry) error {
	addr := strings.TrimSpace(e.Address)
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return errors.New(`address must be "local@domain" or "@domain"`)
	}
	local, domain := strings.ToLower(addr[:at]), normDomain(addr[at+1:])
	if _, ok := t.domains[domain]; !ok {
		return fmt.Errorf("domain %q is not in domains", domain)
	}
	if local != "" {
		if err := checkLocal(local); err != nil {
			return fmt.Errorf("bad local part: %w", err)
		}
	}
	if len(e.ForwardTo) == 0 {
		return errors.New("forward_to is empty")
	}
	fw := make([]string, 0, len(e.ForwardTo))
	seen := map[string]bool{}
	for j, to := range e.ForwardTo {
		norm, err := t.checkForward(to)
		if err != nil {
			return fmt.Errorf("forward_to[%d] %q: %w", j, to, err)
		}
		if seen[strings.ToLower(norm)] {
			return fmt.Errorf("forward_to[%d] %q: listed twice", j, to)
		}
		seen[strings.ToLower(norm)] = true
		fw = append(fw, norm)
	}
	if local == "" {
		if _, dup := t.catchAll[domain]; dup {
			return fmt.Errorf("duplicate catch-all for %q", domain)
		}
		t.catchAll[domain] = fw
		return nil
	}
	key := local + "@" + domain
	if _, dup := t.exact[key]; dup {
		return fmt.Errorf("duplicate alias %q", key)
	}
	t.exact[key] = fw
	return nil
}

// checkForward validates a forward_to address and returns it with its
// domain lower-cased.
func (t *Table) checkForward(s string) (string, error) {
	s = strings.TrimSpace(s)
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return "", errors.New("address is not ASCII")
		}
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", fmt.Errorf("bad address: %w", err)
	}
	if a.Name != "" || a.Address != s {
		return "", errors.New("want a plain address (local@domain), without display name or brackets")
	}
	at := strings.LastIndexByte(s, '@')
	domain := normDomain(s[at+1:])
	if err := checkDomain(domain); err != nil {
		return "", fmt.Errorf("bad domain: %w", err)
	}
	if _, ok := t.domains[domain]; ok {
		return "", fmt.Errorf("points back into relay domain %q (mail loop)", domain)
	}
	return s[:at+1] + domain, nil
}

// checkDomain validates a lower-cased ASCII domain name.
func checkDomain(d string) error {
	if d == "" {
		return errors.New("empty domain")
	}
	if len(d) > 253 {
		return errors.New("domain longer than 253 characters")
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" {
			return errors.New("empty label")
		}
		if len(label) > 63 {
			return fmt.Errorf("label %q longer than 63 characters", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with '-'", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
			case c >= 0x80:
				return errors.New("non-ASCII domain: use the xn-- (punycode) form")
			default:
				return fmt.Errorf("invalid character %q", c)
			}
		}
	}
	return nil
}

// checkLocal validates a lower-cased alias local part: an RFC 5322
// dot-atom without "+".
func checkLocal(l string) error {
	if len(l) > 64 {
		return errors.New("longer than 64 characters")
	}
	if l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, "..") {
		return errors.New("misplaced '.'")
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case c == '+':
			return errors.New(`contains "+": plus-addressing strips "+tag" before the lookup, so this alias could never match`)
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.':
		case strings.IndexByte("!#$%&'*-/=?^_`{|}~", c) >= 0:
		default:
			return fmt.Errorf("invalid character %q", c)
		}
	}
	return nil
}

// entryLines returns the line number of each item of the top-level
// "aliases" sequence, for error messages. It is best effort: on any surprise
// it returns what it has.
func entryLines(data []byte) []int {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != "aliases" || m.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		var lines []int
		for _, item := range m.Content[i+1].Content {
			lines = append(lines, item.Line)
		}
		return lines
	}
	return nil
}
