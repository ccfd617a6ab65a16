#!/usr/bin/env bash
# `make run`: starts authmd-provider (a local agent provider) and, trusting
# it, authmd-server, on 127.0.0.1 ports of your choice, with their data,
# logs and generated configuration in one folder (var/ by default).
#
# The banner is printed only once both programs answer. If either cannot
# start, the other is stopped, the reason is printed and the exit status is
# 1. Ctrl-C (SIGINT), SIGTERM or SIGHUP stops both, with exit status 0
# (started in the background by a non-interactive shell it ignores SIGINT,
# as every such job does: stop it with SIGTERM then).
# With --config FILE only the server runs, on that file.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: scripts/run.sh [--build DIR] [--port N] [--provider-port N] [--var DIR]
       scripts/run.sh [--build DIR] [--var DIR] --config FILE

  --build DIR         where the programs were built (default: build)
  --port N            authmd-server's port on 127.0.0.1 (default: 8000)
  --provider-port N   authmd-provider's port on 127.0.0.1 (default: 4000)
  --var DIR           data, logs and the generated server.ini and
                      provider.ini (default: var)
  --config FILE       run authmd-server alone on FILE, which sets its port
                      and data; its log goes to DIR/server.log
Relative paths are taken from the repository's top folder.
EOF
}

die() {
	echo "run: $*" >&2
	exit 2
}

build=build port= pport= var=var config=
while [ $# -gt 0 ]; do
	case $1 in
	--build | --port | --provider-port | --var | --config)
		[ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (see --help)"
		case $1 in
		--build) build=$2 ;;
		--port) port=$2 ;;
		--provider-port) pport=$2 ;;
		--var) var=$2 ;;
		--config) config=$2 ;;
		esac
		shift 2
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		exit 2
		;;
	esac
done

valid_port() {
	[[ $1 =~ ^[0-9]{1,5}$ ]] && [ "$((10#$1))" -ge 1 ] && [ "$((10#$1))" -le 65535 ]
}

if [ -n "$config" ]; then
	[ -z "$port$pport" ] ||
		die "--port and --provider-port do not apply with --config: the file sets the server's port"
