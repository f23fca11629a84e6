package config

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

const topic = "arn:aws:sns:us-east-1:123456789012:inbound"

func TestLoadPrecedence(t *testing.T) {
	c, err := Load([]string{"--workers", "3"}, env(map[string]string{
		"RELAY_SNS_TOPIC_ARNS": topic + ", arn:aws:sns:us-east-1:123456789012:other ,",
		"RELAY_WORKERS":        "9", // the flag wins
		"RELAY_SPOOL_DIR":      "/var/spool/relay",
		"RELAY_RETRY_MIN":      "1s",
		"RELAY_DROP_SPAM":      "false",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Workers != 3 {
		t.Errorf("workers = %d, want the flag's 3", c.Workers)
	}
	if len(c.SNSTopicARNs) != 2 || c.SNSTopicARNs[1] != "arn:aws:sns:us-east-1:123456789012:other" {
		t.Errorf("topics = %q", c.SNSTopicARNs)
	}
	if c.SpoolDir != "/var/spool/relay" || c.RetryMin != time.Second || c.DropSpam {
		t.Errorf("env not applied: %+v", c)
	}
	if c.SpamAction != "" || c.DMARCQuarantineAction != "tag" || c.SPFAction != "forward" || c.SubjectTag != "[SPAM]" || c.ReplyKey != "" || c.ReplyMaxAge != 90*24*time.Hour {
		t.Errorf("verdict or reply defaults changed: %+v", c)
	}
	if c.Listen != "127.0.0.1:8080" || c.HealthListen != "127.0.0.1:8081" {
		t.Errorf("contract defaults changed: %s %s", c.Listen, c.HealthListen)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no topic", nil, nil, "sns-topic-arns"},
		{"bad env int", nil, map[string]string{"RELAY_SNS_TOPIC_ARNS": topic, "RELAY_WORKERS": "many"}, "RELAY_WORKERS"},
		{"same listeners", []string{"--health-listen", "127.0.0.1:8080"}, map[string]string{"RELAY_SNS_TOPIC_ARNS": topic}, "must differ"},
		{"bad api", []string{"--ses-api", "smtp"}, map[string]string{"RELAY_SNS_TOPIC_ARNS": topic}, "ses-api"},
		{"retry storm", []string{"--aws-max-attempts", "5"}, map[string]string{"RELAY_SNS_TOPIC_ARNS": topic}, "hidden retries"},
		{"not an arn", []string{"--sns-topic-arns", "inbound"}, nil, "not an ARN"},
		{"database not postgres", nil, map[string]string{"RELAY_SNS_TOPIC_ARNS": topic, "RELAY_DATABASE_URL": "mysql://db/aliases"}, "database-url"},
		{"unknown flag", []string{"--nope"}, nil, "nope"},
		{"stray arg", []string{"--sns-topic-arns", topic, "extra"}, nil, "unexpected"},
		{"bad action", []string{"--spam-action", "bounce"}, map[string]string{"RELAY_SNS_TOPIC_ARNS": topic}, "--spam-action"},
		{"bad env action", nil, map[string]string{"RELAY_SNS_TOPIC_ARNS": topic, "RELAY_DKIM_ACTION": "reject"}, "--dkim-action"},
		{"bad subject tag", []string{"--subject-tag", " [X]"}, map[string]string{"RELAY_SNS_TOPIC_ARNS": topic}, "--subject-tag"},
		{"short reply key", nil, map[string]string{"RELAY_SNS_TOPIC_ARNS": topic, "RELAY_REPLY_KEY": "secret"}, "RELAY_REPLY_KEY"},
		{"previous key alone", nil, map[string]string{"RELAY_SNS_TOPIC_ARNS": topic, "RELAY_REPLY_KEY_PREVIOUS": strings.Repeat("k", 32)}, "without --reply-key"},
		{"reply max age", []string{"--reply-max-age", "0s"}, map[string]string{"RELAY_SNS_TOPIC_ARNS": topic}, "--reply-max-age"},
		{"delete batch too long", []string{"--s3-delete-batch", "2m"}, map[string]string{"RELAY_SNS_TOPIC_ARNS": topic}, "--s3-delete-batch"},
		{"negative delete batch", nil, map[string]string{"RELAY_SNS_TOPIC_ARNS": topic, "RELAY_S3_DELETE_BATCH": "-1s"}, "--s3-delete-batch"},
		{"bad configuration set", nil, map[string]string{"RELAY_SNS_TOPIC_ARNS": topic, "RELAY_SES_CONFIGURATION_SET": "relay.feedback"}, "--ses-configuration-set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.args, env(tt.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestMarkdownTableListsEveryFlag(t *testing.T) {
	table := MarkdownTable()
	for _, f := range Flags() {
		if !strings.Contains(table, "`"+f.Env+"`") {
			t.Errorf("%s missing from table", f.Env)
		}
	}
	if !strings.Contains(table, "RELAY_SPOOL_DIR") {
		t.Error("contract variable missing")
	}
}

// Every problem is reported at once, each naming its flag and variable; a
// flag that does not parse is one line in the user's words.
func TestLoadReportsEveryProblem(t *testing.T) {
	c, err := Load([]string{"--workers", "0", "--ses-api", "smtp"}, env(map[string]string{
		"RELAY_RETRY_MAX": "3", // no unit
	}), io.Discard)
	var ue *UsageError
	if !errors.As(err, &ue) || c == nil {
		t.Fatalf("err = %v (%T), config %v: want a UsageError and the config", err, err, c)
	}
	for _, want := range []string{
		"RELAY_RETRY_MAX=3 (--retry-max): a duration needs a unit, e.g. 3s",
		"--sns-topic-arns / RELAY_SNS_TOPIC_ARNS is required",
		"--workers / RELAY_WORKERS: 0: want 1..1024",
		`--ses-api / RELAY_SES_API: "smtp": want ses or sesv2`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "retry-max / RELAY_RETRY_MAX") {
		t.Errorf("the bad variable was validated again as zero:\n%v", err)
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 4 {
		t.Errorf("%d problems reported, want 4:\n%v", n, err)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--retry-min", "2"}, "--retry-min 2: a duration needs a unit, e.g. 2s (or ms, m, h)"},
		{[]string{"--retry-min=soon"}, "--retry-min soon: not a duration: want a number with a unit, e.g. 500ms, 2s, 5m, 24h"},
		{[]string{"--workers", "x"}, "--workers x: not a whole number"},
		{[]string{"--drop-spam=maybe"}, "--drop-spam=maybe: want true or false"},
		{[]string{"--nope"}, "unknown flag --nope"},
		{[]string{"--listen"}, "flag --listen needs a value"},
	} {
		var usage strings.Builder
		c, err := Load(tc.args, env(nil), &usage)
		var ue *UsageError
		if c != nil || !errors.As(err, &ue) || err.Error() != tc.want {
			t.Errorf("%q: err %q (%T), want %q", tc.args, err, err, tc.want)
		}
		if usage.Len() != 0 {
			t.Errorf("%q printed the usage:\n%s", tc.args, usage.String())
		}
	}
	var usage strings.Builder
	if _, err := Load([]string{"--help"}, env(nil), &usage); !errors.Is(err, flag.ErrHelp) ||
		!strings.Contains(usage.String(), "usage: mailrelay serve") || !strings.Contains(usage.String(), "-retry-min duration") {
		t.Errorf("--help: %v\n%s", err, usage.String())
	}
}

// TestAdminSettings: the admin token comes from the environment only, an
// admin listener off loopback needs one, and reconcile's buckets are a list.
func TestAdminSettings(t *testing.T) {
	const token = "0123456789abcdef0123"
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string // "" for no error
	}{
		{"loopback without token", []string{"--admin-listen", "127.0.0.1:8082"}, nil, ""},
		{"localhost without token", []string{"--admin-listen", "localhost:0"}, nil, ""},
		{"::1 without token", []string{"--admin-listen", "[::1]:8082"}, nil, ""},
		{"disabled", []string{"--admin-listen", ""}, nil, ""},
		{"all interfaces without token", []string{"--admin-listen", "0.0.0.0:8082"}, nil, "not a loopback address and no admin token"},
		{"empty host without token", []string{"--admin-listen", ":8082"}, nil, "RELAY_ADMIN_TOKEN"},
		{"a name without token", []string{"--admin-listen", "relay.internal:8082"}, nil, "not a loopback address"},
		{"all interfaces with token", []string{"--admin-listen", "0.0.0.0:8082"}, map[string]string{"RELAY_ADMIN_TOKEN": token}, ""},
		{"token on the command line", []string{"--admin-token", token}, nil, "on the command line is refused"},
		{"short token", nil, map[string]string{"RELAY_ADMIN_TOKEN": "abc"}, "at least 16"},
		{"token with a space", nil, map[string]string{"RELAY_ADMIN_TOKEN": "0123456789 abcdef"}, "visible ASCII"},
		{"bucket as a URL", []string{"--s3-buckets", "s3://mail"}, nil, "not a bucket name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := map[string]string{"RELAY_SNS_TOPIC_ARNS": topic}
			for k, v := range tt.env {
				e[k] = v
			}
			c, err := Load(tt.args, env(e), io.Discard)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), token) {
				t.Error("the error shows the token")
			}
			if c != nil && c.AdminToken == token && tt.name == "token on the command line" {
				t.Error("a command-line token was kept")
			}
		})
	}
	c, err := Load([]string{"--s3-buckets", "a, b,"}, env(map[string]string{"RELAY_SNS_TOPIC_ARNS": topic, "RELAY_ADMIN_TOKEN": token}), io.Discard)
	if err != nil || len(c.S3Buckets) != 2 || c.S3Buckets[1] != "b" || c.AdminToken != token {
		t.Errorf("%v %+v", err, c)
	}
}
