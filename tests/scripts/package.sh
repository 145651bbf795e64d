# The Debian package: cpack builds warmpool_<version>_amd64.deb with the CLI, the agent,
# the library and headers, a systemd unit and a default /etc/warmpool/warmpool.yaml
# (a conffile). Installed into a temporary root (never onto this machine: the newcomer test
# needs a machine without /etc/warmpool), the unit's ExecStart, run as written with its
# paths under that root, serves an execute, and on SIGTERM (systemd's stop) exits 0 and
# leaves no sandbox behind.
set -euo pipefail
build="$WARMPOOL_BUILD_DIR"
tmp=$(mktemp -d)
pid=""
cleanup() {
  [ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

version=$(sed -n 's/^project(warmpool VERSION \([0-9.]*\).*/\1/p' "$WARMPOOL_SOURCE_DIR/CMakeLists.txt")
arch=$(dpkg --print-architecture)
(cd "$build" && cpack -G DEB -B "$tmp/pkg" >"$tmp/cpack.log" 2>&1) || fail "cpack: $(cat "$tmp/cpack.log")"
deb="$tmp/pkg/warmpool_${version}_${arch}.deb"
[ -f "$deb" ] || fail "no $deb: $(ls "$tmp/pkg")"

# Control fields: name, the project's version, dependencies found by dpkg-shlibdeps.
[ "$(dpkg-deb -f "$deb" Package)" = warmpool ] || fail "Package: $(dpkg-deb -f "$deb" Package)"
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || fail "Version: $(dpkg-deb -f "$deb" Version)"
depends=$(dpkg-deb -f "$deb" Depends)
for dep in bubblewrap libcaf-core libcaf-io libspdlog libyaml-cpp libcurl4; do
  grep -q "$dep" <<<"$depends" || fail "Depends lacks $dep: $depends"
done
dpkg-deb -e "$deb" "$tmp/control"
[ "$(cat "$tmp/control/conffiles")" = /etc/warmpool/warmpool.yaml ] ||
  fail "conffiles: $(cat "$tmp/control/conffiles")"
for script in postinst prerm postrm; do
  sh -n "$tmp/control/$script" || fail "$script is not valid sh"
done

root="$tmp/root"
dpkg-deb -x "$deb" "$root"
for f in usr/bin/warmpool usr/libexec/warmpool/warmpool-agent usr/lib/libwarmpool.so \
         usr/include/warmpool/engine.hpp usr/include/warmpool/version.hpp \
         usr/lib/cmake/warmpool/warmpoolConfig.cmake lib/systemd/system/warmpool.service \
         etc/warmpool/warmpool.yaml usr/share/doc/warmpool/warmpool.example.yaml; do
  [ -e "$root/$f" ] || fail "the package lacks /$f"
done
grep -q "#define WARMPOOL_VERSION \"$version\"" "$root/usr/include/warmpool/version.hpp" ||
  fail "version.hpp: $(cat "$root/usr/include/warmpool/version.hpp")"
[ "$("$root/usr/bin/warmpool" --version)" = "warmpool $version" ] ||
  fail "--version: $("$root/usr/bin/warmpool" --version)"
# The installed CLI loads the installed library, not the build tree's.
lib=$(ldd "$root/usr/bin/warmpool" | awk '/libwarmpool/ {print $3}')
[ "$(readlink -f "$lib")" = "$(readlink -f "$root/usr/lib/libwarmpool.so.$version")" ] ||
  fail "the installed CLI loads libwarmpool from $lib"
out=$("$root/usr/bin/warmpool" check-config "$root/etc/warmpool/warmpool.yaml")
grep -q 'ok (1 pools: default\[local\])' <<<"$out" || fail "default config: $out"
grep -q '^  listen: 127.0.0.1:' "$root/etc/warmpool/warmpool.yaml" || fail "the default config listens off loopback"

unit="$root/lib/systemd/system/warmpool.service"
grep -qx 'Restart=on-failure' "$unit" || fail "unit does not restart on failure"
grep -q '^After=.*docker.service' "$unit" || fail "unit is not ordered after docker"
grep -qx 'KillSignal=SIGTERM' "$unit" || fail "unit does not stop with SIGTERM"
grep -qx 'WantedBy=multi-user.target' "$unit" || fail "unit is not installable"
# systemd's own check of the unit (directives, values), its binary moved under the root.
mkdir -p "$tmp/unit"
sed "s|^ExecStart=/usr/bin/warmpool|ExecStart=$root/usr/bin/warmpool|" "$unit" >"$tmp/unit/warmpool.service"
systemd-analyze verify "$tmp/unit/warmpool.service" >"$tmp/verify.log" 2>&1 ||
  fail "systemd-analyze verify: $(cat "$tmp/verify.log")"
[ ! -s "$tmp/verify.log" ] || fail "systemd-analyze verify warns: $(cat "$tmp/verify.log")"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[ "$exec_start" = "/usr/bin/warmpool serve --config /etc/warmpool/warmpool.yaml" ] ||
  fail "ExecStart: $exec_start"

# The ExecStart line as systemd runs it (cwd /, no shell), every absolute path moved under
# the root. Only the port and the node name differ: other tests may use 8080 and run pools.
read -r -a argv <<<"$exec_start"
for i in "${!argv[@]}"; do
  [[ "${argv[$i]}" == /* ]] && argv[$i]="$root${argv[$i]}"
done
(cd / && exec env -i PATH=/usr/bin:/bin WARMPOOL_LISTEN=127.0.0.1:0 WARMPOOL_NODE="package-$$" \
   "${argv[@]}") 2>"$tmp/serve.log" &
pid=$!
port=""
for _ in $(seq 1 300); do
  port=$(sed -n 's/.*serving HTTP on 127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/serve.log")
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || fail "the service exited: $(cat "$tmp/serve.log")"
  sleep 0.1
done
[ -n "$port" ] || fail "the service never listened: $(cat "$tmp/serve.log")"
grep -q "configuration: $root/etc/warmpool/warmpool.yaml" "$tmp/serve.log" ||
  fail "the service did not say which config it runs: $(cat "$tmp/serve.log")"
curl -s --max-time 60 "http://127.0.0.1:$port/v1/execute" \
  -d '{"pool":"default","command":["sh","-c","echo packaged; id -u"],"timeout":"10s"}' >"$tmp/exec.json"
python3 - "$tmp/exec.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r.get("exit_code") == 0, r
lines = r["stdout"].split()
assert lines[0] == "packaged" and lines[1] != "0", r  # ran, and not as root
PY
# Its sandboxes are its bubblewrap children, running the packaged agent.
kids=$(pgrep -P "$pid" || true)
[ -n "$kids" ] || fail "the service has no sandbox running"
for k in $kids; do
  agent=$(tr '\0' '\n' <"/proc/$k/cmdline" | grep -B1 -x /.warmpool/agent | head -1)
  [ "$(readlink -f "$agent")" = "$root/usr/libexec/warmpool/warmpool-agent" ] ||
    fail "sandbox $k does not run the packaged agent: $(tr '\0' ' ' <"/proc/$k/cmdline")"
done

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || fail "the service exited $rc after SIGTERM: $(tail -5 "$tmp/serve.log")"
grep -q 'every sandbox destroyed' "$tmp/serve.log" || fail "no clean shutdown: $(tail -5 "$tmp/serve.log")"
for k in $kids; do
  ! kill -0 "$k" 2>/dev/null || fail "sandbox process $k left running"
done
if pgrep -f "$root/" >/dev/null; then
  fail "processes of the package left running: $(pgrep -af "$root/")"
fi
echo "package: all checks passed ($(basename "$deb"))"
