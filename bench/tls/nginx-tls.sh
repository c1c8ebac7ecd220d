#!/usr/bin/env bash
# Contender: nginx terminating TLS (conf/nginx-tls.conf) with the bench certificate
# (tls/cert.pem). NGINX_TLS_LOG=1 logs each request's protocol, cipher, curve and
# whether the session was resumed (only for `bench/tls.sh verify`: logging costs).
# Contract: see contenders/reverse/nginx.sh.
set -euo pipefail
port=$1 upstream=$2 dir=$3
bench=$(cd "$(dirname "$0")/../.." && pwd)
command -v nginx >/dev/null || { echo "nginx not installed" >&2; exit 3; }
mkdir -p "$dir/tmp"
log=off
[ "${NGINX_TLS_LOG:-}" = 1 ] && log="$dir/access.log tls"
sed -e "s|@PORT@|$port|g" -e "s|@UPSTREAM@|$upstream|g" -e "s|@DIR@|$dir|g" \
  -e "s|@CERT@|$bench/tls/cert.pem|g" -e "s|@KEY@|$bench/tls/key.pem|g" \
  -e "s|@ACCESS_LOG@|$log|g" "$bench/conf/nginx-tls.conf" >"$dir/nginx.conf"
nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log" </dev/null >"$dir/stdout.log" 2>&1 &
echo $!
