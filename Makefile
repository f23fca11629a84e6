# mailrelay — see README.md. Every target works on a fresh machine.
#
# Long steps say what they do: each starts with a "==>" line, and while one
# runs a "... still" line follows every $(TICK) seconds, so nothing is silent
# for long (the first build compiles for minutes on a cold cache).
GO      ?= go
# Go 1.27.3 carries standard-library security fixes that go.mod's 1.26.8
# lacks; the go command downloads it from the module proxy once (~76 MB).
GOTOOLCHAIN ?= go1.27.3
export GOTOOLCHAIN
BIN     := bin/mailrelay
PKGS    := ./...
FUZZTIME ?= 5s
TICK    ?= 20
DEV_FLAGS ?=
# BIN as a command: ./bin/mailrelay, or BIN itself when absolute.
BIN_EXEC = $(if $(filter /%,$(BIN)),$(BIN),./$(BIN))

# The groups of `make test`, each announced before it runs; together they
# must be every package (`make test` checks that first).
TEST_GROUPS ?= ./telemetry/... ./health/... ./mailproc/... ./inbound/... ./awsclient/... \
	./cmd/mailrelay/config/... ./cmd/mailrelay/recovery/... ./cmd/mailrelay/devstack/... \
	./cmd/mailrelay ./cmd/mailrelay/relay/... ./cmd/mailrelay/chaos/... ./cmd/mailrelay-load/... ./cmd/mailrelay-bench/... \
	./localstack/... ./docs/...

# $(call step,WHAT,COMMAND): print "==> WHAT", run COMMAND with a "... still
# WHAT (Ns)" line every $(TICK) s, then the time it took; fails as COMMAND
# does. WHAT and COMMAND must not contain commas.
step = printf '\n==> %s\n' "$(1)"; s0=$$(date +%s); \
	( trap 'kill $$sp 2>/dev/null; exit 0' TERM; while :; do sleep $(TICK) & sp=$$!; wait $$sp; \
	  printf '    ... still %s (%ss)\n' "$(1)" $$(( $$(date +%s) - s0 )); done ) & tick=$$!; \
	rc=0; $(2) || rc=$$?; kill $$tick 2>/dev/null; wait $$tick 2>/dev/null; \
	printf '    done in %ss: %s\n' $$(( $$(date +%s) - s0 )) "$(1)"; [ $$rc -eq 0 ]

.PHONY: bench-all all build deps run test test-groups vet vulncheck fuzz bench e2e incident clean

all: build

# Go modules (~0.9 GB on a fresh machine, once): one "# get" line per download.
deps:
	@$(call step,Go $$($(GO) env GOVERSION) (go.mod wants $$(sed -n 's/^go //p' go.mod)); downloading modules into $$($(GO) env GOMODCACHE) (first time ~0.9 GB),$(GO) mod download -x 2>&1 | grep --line-buffered '^# get .*zip$$' || true)

# bin/mailrelay. On a cold cache this compiles for minutes (~2 GB of build
# cache in $(go env GOCACHE)); afterwards it takes seconds.
build: deps
	@$(call step,compiling $(BIN) (cold cache: minutes; later: seconds),$(GO) build -o $(BIN) ./cmd/mailrelay)

# The playground: the real relay with in-process S3/SNS/SES stand-ins. The
# binary runs in make's place (no shell in between), so Ctrl-C reaches it,
# it drains, says "stopped" and exits 0, and make reports no error (GNU make
# itself still ends by the SIGINT it got, as any interrupted make does).
# DEV_FLAGS are extra `mailrelay dev` flags, e.g. DEV_FLAGS='--dir /tmp/dev'.
run: build
	@printf '\n==> starting the playground: %s dev %s(Ctrl-C stops it)\n\n' $(BIN) "$(DEV_FLAGS)"
	@$(BIN_EXEC) dev $(DEV_FLAGS)

