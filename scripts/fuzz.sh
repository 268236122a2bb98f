#!/usr/bin/env bash
# Fuzz every target in fuzz/ for SECONDS_PER_TARGET seconds each (default 20), one after the
# other, and print each target's executions, corpus size and coverage. Exits non-zero if any
# target crashed (a panic, an out-of-memory, a timeout) or did not build.
#
#   scripts/fuzz.sh            # 20 s per target: the CI run
#   scripts/fuzz.sh 600        # the long run (docs/security.md, "Fuzzing")
#
# Stable Rust: cargo-fuzz's default sanitizer (address) passes `-Zsanitizer=address`, which
# only nightly accepts. With `--sanitizer none` every flag cargo-fuzz passes is stable
# (`-Cpasses=sancov-module`, `-Cllvm-args=-sanitizer-coverage-*`, `--cfg fuzzing`), so no
# `RUSTC_BOOTSTRAP` is needed. wharf forbids `unsafe` in its crates, so AddressSanitizer
# would mostly watch dependencies; what the targets look for is panics (every target asserts
# its invariants) and runaway memory or time, which libFuzzer catches without it.
# `-O -a`: optimised, with debug assertions and overflow checks on.
#
# Outside the repository (never committed), under $WHARF_FUZZ_DIR (default
# ${TMPDIR:-/tmp}/wharf-fuzz): target/ (the fuzz build: its own flags, so its own target
# dir), corpus/<target>/ (the grown corpus; the committed seeds in fuzz/corpus/<target>/ are
# read, never written), artifacts/<target>/ (crash inputs) and logs/.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-20}"
case "$secs" in
'' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2 && exit 2 ;;
esac
work="${WHARF_FUZZ_DIR:-${TMPDIR:-/tmp}/wharf-fuzz}"
targets=(frame_decoder handshake_parser token_parser config_loader proxy_header rooms_command)

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --version 0.13.2 --locked
fi

echo "== building the fuzz targets (target dir $work/target)"
start=$(date +%s)
(cd fuzz && cargo fuzz build --sanitizer none --release --debug-assertions \
    --target-dir "$work/target")
echo "built in $(($(date +%s) - start)) s"
host=$(rustc -vV | sed -n 's/^host: //p')
bin="$work/target/$host/release"

failed=()
summary=()
for target in "${targets[@]}"; do
    corpus="$work/corpus/$target"
    artifacts="$work/artifacts/$target"
    log="$work/logs/$target.log"
    mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
    echo "== $target: ${secs} s"
    # New inputs go into the first directory; the seeds are only read.
    status=0
    "$bin/$target" "$corpus" "fuzz/corpus/$target" \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || status=$?
    # The last status line (`#N ... cov: C ft: F corp: N/SIZE ...`) and the final stats.
    last=$(grep -E '^#[0-9]+[[:space:]].*cov: ' "$log" | tail -n 1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[bKM]*\).*/\1/p' <<<"$last")
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    files=$(find "$corpus" -type f | wc -l)
    if [ "$status" -ne 0 ]; then
        result="CRASH (exit $status)"
        failed+=("$target")
        grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -n 20 || true
    else
        result="ok"
    fi
    summary+=("$(printf '%-17s %10s %7s %7s %14s %8s  %s' "$target" "${execs:-?}" \
        "${cov:-?}" "${ft:-?}" "${corp:-?}" "$files" "$result")")
done

echo
printf '%-17s %10s %7s %7s %14s %8s  %s\n' target execs cov ft corp/bytes grown result
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "crashed: ${failed[*]}; inputs in $work/artifacts/, logs in $work/logs/" >&2
    exit 1
fi
echo "no crash in ${#targets[@]} targets (${secs} s each)"
