#!/usr/bin/env bash
# `make run`: starts authmd-server on its embedded defaults (or the config
# file given), with its data in var/, after printing what to try.
set -euo pipefail
build=${1:-build}
config=${2:-}
cd "$(dirname "$0")/.."
args=()
url=http://127.0.0.1:8000
if [ -n "$config" ]; then
	args=(--config "$config")
	"$build/authmd-server" --check-config "$config" >/dev/null
	url=$(sed -n 's/^[[:space:]]*public_url[[:space:]]*=[[:space:]]*//p' "$config" | tail -n 1)
	url=${url:-http://127.0.0.1:8000}
fi
cat <<MSG

authmd-server is starting at $url  (Ctrl-C stops it; data in var/, mail in var/outbox/)

Try, in another terminal:
  curl -i $url/api/resource                                   # 401 + discovery header
  curl -s $url/.well-known/oauth-authorization-server         # the agent_auth block
  curl -s $url/auth.md                                        # the guide for agents
  curl -s -X POST $url/agent/auth -H 'Content-Type: application/json' \\
       -d '{"type":"anonymous"}'                              # an API key at once
The README walks through every flow, including the claim by email code.

MSG
exec "$build/authmd-server" "${args[@]}"
