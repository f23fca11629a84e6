package config

import (
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
		{"unknown flag", []string{"--nope"}, nil, "nope"},
		{"stray arg", []string{"--sns-topic-arns", topic, "extra"}, nil, "unexpected"},
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
