#!/usr/bin/env bash
# Installs the Debian 12 packages that building and testing authmd need;
# with --bench also what `make bench` runs beside the server (wrk, nginx,
# the openssl command); with --package only the tools that build and check
# the Debian packages (`make deb`, `make check-package`); with fuzz also what
# `make fuzz` needs (clang and its libFuzzer runtime), which `make build` and
# `make test` never need.
# Idempotent: packages already present are not touched, and apt is not even
# consulted when nothing is missing, so `make` stays fast on a ready machine.
set -euo pipefail

PACKAGES=(
	# build
	build-essential cmake pkg-config clang-format
	# libraries (see docs/decisions.md for why each)
	libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libcjose-dev
	libssl-dev libsqlite3-dev libinih-dev libsystemd-dev
	# tests: unit framework, sanitizer runtimes come with gcc; integration
	# tests are Python (Debian's interpreter) with a real SMTP sink
	libcmocka-dev python3 python3-aiosmtpd sqlite3 curl
	# the DPoP and v0.6 tests sign JWTs with the openssl command
	openssl
	# the gate's integration test runs a real nginx (auth_request) in front of authmd
	nginx
	# the PostgreSQL store (issue 11): libpq to build; the server, run by the
	# tests as a private cluster (tests/integration/pgcluster.py, as nobody)
	libpq-dev postgresql
	# tests of the install (test_install.py): nm, man -l, groff, and
	# systemd-analyze verify on the units
	binutils man-db groff systemd
	# browser tests (issue 14, tests/browser): Debian's chromium, driven from
	# node by playwright-core (npm ci below; it downloads no browser)
	chromium nodejs
)
PACKAGE_PACKAGES=(dpkg-dev debhelper fakeroot lintian)
BENCH_PACKAGES=(wrk nginx openssl)
case "${1:-}" in
--bench) PACKAGES+=("${BENCH_PACKAGES[@]}") ;;
--package) PACKAGES=("${PACKAGE_PACKAGES[@]}") ;;
fuzz | --fuzz) PACKAGES+=(clang libclang-rt-14-dev) ;;
esac

# playwright-core for the browser tests, exactly as tests/browser's
# package-lock.json says; skipped when that lockfile is already installed.
browser_deps() {
	local dir stamp
	dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/browser"
	stamp="$dir/node_modules/.authmd-installed-lock"
	case "${MODE:-}" in --package) return 0 ;; esac
	[ -f "$dir/package-lock.json" ] || return 0
	if [ -f "$stamp" ] && cmp -s "$stamp" "$dir/package-lock.json"; then
		return 0
	fi
	if ! command -v npm >/dev/null 2>&1; then
		# Debian packages npm apart from nodejs; some nodejs builds bring it.
		$SUDO apt-get install -y -qq --no-install-recommends npm
	fi
	echo "deps: npm ci in tests/browser (playwright-core)"
	(cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
	cp "$dir/package-lock.json" "$stamp"
}
MODE="${1:-}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	browser_deps
	exit 0
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

# The gate's tests and the bench run their own nginx on a loopback port; Debian's package would
# also start the system-wide one on port 80. Stop and disable that one if
# this script just installed it.
for p in "${missing[@]}"; do
	if [ "$p" = nginx ] && [ -d /run/systemd/system ]; then
		echo "deps: disabling the system nginx service (the tests and make bench start their own)"
		$SUDO systemctl disable --now nginx.service >/dev/null 2>&1 || true
	fi
	# Likewise the system PostgreSQL cluster: the tests start a private one.
	if [ "$p" = postgresql ] && [ -d /run/systemd/system ]; then
		echo "deps: disabling the system postgresql service (the tests start their own cluster)"
		$SUDO systemctl disable --now postgresql.service >/dev/null 2>&1 || true
	fi
done

browser_deps
