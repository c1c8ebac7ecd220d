#!/usr/bin/env bash
# Paired A/B of two Junction builds or two configs, for changes smaller than the noise
# between harness runs: A and B take turns (each going first in every other round),
# ROUNDS times, under the same load (the harness' shape: proxy on CPU 0 with
# --threads 1; wrk -t1 -c64 and an nginx upstream on CPU 1; 2 s warm-up, 10 s
# measured). Prints the proxy's CPU per request (utime + stime from /proc) and req/s
# for each turn, then the median of the per-round ratios.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY                         # two builds, same config
#   EXTRA_B=$'[access_log]\npath = "/tmp/ab/access.log"' bench/ab.sh BIN BIN   # two configs
#   (a log at $AB_DIR/access.log is removed before each turn, so the disk does not fill)
#
# Needs nginx, wrk, curl and python3 (../shared/bench/setup.sh installs them).
set -euo pipefail
A=$1 B=$2
ROUNDS=${ROUNDS:-5} EXTRA_A=${EXTRA_A:-} EXTRA_B=${EXTRA_B:-}
dir=${AB_DIR:-/tmp/ab}
mkdir -p "$dir"
cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir;
  uwsgi_temp_path $dir; scgi_temp_path $dir;
  server { listen 127.0.0.1:18999; location / { return 200 "hello from the bench upstream!!\n"; } }
}
CONF
taskset -c 1 nginx -p "$dir" -c "$dir/nginx.conf"
trap 'nginx -p "$dir" -c "$dir/nginx.conf" -s stop 2>/dev/null' EXIT

config() {
  cat >"$dir/junction.toml" <<CONF
[admin]
bind = "127.0.0.1:19901"
[[listeners]]
name = "bench"
bind = "127.0.0.1:18998"
[[pools]]
name = "upstream"
endpoints = [ { url = "http://127.0.0.1:18999" } ]
[[routes]]
name = "all"
listener = "bench"
match = { path_prefix = "/" }
pool = "upstream"
$1
CONF
}

# run BINARY EXTRA -> "cpu_us_per_request requests_per_second"
run() {
  config "$2"
  rm -f "$dir/access.log" # an access log configured at $dir/access.log starts empty each turn
  taskset -c 0 "$1" run --config "$dir/junction.toml" --threads 1 >"$dir/junction.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null 127.0.0.1:18998/ && break; sleep 0.1; done
  taskset -c 1 wrk -t1 -c64 -d2s http://127.0.0.1:18998/ >/dev/null
  local before after out requests
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(taskset -c 1 wrk -t1 -c64 -d10s http://127.0.0.1:18998/)
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  python3 -c "print(f'{($after - $before) / 100 / $requests * 1e6:.2f} {$requests / 10:.0f}')"
}

ratios=()
for round in $(seq "$ROUNDS"); do
  # Odd rounds run A first, even rounds B first, so that neither gains from going first.
  if (( round % 2 )); then
    read -r a_us a_rps < <(run "$A" "$EXTRA_A")
    read -r b_us b_rps < <(run "$B" "$EXTRA_B")
  else
    read -r b_us b_rps < <(run "$B" "$EXTRA_B")
    read -r a_us a_rps < <(run "$A" "$EXTRA_A")
  fi
  ratio=$(python3 -c "print(f'{$b_us / $a_us:.3f}')")
  ratios+=("$ratio")
  echo "round $round: A $a_us us/req $a_rps req/s   B $b_us us/req $b_rps req/s   B/A $ratio"
done
python3 -c "import statistics, sys; r = sorted(map(float, sys.argv[1:])); print(f'B/A cpu per request: median {statistics.median(r):.3f}, range {r[0]:.3f}..{r[-1]:.3f} over {len(r)} rounds')" "${ratios[@]}"
