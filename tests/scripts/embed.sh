#!/usr/bin/env bash
# Installs the built warmpool into a temporary prefix, builds examples/embed against it as a
# separate CMake project (find_package(warmpool)) and runs it on the sim and local backends.
set -euo pipefail

: "${WARMPOOL_BUILD_DIR:?set WARMPOOL_BUILD_DIR to the warmpool build directory}"
: "${WARMPOOL_SOURCE_DIR:?set WARMPOOL_SOURCE_DIR to the warmpool source directory}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/warmpool-embed.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
agent=$prefix/libexec/warmpool/warmpool-agent

fail() { echo "embed.sh: FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }
# run LOG CMD...: runs CMD with its output in LOG; shows the log when CMD fails.
run() {
  local log=$1; shift
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    fail "command failed: $*"
  fi
}

step "building the install targets in $WARMPOOL_BUILD_DIR"
targets=(warmpool warmpool-agent)
# `cmake --install` installs every install() rule, so the CLI must be built too when present.
[[ -d $WARMPOOL_BUILD_DIR/tools/CMakeFiles/warmpool-cli.dir ]] && targets+=(warmpool-cli)
run "$tmp/build.log" cmake --build "$WARMPOOL_BUILD_DIR" --target "${targets[@]}"

step "installing to $prefix"
run "$tmp/install.log" cmake --install "$WARMPOOL_BUILD_DIR" --prefix "$prefix"
for f in include/warmpool/engine.hpp include/warmpool/config.hpp include/warmpool/types.hpp \
         lib/cmake/warmpool/warmpoolConfig.cmake lib/cmake/warmpool/warmpoolTargets.cmake \
         libexec/warmpool/warmpool-agent; do
  [[ -e $prefix/$f ]] || fail "install is missing $f"
done
ls "$prefix"/lib*/libwarmpool.so >/dev/null 2>&1 || fail "install is missing libwarmpool.so"
if grep -rlE '#[[:space:]]*include[[:space:]]*[<"]caf/' "$prefix/include"; then
  fail "installed headers include CAF headers"
fi

step "configuring and building examples/embed against the installed package"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
run "$tmp/example-configure.log" cmake -S "$WARMPOOL_SOURCE_DIR/examples/embed" -B "$tmp/build" \
  "${generator[@]}" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release
run "$tmp/example-build.log" cmake --build "$tmp/build"
exe=$tmp/build/warmpool-embed
[[ -x $exe ]] || fail "example binary $exe was not built"
# Captured first: `ldd | grep -q` under pipefail fails whenever grep exits before ldd's last write.
libs=$(ldd "$exe")
grep -q "libwarmpool.so.* => $prefix/" <<<"$libs" ||
  { echo "$libs" >&2; fail "example does not load libwarmpool.so from the install prefix"; }

# expect NAME PATTERN...: the last run's output ($out) must contain every pattern (fixed strings).
expect() {
  local name=$1; shift
  for p in "$@"; do
    grep -qF -- "$p" <<<"$out" || { echo "$out" >&2; fail "$name: output lacks '$p'"; }
  done
}
# run_example NAME ARGS...: runs the example, which must exit 0 and print PASS.
run_example() {
  local name=$1; shift
  step "running: warmpool-embed $* ($name)"
  local rc=0
  out=$(env -u WARMPOOL_AGENT timeout 120 "$exe" "$@" 2>&1) || rc=$?
  echo "$out"
  [[ $rc -eq 0 ]] || fail "$name: exit code $rc"
  expect "$name" "ok   echo: hello-from-embed [exit 0]" "ok   write_file + read_file" "hits=1" PASS
}

run_example sim --sim
expect sim "backend: sim"

run_example local --agent "$agent"
expect local "backend: local (agent $agent)" "ok   sh -c 'echo \$((6*7))': 42 [exit 0]"

# Without --agent the example uses the agent the package config reports (warmpool_AGENT).
run_example local-default
expect local-default "backend: local (agent $agent)" ": 42 [exit 0]"

step "a missing agent must make the example fail"
rc=0
out=$(env -u WARMPOOL_AGENT timeout 60 "$exe" --agent "$tmp/no-such-agent" 2>&1) || rc=$?
[[ $rc -ne 0 ]] || { echo "$out" >&2; fail "example exited 0 with a missing agent"; }
expect missing-agent "backend_unavailable"

echo "embed.sh: PASS"
