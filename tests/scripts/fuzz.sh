# Builds the libFuzzer targets of tests/fuzz with clang (ASan + UBSan, the `fuzz` preset:
# build-fuzz/) and runs each for FUZZ_RUNS inputs from seed FUZZ_SEED (at most FUZZ_SECONDS) on a copy of its seed corpus,
# which holds every crashing input found so far. Fails on a crash, a sanitizer report, a
# leak, a hang (-timeout) or running out of memory; the offending input is kept in
# build-fuzz/artifacts/ and printed as base64 so it can go into the corpus and a unit test.
set -euo pipefail
src="${WARMPOOL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
secs="${FUZZ_SECONDS:-120}"
cd "$src"
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ missing (tools/install-deps installs it)" >&2; exit 1; }

CC=clang CXX=clang++ cmake --preset fuzz >/dev/null
if ! cmake --build --preset fuzz -j "$(nproc 2>/dev/null || echo 2)" >build-fuzz/build.log 2>&1; then
  grep -v '^\[[0-9]*/[0-9]*\] ' build-fuzz/build.log | tail -40 >&2
  echo "fuzz.sh: building the fuzzers failed (build-fuzz/build.log)" >&2
  exit 1
fi
targets=(fuzz_agent_frame fuzz_config fuzz_http_body)

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:symbolize=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
artifacts="$src/build-fuzz/artifacts"
mkdir -p "$artifacts"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  cp "tests/fuzz/corpus/$t/"* "$work/$t/"
  rm -f "$artifacts/$t-"*
  start=$SECONDS
  # A fixed seed and run count make the test-suite run a repeatable regression check (it
  # cannot find a new crash by chance in CI); explore with FUZZ_SEED=0 FUZZ_RUNS=-1.
  if "build-fuzz/bin/$t" -seed="${FUZZ_SEED:-1}" -runs="${FUZZ_RUNS:-30000}" \
       -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 -max_len=8192 \
       -artifact_prefix="$artifacts/$t-" -print_final_stats=1 "$work/$t" >"$work/$t.log" 2>&1; then
    echo "$t: ok, $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$') runs in $((SECONDS - start))s"
  else
    echo "FAIL: $t" >&2
    grep -v '^#[0-9]' "$work/$t.log" | tail -60 >&2
    for f in "$artifacts/$t-"*; do
      [ -f "$f" ] && echo "input $f (base64): $(base64 -w0 <"$f" | head -c 4000)" >&2
    done
    failed+=("$t")
  fi
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz.sh: failing targets: ${failed[*]}" >&2; exit 1; }