# The README's test command: unit and in-process end-to-end tests with the
# race detector, vet, and the deploy checks (Helm chart, Terraform,
# dashboards and alerts; a separate module so Helm stays out of go.mod).
# Each group is announced before it runs.
test: deps test-groups
	@$(call step,compiling every package (go build ./...),$(GO) build $(PKGS))
	@set -e; n=0; total=$(words $(TEST_GROUPS)); for g in $(TEST_GROUPS); do n=$$((n+1)); \
	  $(call step,test $$n/$$total: go vet + go test -race $$g,$(GO) vet $$g && $(GO) test -race -count=1 $$g); \
	done
	@$(call step,deploy checks: downloading the deploy module's modules (Helm; first time ~0.5 GB),cd deploy && $(GO) mod download)
	@$(call step,deploy checks: go vet (Helm chart; Terraform; dashboards and alerts),cd deploy && $(GO) vet ./...)
	@$(call step,deploy checks: go test,cd deploy && $(GO) test -count=1 ./...)
	@printf '\n==> make test: all passed\n'

# Every package is in exactly one of TEST_GROUPS.
test-groups:
	@grouped=" $$($(GO) list $(TEST_GROUPS) | tr '\n' ' ') "; missing=; \
	for p in $$($(GO) list $(PKGS)); do case "$$grouped" in *" $$p "*) ;; *) missing="$$missing $$p";; esac; done; \
	if [ -n "$$missing" ]; then echo "Makefile: TEST_GROUPS misses:$$missing" >&2; exit 1; fi

vet:
	@$(call step,go vet $(PKGS),$(GO) vet $(PKGS))

# govulncheck offline, against a pinned copy of the Go vulnerability
# database; fails on a reachable finding not accepted in
# deploy/vulnerabilities.md.
vulncheck:
	@$(call step,govulncheck against the pinned vulnerability database (first time: builds the index tool and database for minutes),bash .ci/vulncheck.sh)

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
	MAILRELAY_REQUIRE_LOCALSTACK=1 $(GO) test -count=1 ./inbound/sqsintake/
	MAILRELAY_BIN=$(CURDIR)/$(BIN) $(GO) test -tags e2e -count=1 -v -timeout 10m ./localstack/e2e

# Replay incident 004 against the in-process relay: 200/s for 2 minutes while
# S3 turns slow (30 s) and then hangs; prints the report (health, acks,
# breakers, backlog, drain, lost and duplicated forwards).
incident:
	$(GO) run ./cmd/mailrelay-load

# Benchmarks of issue 13, rendered into docs/benchmarks.md (between the
# bench markers) by cmd/mailrelay-bench: intake (1/16/64 senders, and the
# open-loop 2,000/s run with the disk's fdatasync p99 and CPU per mail, in
# process and with the relay binary in a process of its own), the
# worker path per mail size on one core, the rewrite alone, the spool.
# BENCH_COUNT repeats each (medians are reported). bench-all runs every
# benchmark of every package, printed only.
BENCH_COUNT ?= 3
BENCH_OUT   ?= bin/bench.txt
bench:
	@mkdir -p bin
	$(GO) test -run '^$$' -bench 'Intake$$' -benchtime 3000x -count $(BENCH_COUNT) ./cmd/mailrelay/relay | tee $(BENCH_OUT)
	$(GO) test -run '^$$' -bench 'IntakePaced' -benchtime 30000x -count $(BENCH_COUNT) -timeout 30m ./cmd/mailrelay/relay | tee -a $(BENCH_OUT)
	$(GO) test -run '^$$' -bench 'PacedBinary' -benchtime 30000x -count $(BENCH_COUNT) -timeout 30m ./cmd/mailrelay/chaos | tee -a $(BENCH_OUT)
	GOMAXPROCS=1 $(GO) test -run '^$$' -bench 'WorkerPath' -benchmem -benchtime 2s -count $(BENCH_COUNT) ./mailproc | tee -a $(BENCH_OUT)
	GOMAXPROCS=1 $(GO) test -run '^$$' -bench 'Rewrite' -benchmem -count $(BENCH_COUNT) ./mailproc/rewrite | tee -a $(BENCH_OUT)
	$(GO) test -run '^$$' -bench 'PutSync|LifecycleMem' -benchmem -count $(BENCH_COUNT) ./mailproc/spool | tee -a $(BENCH_OUT)
	$(GO) run ./cmd/mailrelay-bench -doc docs/benchmarks.md < $(BENCH_OUT)

bench-all:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf bin
