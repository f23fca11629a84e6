# mailrelay — see README.md. Every target works on a fresh machine.
GO      ?= go
BIN     := bin/mailrelay
PKGS    := ./...
FUZZTIME ?= 5s

.PHONY: all build run test vet fuzz bench e2e clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/mailrelay

# The playground: the real relay with in-process S3/SNS/SES stand-ins.
run:
	$(GO) run ./cmd/mailrelay dev

# The README's test command: unit and in-process end-to-end tests, with the
# race detector, plus vet.
test: vet
	$(GO) test -race -count=1 $(PKGS)

vet:
	$(GO) vet $(PKGS)

# Run every fuzz target briefly (FUZZTIME each).
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf bin
