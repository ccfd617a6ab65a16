#!/usr/bin/env bash
# `make run`: starts authmd-provider (a local agent provider) and
# authmd-server beside it, on their built-in defaults, with the server
# trusting that provider (etc/local-provider.ini). Data goes to var/.
# With a config file given, only the server runs, on that file.
set -euo pipefail
build=${1:-build}
config=${2:-}
cd "$(dirname "$0")/.."
url=http://127.0.0.1:8000
if [ -n "$config" ]; then
	"$build/authmd-server" --check-config "$config" >/dev/null
	url=$(sed -n 's/^[[:space:]]*public_url[[:space:]]*=[[:space:]]*//p' "$config" | tail -n 1)
	echo "authmd-server is starting at ${url:-http://127.0.0.1:8000} with $config (Ctrl-C stops it)"
	exec "$build/authmd-server" --config "$config"
fi

mkdir -p var
"$build/authmd-provider" --config etc/demo-provider.ini >>var/provider.log 2>&1 &
provider=$!
trap 'kill $provider 2>/dev/null; wait $provider 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 50); do
	curl -fs http://127.0.0.1:4000/.well-known/jwks.json >/dev/null 2>&1 && break
	sleep 0.1
done

cat <<MSG

authmd-server is starting at $url, and authmd-provider (a local agent
provider it trusts) at http://127.0.0.1:4000 (log: var/provider.log).
Ctrl-C stops both. Data is in var/, mail in var/outbox/.

Try, in another terminal:
  curl -i $url/api/resource                                   # 401 + discovery header
  curl -s $url/.well-known/oauth-authorization-server         # the agent_auth block
  curl -s $url/auth.md                                        # the guide for agents
  curl -s -X POST $url/agent/auth -H 'Content-Type: application/json' \\
       -d '{"type":"anonymous"}'                              # an API key at once
The README walks through every flow: the claim by email code, and the
agent-verified flow with build/authmd-provider.

MSG
"$build/authmd-server" --config etc/local-provider.ini
