#!/usr/bin/env bash
# Installs the Debian 12 packages that building and testing authmd need
# (with the argument fuzz, also what `make fuzz` needs). Idempotent:
# packages already present are not touched, and apt is not even consulted
# when nothing is missing, so `make` stays fast on a ready machine.
set -euo pipefail

PACKAGES=(
	# build
	build-essential cmake pkg-config clang-format
	# libraries (see docs/decisions.md for why each)
	libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libcjose-dev
	libssl-dev libsqlite3-dev libinih-dev
	# tests: unit framework, sanitizer runtimes come with gcc; integration
	# tests are Python (Debian's interpreter) with a real SMTP sink
	libcmocka-dev python3 python3-aiosmtpd sqlite3 curl
)
# `scripts/deps.sh fuzz` (make fuzz) adds clang and its libFuzzer runtime;
# `make build` and `make test` never need them.
if [ "${1:-}" = "fuzz" ]; then
	PACKAGES+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi

echo "deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
