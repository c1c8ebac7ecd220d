#!/usr/bin/env bash
# TLS interception with keep-alive to the client: Junction (`intercept`) against Squid
# with `ssl_bump` (Debian's squid-openssl), in the same run. Each contender runs on
# CPU 0 alone (Junction --threads 1, Squid -N with one worker); the load (CONNS
# keep-alive HTTPS connections through the proxy, bench/intercept_load.py) and the
# upstream (nginx, TLS, `return 200`, 32-byte body) share CPU 1, as in
# ../shared/bench. ROUNDS rounds; in each, both contenders take a turn (who goes first
# alternates) of WARMUP + DURATION seconds. Figure: the proxy's CPU (utime + stime of
# its process tree, Squid's certificate helper included) per 1000 requests, and the
# median over rounds of Junction's / Squid's.
#
# Figures (2026-12-05: 0.505 at 2000 req/s for both, 0.43 unpaced; after the
# per-request work was cut, 0.40 and 0.43 at 2000 req/s) are in
# docs/benchmarks.md.
#
#   cargo build --release
#   SQUID_ROOT=/path/to/extracted/squid-openssl bench/intercept.sh
#
# squid-openssl conflicts with the `squid` package the shared forward bench uses; to
# leave the system alone, extract it instead of installing it:
#   apt-get download squid-openssl && dpkg -x squid-openssl_*.deb /tmp/squid-openssl
#   SQUID_ROOT=/tmp/squid-openssl bench/intercept.sh
# (squid-common, installed with squid, provides the error pages and icons.)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
bin=${JUNCTION_BIN:-$root/target/release/junction}
shared=${SHARED_BENCH:-$root/../shared/bench}
squid_root=${SQUID_ROOT:-}
squid=$squid_root/usr/sbin/squid
certgen=$squid_root/usr/lib/squid/security_file_certgen
ROUNDS=${ROUNDS:-5} CONNS=${CONNS:-16} DURATION=${DURATION:-8} WARMUP=${WARMUP:-2}
# RATE=N: both contenders get N requests per second in all (CPU per request depends on
# the load, so compare at the same one); 0 (default): as fast as each answers.
RATE=${RATE:-0}
[ -x "$bin" ] || { echo "no junction binary at $bin: cargo build --release first" >&2; exit 1; }
[ -x "$squid" ] && [ -x "$certgen" ] || { echo "no squid with ssl_bump at $squid (see the header)" >&2; exit 1; }
"$squid" -v | grep -q -- '--with-openssl' || { echo "$squid is built without OpenSSL" >&2; exit 1; }

dir=${BENCH_RUN_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/intercept-bench.XXXXXX")}
chmod 755 "$dir"
echo "run dir: $dir"
site_port=18443 junction_port=18130 squid_port=18131

# The site: a certificate from its own CA, which both proxies trust (upstream_ca, cafile=).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=bench site CA" -keyout "$dir/site-ca.key" -out "$dir/site-ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
  -keyout "$dir/site.key" -out "$dir/site.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$dir/site.ext"
openssl x509 -req -in "$dir/site.csr" -CA "$dir/site-ca.pem" -CAkey "$dir/site-ca.key" \
  -CAcreateserial -days 2 -extfile "$dir/site.ext" -out "$dir/site.pem" 2>/dev/null
# The interception CA, the same for both; the load trusts it.
"$bin" ca init --cert "$dir/ca.pem" --key "$dir/ca.key" --force >/dev/null
cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir;
  uwsgi_temp_path $dir; scgi_temp_path $dir;
  server {
    listen 127.0.0.1:$site_port ssl;
    ssl_certificate $dir/site.pem;
    ssl_certificate_key $dir/site.key;
    location / { return 200 "hello from the bench upstream!!\n"; }
  }
}
CONF
pids=()
cleanup() {
  for pid in "${pids[@]}"; do python3 "$shared/lib/benchlib.py" stop "$pid" >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true; done
  nginx -p "$dir" -c "$dir/nginx.conf" -s stop 2>/dev/null || true
}
trap cleanup EXIT
taskset -c 1 nginx -p "$dir" -c "$dir/nginx.conf"

