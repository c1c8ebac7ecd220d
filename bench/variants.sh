#!/usr/bin/env bash
# Runs ../shared/bench/reverse.sh with extra Junction rows in the same run, so that
# variants are compared under the same machine conditions:
#   junction-bare  metrics off, no access log
#   junction-obs   metrics on and the JSON access log to a file
# (the plain `junction` row has metrics on and no access log: the defaults).
#
# Usage (from the project root, after cargo build --release):
#   bench/variants.sh -o /tmp/variants.json
#   CONTENDERS="nginx junction-bare junction-obs" bench/variants.sh
#
# The harness derives its folder from its own location and its contender table is
# part of reverse.sh, so this copies it to a temporary overlay, adds two contender
# scripts and two table rows there, and runs the copy. Nothing in ../shared changes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
shared=${SHARED_BENCH:-$root/../shared/bench}
bin=${JUNCTION_BIN:-$root/target/release/junction}
[ -x "$bin" ] || { echo "no junction binary at $bin: cargo build --release first" >&2; exit 1; }

overlay=$(mktemp -d "${TMPDIR:-/tmp}/junction-bench-overlay.XXXXXX")
cp -r "$shared"/. "$overlay"/
chmod -R u+w "$overlay"
for variant in bare obs; do
  cat >"$overlay/contenders/reverse/junction-$variant.sh" <<SCRIPT
#!/usr/bin/env bash
# Junction with the "$variant" settings appended to the harness' config (bench/junction-variant).
exec env JUNCTION_VARIANT=$variant JUNCTION_REAL_BIN="$bin" JUNCTION_BIN="$here/junction-variant" \\
  "$overlay/contenders/reverse/junction.sh" "\$@"
SCRIPT
  chmod +x "$overlay/contenders/reverse/junction-$variant.sh"
done
# Two more rows in the contender table (ports next to the harness' own).
sed -i 's/^pingora   18084$/pingora   18084\njunction-bare 18085\njunction-obs  18086/' "$overlay/reverse.sh"
grep -q '^junction-obs' "$overlay/reverse.sh" || { echo "could not extend the contender table of $overlay/reverse.sh" >&2; exit 1; }
echo "bench overlay: $overlay"
cd "$root"
exec "$overlay/reverse.sh" "$@"
