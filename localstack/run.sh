#!/usr/bin/env bash
# run.sh: LocalStack 4.14 in host mode (a Python process, no Docker) for mailrelay's CI, e2e
# tests and Makefile.
#
#   localstack/run.sh start   install the venv once, start LocalStack in the background (or reuse
#                             a healthy one on 127.0.0.1:$LOCALSTACK_PORT), wait for s3, ses, sns
#                             and sqs and for the init hooks (init/ready.d), print the relay's env
#   localstack/run.sh stop    stop the LocalStack this script started: TERM, then KILL
#   localstack/run.sh status  exit 0 when a healthy LocalStack answers, 3 otherwise
#   localstack/run.sh logs    the log's tail (logs -f follows it)
#   localstack/run.sh init    run the init hook again against the running LocalStack (idempotent;
#                             resends a pending subscription's confirmation)
#   localstack/run.sh env     print the relay's settings the hook wrote (sh assignments)
#   localstack/run.sh install only create/refresh the venv
#   localstack/run.sh lock    regenerate requirements.lock from requirements.in
#
# Environment:
#   LOCALSTACK_VENV           venv (default $REPO/.venv/localstack)
#   LOCALSTACK_STATE          pid file, log, env file, LocalStack's FILESYSTEM_ROOT
#                             (default $REPO/.localstack)
#   LOCALSTACK_PORT           gateway port on 127.0.0.1 (default 4566)
#   LOCALSTACK_PYTHON         interpreter for the venv, 3.12 or 3.13 (default: the newest found)
#   LOCALSTACK_START_TIMEOUT  seconds to wait for health and init hooks (default 120)
#   LOCALSTACK_STOP_TIMEOUT   seconds between TERM and KILL (default 20)
#   LOCALSTACK_DEBUG          1: LocalStack's DEBUG logging
#   LOCALSTACK_NO_UV          1: install with pip, not uv (minutes instead of seconds)
#   and the hook's variables (see init/ready.d/10-mailrelay.sh), e.g. RELAY_SNS_ENDPOINT.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
venv=${LOCALSTACK_VENV:-$repo/.venv/localstack}
state=${LOCALSTACK_STATE:-$repo/.localstack}
port=${LOCALSTACK_PORT:-4566}
url=http://127.0.0.1:$port
start_timeout=${LOCALSTACK_START_TIMEOUT:-120}
stop_timeout=${LOCALSTACK_STOP_TIMEOUT:-20}
services=s3,ses,sns,sqs
lockfile=$here/requirements.lock
pidfile=$state/localstack.pid
logfile=$state/localstack.log
envfile=$state/mailrelay.env
fsroot=$state/fs
uv_version=0.13.9 # used only when no uv is on PATH

# Python may be told not to write .pyc files (PYTHONDONTWRITEBYTECODE=1 is set on these
# machines); LocalStack then compiles ~2000 modules on every start (13 s instead of 5 s). Let it
# cache them in the venv: compiling the whole venv at install would take 27 s more.
unset PYTHONDONTWRITEBYTECODE