else
	port=${port:-8000} pport=${pport:-4000}
	valid_port "$port" || die "--port (make run PORT=) must be a number from 1 to 65535, not '$port'"
	valid_port "$pport" ||
		die "--provider-port (make run PROVIDER_PORT=) must be a number from 1 to 65535, not '$pport'"
	port=$((10#$port)) pport=$((10#$pport))
	[ "$port" -ne "$pport" ] || die "the server and the provider need two different ports"
fi

# From a terminal, the rest runs as a foreground job of its own (job
# control gives it a process group and the terminal), so Ctrl-C reaches this
# script and its programs but not make, which then sees a clean exit instead
# of reporting an interrupt or "Error 1".
if [ -t 0 ] && [ -z "${AUTHMD_RUN_JOB:-}" ]; then
	set -m
	AUTHMD_RUN_JOB=1 "$BASH" "$0" "$@" && exit 0 || exit $?
fi

cd "$(dirname "$0")/.."
for p in authmd-server authmd-provider; do
	[ -x "$build/$p" ] || die "$build/$p is not built (run 'make build' first)"
done
mkdir -p "$var"
vabs=$(cd "$var" && pwd)

# Seconds a program may take from its start to answering.
start_timeout=${AUTHMD_START_TIMEOUT:-30}

pids=()
viewer=

# Stops every program this run started (SIGTERM, then SIGKILL past a bound)
# and waits for each, so nothing is left listening when the script returns.
stop_all() {
	local p deadline=$((SECONDS + 30))

	if [ -n "$viewer" ]; then
		kill -TERM "$viewer" 2>/dev/null || true
		wait "$viewer" 2>/dev/null || true
		viewer=
	fi
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		while kill -0 "$p" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
			sleep 0.1
		done
		if kill -0 "$p" 2>/dev/null; then
			kill -KILL "$p" 2>/dev/null || true
		fi
		wait "$p" 2>/dev/null || true
	done
	pids=()
	# Whatever else is still a child of this script: a viewer started just
	# before the signal, whose pid was not yet in $viewer.
	for p in $(jobs -p); do
		kill -TERM "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
}

on_stop_signal() {
	trap '' INT TERM HUP
	echo "run: stopping" >&2
	stop_all
	echo "run: stopped" >&2
	exit 0
}
trap on_stop_signal INT TERM HUP
trap stop_all EXIT

# start NAME LOG ARGS...: starts $build/NAME with ARGS in the background,
# its output appended to LOG; sets started_pid and log_from (the byte of LOG
# where this run's output begins).
start() {
	local name=$1 log=$2

	shift 2
	touch "$log"
	log_from=$(($(wc -c <"$log") + 1))
	"$build/$name" "$@" >>"$log" 2>&1 </dev/null &
	started_pid=$!
	pids+=("$started_pid")
}

# wait_ready NAME PID LOG FROM LISTEN URL: returns 0 once PID has logged that
# it listens on LISTEN (so the answer is not from another program holding
# the port) and URL answers; empty LISTEN skips that check. Says why and
# returns 1 if PID exits first or start_timeout passes.
wait_ready() {
	local name=$1 pid=$2 log=$3 from=$4 listen=$5 url=$6 status=0 why
	local deadline=$((SECONDS + start_timeout))

	while kill -0 "$pid" 2>/dev/null; do
		if { [ -z "$listen" ] ||
			tail -c "+$from" "$log" | grep -F " listening on $listen " >/dev/null; } &&
			curl -fs --noproxy "*" --max-time 2 -o /dev/null "$url"; then
			return 0
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "$name could not start: no answer at $url" \
				"within ${start_timeout}s (see $log)" >&2
			return 1
		fi
		sleep 0.1
	done
	wait "$pid" || status=$?
	why=$(tail -c "+$from" "$log" | sed -n "s/^$name: //p" | tail -n 1)
	echo "$name could not start: ${why:-it exited with status $status} (see $log)" >&2
	return 1
}

# follow LOG FROM PID: shows LOG from byte FROM until PID exits. In the
# background, so that a signal to this script runs its trap at once rather
# than after the viewer exits.
follow() {
	tail -c "+$2" -f --pid="$3" "$1" &
	viewer=$!
	wait "$viewer" || true
	viewer=
}

slog=$var/server.log

if [ -n "$config" ]; then
	"$build/authmd-server" --check-config "$config" >/dev/null
	ini() { # ini KEY DEFAULT: the [server] KEY of $config
		awk -v key="$1" -v def="$2" '
			/^[[:space:]]*\[/ { sec = $0; gsub(/[][[:space:]]/, "", sec); next }
			sec == "server" && $0 ~ "^[[:space:]]*" key "[[:space:]]*=" {
				v = $0; sub(/^[^=]*=[[:space:]]*/, "", v); sub(/[[:space:]]+$/, "", v); got = v
			}
			END { print (got == "" ? def : got) }' "$config"
	}
	listen=$(ini listen 127.0.0.1:8000)
	url=$(ini public_url http://127.0.0.1:8000)
	host=${listen%:*}
	case $host in "" | 0.0.0.0 | "*") host=127.0.0.1 ;; esac
	# The file may log below info, so readiness cannot wait for the server's
	# "listening" line: refuse a port that already answers instead, or the
	# poll below could take another program's answer for this server's.
	if (: <"/dev/tcp/$host/${listen##*:}") 2>/dev/null; then
		echo "authmd-server could not start: $host:${listen##*:} is already in use" >&2
		exit 1
	fi
	start authmd-server "$slog" --config "$config"
	server=$started_pid sfrom=$log_from
	wait_ready authmd-server "$server" "$slog" "$sfrom" "" \
		"http://$host:${listen##*:}/.well-known/oauth-protected-resource" || exit 1
	cat <<MSG

authmd-server is running at $url with $config (log: $slog, shown below).
Ctrl-C stops it.

MSG
	follow "$slog" "$sfrom" "$server"
	trap '' INT TERM HUP
	wait "$server" && status=0 || status=$?
	pids=()
	echo "authmd-server stopped unexpectedly (status $status; see $slog)" >&2
	exit 1
fi

S=http://127.0.0.1:$port
P=http://127.0.0.1:$pport
plog=$var/provider.log

# The effective configuration of this run, generated for the chosen ports.
cat >"$var/provider.ini" <<INI
; Generated by scripts/run.sh for this run (make run PROVIDER_PORT=$pport);
; rewritten at every start. Reference: docs/provider.md.
[provider]
listen = 127.0.0.1:$pport
issuer = $P
[store]
url = sqlite:$vabs/provider.db
[keys]
dir = $vabs/provider-keys
[log]
level = info
; Both programs run on this machine: let logout-token delivery reach the
; server on loopback (the default refuses every private address).
[outbound]
allow_private_targets = 127.0.0.0/8 ::1/128
INI
cat >"$var/server.ini" <<INI
; Generated by scripts/run.sh for this run (make run PORT=$port
; PROVIDER_PORT=$pport); rewritten at every start. Reference:
; docs/configuration.md.
[server]
listen = 127.0.0.1:$port
public_url = $S
[store]
url = sqlite:$vabs/authmd.db
[mail]
outbox = $vabs/outbox
[v06]
keys_dir = $vabs/keys
[log]
level = info

; Trust the local authmd-provider started beside this server. Do not copy
; this into a production configuration as it is: trust only providers you
; have vetted (see docs/configuration.md, [provider NAME]).
[provider local]
issuer = $P

; Both programs run on this machine: let the JWKS fetch reach loopback.
[outbound]
allow_private_targets = 127.0.0.0/8 ::1/128
INI

start authmd-provider "$plog" --config "$var/provider.ini"
provider=$started_pid
wait_ready authmd-provider "$provider" "$plog" "$log_from" "127.0.0.1:$pport" \
	"$P/.well-known/jwks.json" || exit 1
start authmd-server "$slog" --config "$var/server.ini"
server=$started_pid sfrom=$log_from
wait_ready authmd-server "$server" "$slog" "$sfrom" "127.0.0.1:$port" \
	"$S/.well-known/oauth-protected-resource" || exit 1

cat <<MSG

authmd-server is running at $S (log: $slog, shown below), and
authmd-provider, a local agent provider it trusts, at $P
(log: $plog). Data is in $var/, mail in $var/outbox/. Ctrl-C stops both.

In another terminal, from this folder, set these once; the README's
walkthrough uses them:
  S=$S P=$P V=$var
Then try:
  curl -i \$S/api/resource                               # 401 + discovery header
  curl -s \$S/.well-known/oauth-authorization-server     # the agent_auth block
  curl -s \$S/auth.md                                    # the guide for agents
  curl -s -X POST \$S/agent/auth -H 'Content-Type: application/json' \\
       -d '{"type":"anonymous"}'                         # an API key at once
  curl -i \$S/authz -H 'X-Original-URI: /api/resource'   # the forward-auth gate
To put authmd in front of your own API (nginx, Traefik, Caddy, Envoy), see
docs/gate.md#how-to-try-the-gate.

MSG

follow "$slog" "$sfrom" "$server"
# The viewer ended without a signal to this script: the server exited.
trap '' INT TERM HUP
wait "$server" && status=0 || status=$?
echo "authmd-server stopped unexpectedly (status $status; see $slog); stopping authmd-provider" >&2
exit 1
