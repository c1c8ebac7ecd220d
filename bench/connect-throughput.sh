#!/usr/bin/env bash
# CONNECT tunnel throughput per CPU-second: Junction's egress listener against Squid,
# in the same run (issue #18's figure: Junction's bytes per proxy CPU-second >= Squid's).
# A client opens a CONNECT tunnel through the proxy and downloads one large file through
# it; the proxy only copies bytes both ways, so the figure is the cost of its relay.
#
# Usage (from the project root, after cargo build --release):
#   bench/connect-throughput.sh                       # 5 rounds, 256 MB per transfer
#   ROUNDS=7 SIZE_MB=512 TRANSFERS=4 PARALLEL=2 bench/connect-throughput.sh
#   CONTENDERS="squid junction" JUNCTION_BIN=/tmp/junction bench/connect-throughput.sh
#
# Pinned as ../shared/bench pins: the proxy on CPU 0 (PROXY_CPU), the upstream (one
# nginx process with sendfile) and the clients (curl --proxytunnel) on CPU 1 (LOAD_CPU).
# Per round and contender: PARALLEL clients each download the file TRANSFERS times; the
# proxy's CPU is utime+stime of its process from /proc/PID/stat, before and after.
# Prints MB per proxy CPU-second and MB/s per round, then the medians of the per-round
# ratios junction / squid. Ports 18480 (upstream), 18481 (squid), 18482 (junction).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(realpath "${JUNCTION_BIN:-$root/target/release/junction}")
rounds=${ROUNDS:-5}
size_mb=${SIZE_MB:-256}
transfers=${TRANSFERS:-4}
parallel=${PARALLEL:-2}
proxy_cpu=${PROXY_CPU:-0}
load_cpu=${LOAD_CPU:-1}
contenders=${CONTENDERS:-"squid junction"}
for tool in nginx squid curl taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool (../shared/bench/setup.sh)" >&2; exit 3; }
done
[ -x "$bin" ] || { echo "no junction binary at $bin: cargo build --release" >&2; exit 3; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/connect-throughput.XXXXXX")
chmod 755 "$dir"
echo "run dir: $dir" >&2
mkdir -p "$dir"/tmp/{body,proxy,fastcgi,uwsgi,scgi} "$dir/www"
head -c "$((size_mb * 1024 * 1024))" /dev/urandom >"$dir/www/big"

cat >"$dir/upstream.conf" <<CONF
worker_processes 1; pid $dir/upstream.pid; error_log $dir/upstream.err;
events { worker_connections 1024; }
http {
  access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path $dir/tmp/body; proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi; uwsgi_temp_path $dir/tmp/uwsgi; scgi_temp_path $dir/tmp/scgi;
  server { listen 127.0.0.1:18480; root $dir/www; }
}
CONF
sed -e "s|@PORT@|18481|g" -e "s|@DIR@|$dir|g" "$root/../shared/bench/conf/squid-forward.conf" >"$dir/squid.conf"
if [ "$(id -u)" = 0 ] && getent passwd proxy >/dev/null; then chown proxy "$dir"; fi
cat >"$dir/junction.toml" <<CONF
[admin]
bind = "127.0.0.1:19482"

[[egress]]
name = "bench"
bind = "127.0.0.1:18482"
allow = ["127.0.0.1/32"]
exits = [ { url = "direct" } ]
CONF

taskset -c "$load_cpu" nginx -p "$dir" -c "$dir/upstream.conf"
proxy_pid=""
cleanup() {
  [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
  nginx -p "$dir" -c "$dir/upstream.conf" -s stop 2>/dev/null || true
}
trap cleanup EXIT

start() {   # NAME -> proxy_pid, port
  case $1 in
    squid)
      port=18481
      taskset -c "$proxy_cpu" squid -N -f "$dir/squid.conf" </dev/null >"$dir/squid.out" 2>&1 &
      proxy_pid=$! ;;
    junction)
      port=18482
      taskset -c "$proxy_cpu" "$bin" run --config "$dir/junction.toml" --threads 1 </dev/null >"$dir/junction.out" 2>&1 &
      proxy_pid=$! ;;
    *) echo "unknown contender $1" >&2; exit 2 ;;
  esac
  for _ in $(seq 200); do
    curl -s -o /dev/null -p -x "http://127.0.0.1:$port" http://127.0.0.1:18480/ && return
    sleep 0.1
  done
  echo "$1 did not start (see $dir)" >&2; exit 1
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
fetch_all() {   # PORT: PARALLEL clients, TRANSFERS downloads each; fails on a short file
  local pids=()
  for _ in $(seq "$parallel"); do
    (
      for _ in $(seq "$transfers"); do
        got=$(taskset -c "$load_cpu" curl -sS -p -x "http://127.0.0.1:$1" -o /dev/null \
          -w '%{size_download}' http://127.0.0.1:18480/big)
        [ "$got" = "$((size_mb * 1024 * 1024))" ] || { echo "short download: $got" >&2; exit 1; }
      done
    ) &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
}

hz=$(getconf CLK_TCK)
results="$dir/results.tsv"
printf 'round\tcontender\tMB\tcpu_s\twall_s\tMB_per_cpu_s\tMB_per_s\n' | tee "$results"
for round in $(seq "$rounds"); do
  for contender in $contenders; do
    start "$contender"
    fetch_all "$port"   # warm-up
    t0=$(ticks "$proxy_pid"); w0=$(date +%s.%N)
    fetch_all "$port"
    t1=$(ticks "$proxy_pid"); w1=$(date +%s.%N)
    kill "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true; proxy_pid=""
    python3 -c "
mb = $size_mb * $transfers * $parallel; cpu = ($t1 - $t0) / $hz; wall = $w1 - $w0
print(f'$round\t$contender\t{mb}\t{cpu:.2f}\t{wall:.2f}\t{mb / cpu if cpu else float(\"inf\"):.0f}\t{mb / wall:.0f}')" | tee -a "$results"
  done
done

python3 - "$results" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
by = {}
for r in rows:
    by.setdefault(r["round"], {})[r["contender"]] = r
ratios = {"MB_per_cpu_s": [], "MB_per_s": []}
for r in by.values():
    if "junction" in r and "squid" in r:
        for k in ratios:
            ratios[k].append(float(r["junction"][k]) / float(r["squid"][k]))
for k, v in ratios.items():
    if v:
        print(f"junction / squid, {k}: median {statistics.median(v):.2f} "
              f"(rounds: {', '.join(f'{x:.2f}' for x in v)})")
PY