say() { echo "localstack/run.sh: $*" >&2; }
die() {
	say "$*"
	exit 1
}
# die_log is die with the tail of LocalStack's log.
die_log() {
	say "$*"
	if [ -s "$logfile" ]; then
		echo "---- last 60 lines of $logfile ----" >&2
		tail -n 60 "$logfile" >&2
	fi
	exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# with_lock runs "$@" holding $state/run.lock, so concurrent start/stop do not race.
with_lock() {
	mkdir -p "$state"
	exec 9>"$state/run.lock"
	flock -w 300 9 || die "could not lock $state/run.lock"
	"$@"
}

# find_python prints an interpreter for the venv. LocalStack 4.14 claims Python >= 3.10 but
# uses 3.12 syntax (PEP 695 generics in localstack/services/stores.py: S3, SNS, SQS fail to
# load on 3.11), and its image runs 3.13; pyenv's 3.13 and 3.12 are looked for first.
find_python() {
	local root=${PYENV_ROOT:-$HOME/.pyenv} c v
	local cands=()
	if [ -n "${LOCALSTACK_PYTHON:-}" ]; then
		cands=("$LOCALSTACK_PYTHON") # only this one
	else
		for v in 3.13 3.12; do
			cands+=($(ls -d "$root"/versions/"$v".*/bin/python3 2>/dev/null | sort -rV) "python$v")
		done
		cands+=(python3)
	fi
	for c in "${cands[@]}"; do
		[ -n "$c" ] || continue
		if "$c" -c 'import sys; sys.exit(not (3, 12) <= sys.version_info[:2] < (3, 14))' 2>/dev/null; then
			"$c" -c 'import sys; print(sys.executable)'
			return 0
		fi
	done
	return 1
}

# install creates the venv once; it is recreated only when requirements.lock or the
# interpreter changes (the stamp file records both).
install() {
	local py stamp want t0 uv
	py=$(find_python) || die "no Python 3.12 or 3.13 found (LocalStack 4.14 needs one; set LOCALSTACK_PYTHON)"
	# The stamp names what the venv was made from: bump recipe when install() changes.
	want="recipe=2 $(sha256sum "$lockfile" | cut -d' ' -f1) $("$py" -c 'import sys; print(sys.version)' | head -n1)"
	stamp=$venv/.mailrelay-stamp
	if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
		return 0
	fi
	t0=$(now)
	say "creating $venv with $py (LocalStack 4.14.0, requirements.lock)"
	rm -rf "$venv"
	mkdir -p "$(dirname "$venv")"
	"$py" -m venv "$venv" || die "venv creation failed"
	# uv installs the ~110 pinned packages in seconds where pip takes minutes.
	uv=$(command -v uv || true)
	if [ -n "${LOCALSTACK_NO_UV:-}" ]; then
		uv=""
	elif [ -z "$uv" ]; then
		if "$venv/bin/python" -m pip install -q --disable-pip-version-check "uv==$uv_version"; then
			uv=$venv/bin/uv
		else
			say "could not install uv; falling back to pip"
		fi
	fi
	if [ -n "$uv" ]; then
		# uv ignores pip's settings; pass on a mirror and CA bundle pip would use.
		UV_INDEX_URL=${UV_INDEX_URL:-${PIP_INDEX_URL:-}} SSL_CERT_FILE=${SSL_CERT_FILE:-${PIP_CERT:-}} \
			"$uv" pip install -q --python "$venv/bin/python" -r "$lockfile" ||
			die "uv pip install failed"
	else
		"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$lockfile" ||
			die "pip install failed"
	fi
	# LocalStack builds an index of all AWS service specs on its first start in a
	# FILESYSTEM_ROOT (~5 s, and the process keeps ~350 MB more RSS). Build it once here, the way
	# LocalStack's image does, into a static-libs directory that start links into place.
	mkdir -p "$venv/localstack-fs/usr/lib/localstack"
	OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$venv/localstack-fs" "$venv/bin/python" -m localstack.aws.spec ||
		die "building LocalStack's service catalog failed"
	echo "$want" >"$stamp"
	say "venv ready in $(since "$t0")s"
}

# health_ok succeeds when LocalStack on $url reports every service in $services available.
health_ok() {
	local body s
	body=$(curl -sf --max-time 3 "$url/_localstack/health" 2>/dev/null) || return 1
	for s in ${services//,/ }; do
		grep -Eq "\"$s\"[[:space:]]*:[[:space:]]*\"(available|running)\"" <<<"$body" || return 1
	done
}

# init_state prints "done" once the ready.d hooks ran, "error" if any init hook failed, else
# "running".
init_state() {
	local body
	body=$(curl -sf --max-time 3 "$url/_localstack/init" 2>/dev/null) || {
		echo running
		return
	}
	if grep -q '"state": "ERROR"' <<<"$body"; then
		echo error
	elif grep -Eq '"READY"[[:space:]]*:[[:space:]]*true' <<<"$body"; then
		echo done
	else
		echo running
	fi
}

port_in_use() {
	local rc=0
	curl -s -o /dev/null --max-time 3 "$url/" || rc=$?
	[ "$rc" -ne 7 ] # 7: connection refused
}

own_pid() {
	local pid
	[ -f "$pidfile" ] || return 1
	pid=$(cat "$pidfile")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
		grep -q "localstack.runtime.main" "/proc/$pid/cmdline" 2>/dev/null || return 1
	echo "$pid"
}

# hook_env is the environment both LocalStack (and so the hook it runs) and `init` use.
hook_env=(
	"PATH=$venv/bin:$PATH"
	"AWS_ENDPOINT_URL=$url"
	"LOCALSTACK_HOST=127.0.0.1:$port"
	"MAILRELAY_ENV_FILE=$envfile"
	"PYTHON=$venv/bin/python"
)

start() {
	local pid t0 deadline st
	if health_ok; then
		if pid=$(own_pid); then
			say "LocalStack already running at $url (pid $pid)"
		else
			say "reusing the LocalStack already running at $url (not started by run.sh)"
		fi
		run_init
		return 0
	fi
	if port_in_use; then
		die "$url answers but is not a healthy LocalStack with $services"
	fi
	install

	rm -rf "$fsroot/tmp" "$fsroot/etc/localstack/init" "$fsroot/usr/lib/localstack"
	mkdir -p "$fsroot/etc/localstack" "$fsroot/usr/lib"
	ln -s "$here/init" "$fsroot/etc/localstack/init"
	ln -s "$venv/localstack-fs/usr/lib/localstack" "$fsroot/usr/lib/localstack"
	rm -f "$envfile"
	: >>"$logfile"
	echo "==== $(date -u +%FT%TZ) run.sh start" >>"$logfile"

	t0=$(now)
	# OVERRIDE_IN_DOCKER=0: LocalStack takes any machine with /.dockerenv for its own image and
	# then ignores FILESYSTEM_ROOT (init hooks, state and tmp would go to /etc/localstack,
	# /var/lib/localstack, /tmp/localstack). SKIP_SSL_CERT_DOWNLOAD and DISABLE_EVENTS keep
	# it from reaching the internet; DNS_ADDRESS=0 from binding port 53.
	# NO_PROXY: SNS delivers with python-requests, which would send 127.0.0.1 through a proxy.
	env "${hook_env[@]}" \
		GATEWAY_LISTEN="127.0.0.1:$port" \
		OVERRIDE_IN_DOCKER=0 \
		FILESYSTEM_ROOT="$fsroot" \
		SERVICES="$services" \
		DNS_ADDRESS=0 \
		SKIP_SSL_CERT_DOWNLOAD=1 \
		DISABLE_EVENTS=1 \
		DEBUG="${LOCALSTACK_DEBUG:-0}" \
		NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" \
		no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}" \
		setsid "$venv/bin/python" -m localstack.runtime.main </dev/null >>"$logfile" 2>&1 9>&- &
	pid=$!
	echo "$pid" >"$pidfile"

	deadline=$(($(date +%s) + start_timeout))
	while :; do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$pidfile"
			die_log "LocalStack (pid $pid) exited during startup"
		fi
		st=$(init_state)
		[ "$st" = error ] && fail_start "an init hook failed (see its output in the log)"
		[ "$st" = done ] && health_ok && break
		[ "$(date +%s)" -lt "$deadline" ] ||
			fail_start "LocalStack not ready after ${start_timeout}s; health: $(curl -s --max-time 3 "$url/_localstack/health" || echo none)"
		sleep 0.5
	done
	say "LocalStack ready at $url in $(since "$t0")s (pid $pid, log $logfile)"
	[ -f "$envfile" ] && cat "$envfile"
	return 0
}

# fail_start stops the LocalStack being started, so no half-started process is left, and fails.
fail_start() {
	stop >/dev/null 2>&1 || true
	die_log "$*"
}

run_init() {
	[ -x "$venv/bin/python" ] || install
	env "${hook_env[@]}" "$here/init/ready.d/10-mailrelay.sh" || die "init hook failed"
	cat "$envfile"
}

stop() {
	local pid i
	if ! pid=$(own_pid); then
		rm -f "$pidfile"
		if health_ok; then
			say "the LocalStack at $url was not started by run.sh; leaving it alone"
		else
			say "not running"
		fi
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < stop_timeout * 4; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.25
	done
	if kill -0 "$pid" 2>/dev/null; then
		say "LocalStack (pid $pid) ignored TERM for ${stop_timeout}s; killing it"
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		for ((i = 0; i < 40; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.25
		done
	fi
	rm -f "$pidfile"
	say "stopped LocalStack (pid $pid)"
}

status() {
	local pid
	if health_ok; then
		if pid=$(own_pid); then
			say "running at $url (pid $pid), init hooks: $(init_state)"
		else
			say "running at $url (not started by run.sh), init hooks: $(init_state)"
		fi
		return 0
	fi
	if pid=$(own_pid); then
		say "pid $pid is running but $url is not healthy (yet)"
	else
		say "not running"
	fi
	return 3
}

lock() {
	local uv py
	uv=$(command -v uv || true)
	[ -n "$uv" ] || [ ! -x "$venv/bin/uv" ] || uv=$venv/bin/uv
	if [ -z "$uv" ]; then
		py=$(find_python) || die "no Python 3.12 or 3.13 found"
		"$py" -m venv "$state/uv-tool" && "$state/uv-tool/bin/python" -m pip install -q "uv==$uv_version" ||
			die "could not install uv"
		uv=$state/uv-tool/bin/uv
	fi
	# Resolved for 3.12, the oldest usable interpreter: the same pins install on 3.13.
	(cd "$here" && "$uv" pip compile -q --python-version 3.12 --python-platform x86_64-unknown-linux-gnu \
		--annotation-style line --custom-compile-command "localstack/run.sh lock" \
		requirements.in -o requirements.lock)
}

case "${1:-}" in
start) with_lock start ;;
stop) with_lock stop ;;
status) status ;;
logs)
	if [ "${2:-}" = "-f" ]; then
		exec tail -n 100 -F "$logfile"
	fi
	tail -n "${LOCALSTACK_LOG_LINES:-200}" "$logfile"
	;;
init) with_lock run_init ;;
env) cat "$envfile" ;;
install) with_lock install ;;
lock) lock ;;
*)
	sed -n '2,/^set -e/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
