#!/usr/bin/env bash
# TLS termination benchmark, run by bench/tls.sh from an overlay of the shared harness
# (../shared/bench): nginx and Junction terminate TLS with the same ECDSA P-256
# certificate in front of the harness' plain-HTTP upstream, measured by the harness'
# rules (proxy alone on PROXY_CPU, client + upstream on LOAD_CPU, CPU seconds per
# request from /proc, interleaved rounds, noise retries). Modes:
#   keepalive          wrk over https, 64 connections reused: TLS record cost only
#   handshake-full     ab over https: a new connection and a full handshake per
#                      request (ab never offers a session), HTTP/1.0
#   handshake-resumed  wrk over https with `Connection: close`: a new connection per
#                      request that resumes the previous one's TLS 1.3 session
#                      (OpenSSL keeps the ticket on wrk's reused SSL object)
# `bench/tls.sh verify` checks what each mode negotiates and resumes, on both servers.
BENCH=tls
CONTENDER_KIND=reverse
. "$(dirname "$0")/lib/common.sh"

TABLE="
nginx-tls     18091
junction-tls  18093
"
: "${MODES:=keepalive handshake-full handshake-resumed}"
need ab; need curl

contender_target() {   # NAME PORT -> T_URL T_ABS T_ABPROXY
  T_URL="https://127.0.0.1:$2/"; T_ABS=""; T_ABPROXY=""
}
contender_check() {    # PORT: one request through TLS returns the upstream's body
  local i body
  for i in 1 2 3 4 5 6 7 8 9 10; do
    body=$(curl -sk --max-time 5 "https://127.0.0.1:$1/") && [ "$body"$'\n' = "$UPSTREAM_BODY" ] && return 0
    sleep 0.5
  done
  echo "unexpected body through 127.0.0.1:$1: $body" >&2
  return 1
}

# The harness' run_load with a client per mode; CLIENT tells `blib record` which
# output it parses.
run_load() {
  local out=$1 secs=$2 mode=$3 url=$4 rc=0
  local limit=$((secs + LOAD_TIMEOUT_PAD)) connhdr=""
  case $mode in
    keepalive|handshake-resumed)
      CLIENT=wrk
      [ "$mode" = handshake-resumed ] && connhdr=close
      BENCH_ABS_URL="" BENCH_CONN_HDR=$connhdr timeout -k 5 "$limit" \
        taskset -c "$LOAD_CPU" \
        wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --timeout 5s --latency \
        -s "$BENCH_DIR/lib/request.lua" "$url" >"$out" 2>&1 || rc=$?
      ;;
    handshake-full)
      CLIENT=ab
      timeout -k 5 "$limit" taskset -c "$LOAD_CPU" \
        ab -q -c "$CONNS" -t "$secs" -n 100000000 -s 5 -r "$url" >"$out" 2>&1 || rc=$?
      ;;
    *) die "unknown mode $mode (keepalive handshake-full handshake-resumed)" ;;
  esac
  [ "${VERIFY:-}" = 1 ] && verify_note "$mode" "$url" "$out"
  return "$rc"
}

# VERIFY=1 (bench/tls.sh verify): after each load, what the server saw of it. nginx:
# its access log (NGINX_TLS_LOG=1) since the last look; Junction: its handshake
# counters since the last look.
declare -A SEEN
verify_note() {
  local mode=$1 url=$2 out=$3 port lines before now
  port=${url##*:}; port=${port%/}
  if [ -f "$RUN_DIR/nginx-tls/access.log" ] && [ "$port" = "$(awk '$1 == "nginx-tls" {print $2}' <<<"$TABLE")" ]; then
    lines=$(wc -l <"$RUN_DIR/nginx-tls/access.log")
    before=${SEEN[nginx]:-0}; SEEN[nginx]=$lines
    echo "   verify nginx-tls $mode: $(tail -n +"$((before + 1))" "$RUN_DIR/nginx-tls/access.log" | sort | uniq -c | sort -rn | awk '{printf "%s x [%s %s %s reused=%s]; ", $1, $2, $3, $4, $5}')"
  else
    now=$(curl -s --max-time 5 "http://127.0.0.1:$((port + 1000))/metrics" | grep '^junction_tls_handshakes' | tr '\n' ' ')
    echo "   verify junction-tls $mode: before [${SEEN[junction]:-none}] after [$now]"
    SEEN[junction]=$now
  fi
  echo "   load: $(grep -E 'requests in|^Complete requests|^SSL/TLS Protocol' "$out" | tr '\n' ' ')"
}

# Junction counts full and resumed handshakes: keep its totals before stopping it.
eval "$(declare -f take_down | sed '1s/take_down/harness_take_down/')"
take_down() {
  local port
  port=$(awk -v n="$1" '$1 == n {print $2}' <<<"$TABLE")
  case $1 in junction*)
    curl -s --max-time 5 "http://127.0.0.1:$((port + 1000))/metrics" \
      | grep '^junction_tls_handshakes' | tee "$RUN_DIR/$1/handshakes.txt" || true ;;
  esac
  harness_take_down "$1"
}

parse_args "$@"
init_run
openssl x509 -in "$BENCH_DIR/tls/cert.pem" -noout -subject -ext subjectAltName | tr '\n' ' '
echo
start_upstream
run_all "$TABLE"
finish
