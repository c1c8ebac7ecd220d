#!/usr/bin/env python3
"""Helpers of scripts/bench-mask (stdlib only). Not meant to be run by hand.

  ports N                     N free TCP ports on 127.0.0.1, one a line
  corpus-stats FILE           JSON: lines, bytes, mean body bytes, sha256
  replay --port P --prefix /masked/ --corpus FILE [--expect BODY] [--limit N]
                              POST every body (keep-alive) to 127.0.0.1:P<prefix>v1/chat/completions;
                              exit 0 if all answered 2xx (and BODY, if given), else print the
                              first failing line number (1-based) on stdout, details on stderr,
                              exit 1
  metrics --port P            the junction_fast_path_handoffs / junction_masking series of the
                              admin /metrics, as JSON
  summarize RAW --json OUT --meta META --corpus-stats CS --metrics M [--budget 1.15]
                              per-round masked/plain ratios and their median: table + JSON
"""
import argparse
import hashlib
import http.client
import json
import os
import socket
import statistics
import sys


def cmd_ports(a):
    socks = []
    try:
        for _ in range(a.n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        for s in socks:
            print(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()


def corpus_lines(path):
    with open(path, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\n").rstrip(b"\r")
            if line:
                yield line


def cmd_corpus_stats(a):
    sizes, h = [], hashlib.sha256()
    with open(a.file, "rb") as f:
        h.update(f.read())
    for line in corpus_lines(a.file):
        sizes.append(len(line))
    if not sizes:
        print(f"corpus-stats: no bodies in {a.file}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({
        "path": os.path.abspath(a.file), "sha256": h.hexdigest(), "bodies": len(sizes),
        "body_bytes_total": sum(sizes), "body_bytes_mean": round(sum(sizes) / len(sizes), 1),
        "body_bytes_median": statistics.median(sizes), "body_bytes_max": max(sizes),
    }))


def cmd_replay(a):
    target = a.prefix + "v1/chat/completions"
    conn = None
    for n, body in enumerate(corpus_lines(a.corpus), 1):
        if a.limit and n > a.limit:
            break
        for attempt in (1, 2):  # a kept-alive connection the server closed: reconnect once
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
                conn.request("POST", target, body=body,
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                got = r.read()
                break
            except (OSError, http.client.HTTPException) as e:
                conn = None
                if attempt == 2:
                    print(n)
                    print(f"replay: line {n} of the corpus via {target}: {e!r}", file=sys.stderr)
                    sys.exit(1)
        if r.will_close:
            conn.close()
            conn = None
        ok = 200 <= r.status < 300 and (a.expect is None or got == a.expect.encode())
        if not ok:
            print(n)
            print(f"replay: line {n} of the corpus via {target}: HTTP {r.status}, "
                  f"body {got[:600]!r}", file=sys.stderr)
            sys.exit(1)
    if conn is not None:
        conn.close()


def cmd_metrics(a):
    out = {"fast_path_handoffs": {}, "masking": {}}
    try:
        c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=5)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode("utf-8", "replace")
        c.close()
    except OSError as e:
        out["error"] = repr(e)
        print(json.dumps(out))
        return
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, _, value = line.rpartition(" ")
        try:
            v = float(value)
        except ValueError:
            continue
        if series.startswith("junction_fast_path_handoffs_total"):
            out["fast_path_handoffs"][series] = v
        elif series.startswith("junction_masking"):
            out["masking"][series] = v
    print(json.dumps(out))


def med(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None


def us_per_req(run):
    if run.get("proxy_cpu_s") is None or not run.get("requests"):
        return None
    return run["proxy_cpu_s"] / run["requests"] * 1e6


def cmd_summarize(a):
    runs = []
    with open(a.raw) as f:
        runs = [json.loads(l) for l in f if l.strip()]
    with open(a.meta) as f:
        meta = json.load(f)
    with open(a.corpus_stats) as f:
        corpus = json.load(f)
    metrics = {}
    if a.metrics and os.path.exists(a.metrics):
        with open(a.metrics) as f:
            metrics = json.load(f)
    kept = [r for r in runs if not r.get("discarded")]
    by_round = {}
    for r in kept:  # a redone measurement replaces the discarded one
        by_round.setdefault(r["rep"], {})[r["contender"]] = r
    rounds = []
    for rep in sorted(by_round):
        p, m = by_round[rep].get("plain"), by_round[rep].get("masked")
        if not p or not m:
            continue
        pu, mu = us_per_req(p), us_per_req(m)
        px, mx = p.get("proxy_vs_upstream_cost"), m.get("proxy_vs_upstream_cost")
        rounds.append({
            "round": rep, "order": "plain,masked" if rep % 2 else "masked,plain",
            "plain_us_per_req": round(pu, 3) if pu else None,
            "masked_us_per_req": round(mu, 3) if mu else None,
            "ratio_cpu_per_req": round(mu / pu, 4) if pu and mu else None,
            "plain_rps": p.get("rps"), "masked_rps": m.get("rps"),
            "ratio_x_up": round(mx / px, 4) if px and mx else None,
            "plain_util_pct": p.get("proxy_util_pct"), "masked_util_pct": m.get("proxy_util_pct"),
            "plain_p99_ms": p.get("lat_p99_ms"), "masked_p99_ms": m.get("lat_p99_ms"),
            "other_pct": max(p.get("foreign_pct") or 0, m.get("foreign_pct") or 0),
            "max_steal_pct": max(p.get("max_steal_pct") or 0, m.get("max_steal_pct") or 0),
            "problems": sorted(set(p.get("problems", []) + m.get("problems", []))),
        })
    ratios = [r["ratio_cpu_per_req"] for r in rounds if r["ratio_cpu_per_req"]]
    figure = med(ratios)
    summary = {
        "figure": "median over rounds of (masked CPU per request / plain CPU per request)",
        "median_ratio_cpu_per_req": round(figure, 4) if figure else None,
        "ratios_cpu_per_req": ratios,
        "median_ratio_x_up": med([r["ratio_x_up"] for r in rounds]),
        "median_plain_us_per_req": med([r["plain_us_per_req"] for r in rounds]),
        "median_masked_us_per_req": med([r["masked_us_per_req"] for r in rounds]),
        "median_plain_rps": med([r["plain_rps"] for r in rounds]),
        "median_masked_rps": med([r["masked_rps"] for r in rounds]),
        "request_body_bytes_mean": corpus.get("body_bytes_mean"),
        "rounds": len(rounds),
        "discarded_noisy_runs": sum(1 for r in runs if r.get("discarded")),
        "noisy_rounds_kept": sum(1 for r in rounds
                                 if any(p.startswith("noisy") for p in r["problems"])),
        "budget_ratio": a.budget,
        "within_budget": (figure <= a.budget) if figure else None,
        "masking_in_config": bool(meta.get("params", {}).get("mask_key")),
    }
    doc = {"meta": meta, "corpus": corpus, "summary": summary, "rounds": rounds,
           "metrics_at_end": metrics, "runs": runs}
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(doc, f, indent=1)

    def f_(v, spec):
        return format(v, spec) if isinstance(v, (int, float)) else "-"

    print()
    hdr = (f"{'round':>5}  {'order':<13} {'plain us/req':>12} {'masked us/req':>13} "
           f"{'masked/plain':>12} {'plain req/s':>11} {'masked req/s':>12} "
           f"{'x-up ratio':>10} {'util% p/m':>9} {'other%':>6}")
    print(hdr)
    print("-" * len(hdr))
    for r in rounds:
        util = f"{f_(r['plain_util_pct'], '.0f')}/{f_(r['masked_util_pct'], '.0f')}"
        print(f"{r['round']:>5}  {r['order']:<13} {f_(r['plain_us_per_req'], '12.2f')} "
              f"{f_(r['masked_us_per_req'], '13.2f')} {f_(r['ratio_cpu_per_req'], '12.3f')} "
              f"{f_(r['plain_rps'], '11.0f')} {f_(r['masked_rps'], '12.0f')} "
              f"{f_(r['ratio_x_up'], '10.3f')} {util:>9} {f_(r['other_pct'], '6.0f')}"
              + (f"  !! {'; '.join(r['problems'])}" if r["problems"] else ""))
    print("-" * len(hdr))
    s = summary
    print(f"{'median':>5}  {'':<13} {f_(s['median_plain_us_per_req'], '12.2f')} "
          f"{f_(s['median_masked_us_per_req'], '13.2f')} {f_(s['median_ratio_cpu_per_req'], '12.3f')} "
          f"{f_(s['median_plain_rps'], '11.0f')} {f_(s['median_masked_rps'], '12.0f')} "
          f"{f_(s['median_ratio_x_up'], '10.3f')}")
    print()
    print(f"request body: {f_(corpus.get('body_bytes_mean'), '.0f')} bytes per request on average "
          f"({corpus.get('bodies')} corpus bodies, cycled in order; median "
          f"{corpus.get('body_bytes_median')}, max {corpus.get('body_bytes_max')})")
    if figure:
        verdict = ("within" if figure <= a.budget else "OVER")
        print(f"masking costs {100 * (figure - 1):+.1f}% CPU per request: median of "
              f"{len(ratios)} per-round masked/plain ratios = {figure:.3f} "
              f"[{min(ratios):.3f}..{max(ratios):.3f}] ({verdict} the {a.budget:.2f} budget)")
    else:
        print("no complete round: no figure")
    if summary["noisy_rounds_kept"]:
        print(f"!! {summary['noisy_rounds_kept']} of {len(rounds)} rounds kept a noisy measurement "
              "(other processes used CPU; retries exhausted): run again on a quiet machine")
    if not summary["masking_in_config"]:
        print("NOTE: MASK_KEY was empty: both routes are identical (mechanics check only; "
              "the ratio should be ~1.0)")
    hand = metrics.get("fast_path_handoffs") or {}
    if hand:
        print("fast-path hand-offs at the end: "
              + ", ".join(f"{k} {v:.0f}" for k, v in sorted(hand.items())))
    mask = metrics.get("masking") or {}
    if mask:
        total = sum(v for k, v in mask.items() if k.startswith("junction_masking_findings_total"))
        print(f"masking series at the end: {len(mask)}; findings counted in all: {total:.0f}")
    print(f"\nresults: {a.json}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ports"); p.add_argument("n", type=int); p.set_defaults(f=cmd_ports)
    p = sub.add_parser("corpus-stats"); p.add_argument("file"); p.set_defaults(f=cmd_corpus_stats)
    p = sub.add_parser("replay"); p.add_argument("--port", type=int, required=True)
    p.add_argument("--prefix", required=True); p.add_argument("--corpus", required=True)
    p.add_argument("--expect"); p.add_argument("--limit", type=int)
    p.set_defaults(f=cmd_replay)
    p = sub.add_parser("metrics"); p.add_argument("--port", type=int, required=True)
    p.set_defaults(f=cmd_metrics)
    p = sub.add_parser("summarize"); p.add_argument("raw")
    p.add_argument("--json", required=True); p.add_argument("--meta", required=True)
    p.add_argument("--corpus-stats", required=True); p.add_argument("--metrics")
    p.add_argument("--budget", type=float, default=1.15)
    p.set_defaults(f=cmd_summarize)
    a = ap.parse_args()
    try:
        a.f(a)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
