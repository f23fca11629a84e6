package config

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestIntakeSettings(t *testing.T) {
	const queue = "https://sqs.us-east-1.amazonaws.com/123456789012/inbound"
	tests := []struct {
		name    string
		env     map[string]string
		want    string // substring of the error; "" for none
		intakes []string
	}{
		{"default is http", nil, "", []string{"http"}},
		{"sqs", map[string]string{"RELAY_INTAKE": "sqs", "RELAY_SQS_QUEUE_URL": queue}, "", []string{"sqs"}},
		{"both", map[string]string{"RELAY_INTAKE": "http, sqs", "RELAY_SQS_QUEUE_URL": queue}, "", []string{"http", "sqs"}},
		{"sqs without queue", map[string]string{"RELAY_INTAKE": "sqs"}, "--sqs-queue-url / RELAY_SQS_QUEUE_URL is required with --intake sqs", nil},
		{"queue not a URL", map[string]string{"RELAY_INTAKE": "sqs", "RELAY_SQS_QUEUE_URL": "inbound"}, "want an http(s) queue URL", nil},
		{"unknown intake", map[string]string{"RELAY_INTAKE": "smtp"}, `--intake / RELAY_INTAKE: "smtp": want http, sqs or http,sqs`, nil},
		{"empty intake", map[string]string{"RELAY_INTAKE": " , "}, "is empty", nil},
		{"visibility too short", map[string]string{"RELAY_INTAKE": "sqs", "RELAY_SQS_QUEUE_URL": queue, "RELAY_SQS_VISIBILITY_TIMEOUT": "1s"}, "want 3s..12h", nil},
		{"too many messages", map[string]string{"RELAY_INTAKE": "sqs", "RELAY_SQS_QUEUE_URL": queue, "RELAY_SQS_MAX_MESSAGES": "11"}, "want 1..10", nil},
		{"sqs settings ignored for http", map[string]string{"RELAY_SQS_MAX_MESSAGES": "11"}, "", []string{"http"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"RELAY_SNS_TOPIC_ARNS": topic}
			for k, v := range tt.env {
				env[k] = v
			}
			c, err := Load(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.Intake, tt.intakes) {
				t.Errorf("intake = %q, want %q", c.Intake, tt.intakes)
			}
			if c.SQSVisibilityTimeout != 30*time.Second || (tt.env["RELAY_SQS_MAX_MESSAGES"] == "" && c.SQSMaxMessages != 10) {
				t.Errorf("defaults: %+v", c)
			}
		})
	}
}
