#!/usr/bin/env bash
# Contender: Junction terminating TLS with the bench certificate (tls/cert.pem), one
# worker thread, no access log: the harness' junction.sh with `tls` on the listener.
# Its admin listener (port + 1000) serves junction_tls_handshakes_total, which says
# how many handshakes were resumed. Contract: see contenders/reverse/nginx.sh.
set -euo pipefail
port=$1 upstream=$2 dir=$3
bench=$(cd "$(dirname "$0")/../.." && pwd)
bin=${JUNCTION_BIN:-target/release/junction}
if [ ! -x "$bin" ]; then
  echo "no junction binary at $bin: run cargo build --release or set JUNCTION_BIN" >&2
  exit 3
fi
cat >"$dir/junction.toml" <<CONF
[admin]
bind = "127.0.0.1:$((port + 1000))"

[[listeners]]
name = "bench"
bind = "127.0.0.1:$port"
tls = { cert = "$bench/tls/cert.pem", key = "$bench/tls/key.pem" }

[[pools]]
name = "upstream"
endpoints = [ { url = "http://$upstream" } ]

[[routes]]
name = "all"
listener = "bench"
match = { path_prefix = "/" }
pool = "upstream"
CONF
"$bin" run --config "$dir/junction.toml" --threads 1 </dev/null >"$dir/stdout.log" 2>&1 &
echo $!
