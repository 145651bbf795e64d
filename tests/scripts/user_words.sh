# Words a user understands: no "seed" (internal project history) in the README, docs/, the
# example and packaged configs, the public headers, the client packages (clients/: READMEs
# and sources), the Python example, the load scenarios or any command's --help. Allowed:
# "seed" as a random-number seed (the sim's and load harness's `seed:` key,
# a fuzzer's seed corpus) -- and other systems are named by their names (llm-runtime,
# OpenHands, the code runner).
set -euo pipefail
src="$WARMPOOL_SOURCE_DIR"
bin="$WARMPOOL_BUILD_DIR/bin"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Every --help: the top level, each subcommand it lists, and the demo.
"$bin/warmpool" --help >"$tmp/help.txt"
subs=$(awk '/^Subcommands:/ {on=1; next} on && /^  [a-z]/ {print $1}' "$tmp/help.txt")
[ -n "$subs" ] || { echo "FAIL: no subcommands in warmpool --help" >&2; exit 1; }
for sub in $subs; do
  echo "== warmpool $sub --help" >>"$tmp/help.txt"
  "$bin/warmpool" "$sub" --help >>"$tmp/help.txt"
done
"$bin/warmpool-demo" --help >>"$tmp/help.txt"
for sub in run serve exec stats init tool check-config; do
  grep -q "== warmpool $sub --help" "$tmp/help.txt" || { echo "FAIL: warmpool --help does not list $sub" >&2; exit 1; }
done

cd "$src"
files=(README.md docs/*.md config/warmpool.example.yaml packaging/* include/warmpool/*.hpp
       loadtest/scenarios/*.yaml examples/python_client.py clients/*/README.md
       clients/python/pyproject.toml clients/python/warmpool/*.py clients/typescript/src/*.ts)
random_seed='(^|[^a-z])seed: |random seed|re-seed|hash seed|seeded with|seed corpus|seeds the |`seed`|uint64_t seed = '
found=$( { grep -sHni seed "${files[@]}" || true; grep -Hni seed "$tmp/help.txt" || true; } |
        grep -Eiv "$random_seed" || true)
if [ -n "$found" ]; then
  echo "FAIL: internal words in user-facing text:" >&2
  echo "$found" >&2
  exit 1
fi
# The scenario files are named for the system they model, not by project history.
ls loadtest/scenarios bench | grep -i seed && { echo "FAIL: file names say seed" >&2; exit 1; }
echo "user_words: none found"
