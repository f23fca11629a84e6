package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/inbound/admin"
)

// adminCommand describes a `mailrelay NOUN VERB [TARGET] [flags]` command
// that talks to the admin API (alias, destination).
type adminCommand struct {
	noun, usage string
	verbs       []string // the verbs, in the order the usage gives them
	untargeted  []string // verbs that take no TARGET
	target      string   // what TARGET is, for messages ("alias address")
	// flags, if set, registers a verb's own flags.
	flags func(verb string, fs *flag.FlagSet)
}

// adminCall is one parsed call: the verb, its target, and the client.
type adminCall struct {
	verb, target string
	client       *admin.Client
}

// parse checks args (the words after the noun), registers --admin and the
// verb's flags, and takes the TARGET before or after the flags. Mistakes
// are usage errors (exit 2).
func (c adminCommand) parse(args []string, stdout, stderr io.Writer) (adminCall, error) {
	want := strings.Join(c.verbs[:len(c.verbs)-1], ", ") + " or " + c.verbs[len(c.verbs)-1]
	if len(args) == 0 {
		fmt.Fprint(stderr, c.usage)
		return adminCall{}, &config.UsageError{Err: fmt.Errorf("%s: want %s", c.noun, want)}
	}
	verb := args[0]
	switch {
	case verb == "-h" || verb == "--help" || verb == "help":
		fmt.Fprint(stdout, c.usage)
		return adminCall{}, flag.ErrHelp
	case !slices.Contains(c.verbs, verb):
		return adminCall{}, &config.UsageError{Err: fmt.Errorf("%s: unknown subcommand %q (want %s)", c.noun, verb, want)}
	}
	fs := flag.NewFlagSet(c.noun+" "+verb, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), c.usage+"flags of 'mailrelay "+c.noun+" "+verb+"':\n")
		fs.PrintDefaults()
	}
	adminURL := adminFlag(fs, "")
	if c.flags != nil {
		c.flags(verb, fs)
	}
	targeted := !slices.Contains(c.untargeted, verb)
	var target string
	rest := args[1:]
	if targeted && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		target, rest = rest[0], rest[1:]
	}
	if err := config.ParseFlags(fs, rest, stdout); err != nil {
		return adminCall{}, err
	}
	switch {
	case !targeted:
		if fs.NArg() > 0 {
			return adminCall{}, &config.UsageError{Err: fmt.Errorf("%s %s: unexpected arguments %q", c.noun, verb, fs.Args())}
		}
	case target == "" && fs.NArg() == 1:
		target = fs.Arg(0)
	case target == "" || fs.NArg() > 0:
		return adminCall{}, &config.UsageError{Err: fmt.Errorf("%s %s: want exactly one %s", c.noun, verb, c.target)}
	}
	return adminCall{verb: verb, target: target, client: adminClientOS(*adminURL)}, nil
}

// do makes the call and prints the answer as indented JSON.
func (a adminCall) do(ctx context.Context, stdout io.Writer, method, path string, in any) error {
	var body json.RawMessage
	if err := a.client.Do(ctx, method, path, in, &body); err != nil {
		return adminError(err, a.client)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, bytes.TrimSpace(body), "", "  "); err != nil {
		return fmt.Errorf("admin API: the answer is not JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err := stdout.Write(out.Bytes())
	return err
}