cat >"$dir/junction.toml" <<CONF
[[egress]]
name = "bench"
bind = "127.0.0.1:$junction_port"
allow = ["127.0.0.1/32", "localhost"]
exits = [{ url = "direct" }]
intercept = { hosts = ["localhost"], ca = { cert = "$dir/ca.pem", key = "$dir/ca.key" }, upstream_ca = "$dir/site-ca.pem" }
CONF
taskset -c 0 "$bin" run --config "$dir/junction.toml" --threads 1 </dev/null >"$dir/junction.log" 2>&1 &
junction_pid=$!
pids+=("$junction_pid")

# Squid: the shared forward bench's settings (no cache, no log), plus ssl_bump.
"$certgen" -c -s "$dir/ssl_db" -M 16MB >/dev/null
echo "127.0.0.1 localhost" >"$dir/hosts"
cat >"$dir/squid.conf" <<CONF
http_port 127.0.0.1:$squid_port ssl-bump generate-host-certificates=on dynamic_cert_mem_cache_size=16MB tls-cert=$dir/ca.pem tls-key=$dir/ca.key
sslcrtd_program $certgen -s $dir/ssl_db -M 16MB
sslcrtd_children 2 startup=1 idle=1
acl step1 at_step SslBump1
ssl_bump peek step1
ssl_bump bump all
tls_outgoing_options cafile=$dir/site-ca.pem
hosts_file $dir/hosts
workers 1
acl bench_clients src 127.0.0.1/32
http_access allow bench_clients
http_access deny all
cache deny all
cache_mem 0 MB
access_log none
cache_store_log none
cache_log $dir/cache.log
pid_filename $dir/squid.pid
coredump_dir $dir
pinger_enable off
max_filedescriptors 8192
client_persistent_connections on
server_persistent_connections on
shutdown_lifetime 1 seconds
CONF
if [ "$(id -u)" = 0 ] && getent passwd proxy >/dev/null; then chown -R proxy "$dir"; fi
"$squid" -k parse -f "$dir/squid.conf" >"$dir/squid-parse.log" 2>&1 || { tail -n 20 "$dir/squid-parse.log" >&2; exit 1; }
taskset -c 0 "$squid" -N -f "$dir/squid.conf" </dev/null >"$dir/squid.log" 2>&1 &
squid_pid=$!
pids+=("$squid_pid")

for port in $site_port $junction_port $squid_port; do
  python3 "$shared/lib/benchlib.py" wait-port "$port" --timeout 20 >/dev/null
done
python3 "$shared/lib/benchlib.py" pin "$junction_pid" 0 >/dev/null
python3 "$shared/lib/benchlib.py" pin "$squid_pid" 0 >/dev/null

turn() { # name port pid
  local line
  line=$(taskset -c 1 python3 "$here/intercept_load.py" --proxy-port "$2" --pid "$3" \
    --port "$site_port" --ca "$dir/ca.pem" --conns "$CONNS" --warmup "$WARMUP" --duration "$DURATION" --rate "$RATE")
  echo "{\"round\": $round, \"contender\": \"$1\", \"result\": $line}" | tee -a "$dir/raw.jsonl"
}
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then
    turn junction $junction_port "$junction_pid"; turn squid $squid_port "$squid_pid"
  else
    turn squid $squid_port "$squid_pid"; turn junction $junction_port "$junction_pid"
  fi
done

python3 - "$dir/raw.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["round"], {})[r["contender"]] = r["result"]
ratios, rps = [], {"junction": [], "squid": []}
print("round  junction cpu-ms/1k (req/s)   squid cpu-ms/1k (req/s)   ratio")
for n in sorted(by):
    j, s = by[n]["junction"], by[n]["squid"]
    ratio = j["cpu_ms_per_1k"] / s["cpu_ms_per_1k"]
    ratios.append(ratio)
    rps["junction"].append(j["rps"]); rps["squid"].append(s["rps"])
    print(f"{n:5}  {j['cpu_ms_per_1k']:8.1f} ({j['rps']:7.0f})        {s['cpu_ms_per_1k']:8.1f} ({s['rps']:7.0f})      {ratio:.3f}")
print(f"median of per-round ratios (Junction / Squid CPU per request): {statistics.median(ratios):.3f}")
print(f"median req/s: junction {statistics.median(rps['junction']):.0f}, squid {statistics.median(rps['squid']):.0f}")
PY
