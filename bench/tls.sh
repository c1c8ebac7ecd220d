#!/usr/bin/env bash
# TLS termination benchmark (issue #16's figures): nginx and Junction terminate TLS
# with one ECDSA P-256 certificate, in front of the shared harness' upstream, in the
# same run. Modes: keepalive, handshake-full, handshake-resumed (bench/tls/tls-reverse.sh).
#
# Usage (from the project root, after cargo build --release):
#   bench/tls.sh -o /tmp/tls.json                 # REPEATS=5 by default here
#   MODES=handshake-full REPEATS=3 bench/tls.sh
#   bench/tls.sh verify    # 2 s per mode with nginx logging: protocol, cipher, curve
#                          # and resumption per mode, on both servers
#   scripts/bench-ratios /tmp/tls.json nginx-tls  # medians of per-round ratios
#
# Like bench/variants.sh, it copies ../shared/bench to a temporary overlay and adds
# its contender scripts, config and bench script there; nothing in ../shared changes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
# The harness sits beside the checkout (../shared/bench), or beside the worktrees' parent.
shared=${SHARED_BENCH:-$root/../shared/bench}
[ -d "$shared" ] || shared=$root/../../shared/bench
bin=${JUNCTION_BIN:-$root/target/release/junction}
[ -x "$bin" ] || { echo "no junction binary at $bin: cargo build --release first" >&2; exit 1; }
export JUNCTION_BIN=$bin

overlay=$(mktemp -d "${TMPDIR:-/tmp}/junction-tls-bench.XXXXXX")
cp -r "$shared"/. "$overlay"/
chmod -R u+w "$overlay"
cp "$here/tls/nginx-tls.sh" "$here/tls/junction-tls.sh" "$overlay/contenders/reverse/"
cp "$here/tls/nginx-tls.conf" "$overlay/conf/"
cp "$here/tls/tls-reverse.sh" "$overlay/"
mkdir -p "$overlay/tls"
# One ECDSA P-256 certificate for both servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj /CN=bench.junction.test \
  -addext "subjectAltName=DNS:bench.junction.test,IP:127.0.0.1" \
  -keyout "$overlay/tls/key.pem" -out "$overlay/tls/cert.pem" 2>/dev/null
chmod 644 "$overlay/tls/key.pem"
echo "bench overlay: $overlay"
cd "$root"
if [ "${1:-}" = verify ]; then
  shift
  export VERIFY=1 NGINX_TLS_LOG=1
  : "${DURATION:=2}" "${WARMUP:=0}" "${REPEATS:=1}" "${QUIET_WAIT:=0}"
  export DURATION WARMUP REPEATS QUIET_WAIT
  exec "$overlay/tls-reverse.sh" -o "${TMPDIR:-/tmp}/tls-verify.json" "$@"
fi
: "${REPEATS:=5}"
export REPEATS
exec "$overlay/tls-reverse.sh" "$@"
