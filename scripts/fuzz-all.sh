#!/usr/bin/env bash
# Runs every libFuzzer target of build-fuzz/ (make fuzz) for SECONDS each,
# JOBS at a time (default 1: the machine is shared), under nice, and prints
# a Markdown table (target, seconds, execs, corpus size, result) ready for
# docs/fuzzing.md; it is also written to build-fuzz/fuzz-summary.md.
#
#   scripts/fuzz-all.sh 600            # every target, 10 minutes each
#   scripts/fuzz-all.sh 60 jwt client  # only these
#   JOBS=2 scripts/fuzz-all.sh 600
#   FUZZ_FLAGS="-fork=1 -ignore_crashes=1" scripts/fuzz-all.sh 600 jwt
#                                      # keep going past known crashes
#
# Each target grows a working corpus in build-fuzz/corpus/<target>, seeded
# from fuzz/<target>/corpus (the repository's seeds are never written);
# logs go to build-fuzz/logs/<target>.log, and a crash, leak or UBSan
# report leaves its input in build-fuzz/artifacts/. Exit status 1 if any
# target failed.
set -uo pipefail

cd "$(dirname "$0")/.."
SECONDS_EACH=${1:?usage: scripts/fuzz-all.sh SECONDS [TARGET...]}
shift
JOBS=${JOBS:-1}
OUT=build-fuzz
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
	for f in fuzz/*/corpus; do
		t=${f#fuzz/}
		TARGETS+=("${t%/corpus}")
	done
fi
mkdir -p "$OUT/corpus" "$OUT/logs" "$OUT/artifacts" "$OUT/results"

run_one() {
	local t=$1 bin="$OUT/fuzz_$1" work="$OUT/corpus/$1" log="$OUT/logs/$1.log"
	local dict=() rc execs size result crashes
	if [ ! -x "$bin" ]; then
		echo "| $t | 0 | - | - | not built (make fuzz) |" >"$OUT/results/$t"
		return
	fi
	mkdir -p "$work"
	touch "$log.start"
	[ -f "fuzz/$t/$t.dict" ] && dict=(-dict="fuzz/$t/$t.dict")
	nice -n 10 "$bin" -max_total_time="$SECONDS_EACH" -timeout=30 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t-" "${dict[@]}" ${FUZZ_FLAGS:-} \
		"$work" "fuzz/$t/corpus" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	# -fork mode reports progress lines instead of final stats.
	[ -z "$execs" ] && execs=$(sed -n 's/^#\([0-9]*\):.*exec\/s.*/\1/p' "$log" | tail -1)
	size=$(find "$work" -type f | wc -l)
	crashes=$(find "$OUT/artifacts" -name "$t-crash-*" -newer "$log.start" 2>/dev/null | wc -l)
	if [ $rc -eq 0 ] && [ "$crashes" -eq 0 ]; then
		result=ok
	elif [ $rc -eq 0 ]; then
		result="FAILED ($crashes crash inputs in $OUT/artifacts)"
	else
		result="FAILED (exit $rc; see $log)"
	fi
	echo "| $t | $SECONDS_EACH | ${execs:-?} | $size | $result |" >"$OUT/results/$t"
	echo "fuzz-all: $t: $result" >&2
}

running=0
for t in "${TARGETS[@]}"; do
	run_one "$t" &
	running=$((running + 1))
	if [ $running -ge "$JOBS" ]; then
		wait -n
		running=$((running - 1))
	fi
done
wait

{
	echo "| target | seconds | execs | corpus files | result |"
	echo "|---|---|---|---|---|"
	for t in "${TARGETS[@]}"; do cat "$OUT/results/$t"; done
} | tee "$OUT/fuzz-summary.md"
! grep -q FAILED "$OUT/fuzz-summary.md"
