# mailrelay — see README.md. Every target works on a fresh machine.
GO      ?= go
BIN     := bin/mailrelay
PKGS    := ./...
FUZZTIME ?= 5s

.PHONY: all build run test vet fuzz bench e2e incident clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/mailrelay

# The playground: the real relay with in-process S3/SNS/SES stand-ins.
run:
	$(GO) run ./cmd/mailrelay dev

# The README's test command: unit and in-process end-to-end tests with the
# race detector, vet, and the deploy checks (Helm chart, Terraform,
# dashboards and alerts; a separate module so Helm stays out of go.mod).
test: vet
	$(GO) test -race -count=1 $(PKGS)
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 ./...

vet:
	$(GO) vet $(PKGS)

# Run every fuzz target briefly (FUZZTIME each).
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

# Against a real LocalStack on this machine (host mode; the venv is
# installed once by localstack/run.sh): the real binary as a separate process,
# the corpus of sample mails, and a kill -9 with restart mid-run.
e2e: build
	localstack/run.sh start
	MAILRELAY_BIN=$(CURDIR)/$(BIN) $(GO) test -tags e2e -count=1 -v -timeout 10m ./localstack/e2e

# Replay incident 004 against the in-process relay: 200/s for 2 minutes while
# S3 turns slow (30 s) and then hangs; prints the report (health, acks,
# breakers, backlog, drain, lost and duplicated forwards).
incident:
	$(GO) run ./cmd/mailrelay-load

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf bin
