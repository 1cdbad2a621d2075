#!/usr/bin/python3
"""Evaluates every PromQL expression of the Grafana dashboard and the alert rules against a live
Prometheus (HTTP API /api/v1/query), for scripts/monitoring_check.sh.

    promql_check.py --prometheus http://127.0.0.1:PORT --dashboard cellflux.json \
        --rules alerts.yml [--metrics-url http://127.0.0.1:PORT/metrics] [--core-titles T,...]

Every expression must parse and evaluate (status success). The panels named by --core-titles
must return at least one non-NaN sample for each of their queries. With --metrics-url, every
cellflux_* metric an expression names must be exported by the server (catches renames). The
rule groups Prometheus loaded must all be healthy (no evaluation error). Exit 0 = all good.
"""
import argparse
import json
import math
import re
import sys
import urllib.parse
import urllib.request

import yaml

# Grafana's variables → values Prometheus accepts. Traffic in the check is within the last
# minute, so a 1m window sees it; $instance = all replicas.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h", "$instance": ".*"}


def grafana_to_promql(expr):
    for k, v in GRAFANA_VARS.items():
        expr = expr.replace(k, v)
    if "$" in re.sub(r"\{\{.*?\}\}", "", expr):
        raise ValueError("unknown Grafana variable in: " + expr)
    # label_values(QUERY, label) is a Grafana templating function: evaluate QUERY.
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", expr, re.S)
    return m.group(1) if m else expr


def get(url, params=None, timeout=10):
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def query(prom, expr):
    """(ok, error, samples) of an instant query; samples = list of (labels, float)."""
    try:
        body = json.loads(get(prom + "/api/v1/query", {"query": expr}))
    except urllib.error.HTTPError as e:
        body = json.loads(e.read().decode() or "{}")
    if body.get("status") != "success":
        return False, body.get("error", "no error message"), []
    data = body["data"]
    if data["resultType"] == "scalar":
        return True, "", [({}, float(data["result"][1]))]
    if data["resultType"] == "vector":
        return True, "", [(s["metric"], float(s["value"][1])) for s in data["result"]]
    return True, "", []


def expressions(dashboard_path, rules_path):
    """[(origin, title, promql)] from the dashboard (panels, rows' panels, templating) and rules."""
    out = []
    dash = json.load(open(dashboard_path))
    panels = list(dash.get("panels", []))
    for p in list(panels):
        panels.extend(p.get("panels", []))  # collapsed rows
    for p in panels:
        for t in p.get("targets", []):
            if t.get("expr"):
                out.append(("dashboard", p.get("title", "?"), grafana_to_promql(t["expr"])))
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query" and q:
            out.append(("dashboard", "variable " + v["name"], grafana_to_promql(q)))
    for g in yaml.safe_load(open(rules_path))["groups"]:
        for r in g["rules"]:
            out.append(("rules", r.get("alert") or r.get("record"), r["expr"]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prometheus", required=True)
    ap.add_argument("--dashboard", required=True)
    ap.add_argument("--rules", required=True)
    ap.add_argument("--metrics-url")
    ap.add_argument("--core-titles", default="")
    args = ap.parse_args()
    core = {t.strip() for t in args.core_titles.split(",") if t.strip()}
    failures = []
    seen_titles = set()
    exprs = expressions(args.dashboard, args.rules)
    for origin, title, expr in exprs:
        seen_titles.add(title)
        ok, err, samples = query(args.prometheus, expr)
        values = [v for _, v in samples if not math.isnan(v)]
        state = "ok" if ok else "ERROR " + err
        print(f"[{origin}] {title}: {state}; {len(samples)} series, {len(values)} non-NaN"
              f"{' e.g. ' + format(values[0], '.4g') if values else ''}\n    {' '.join(expr.split())}")
        if not ok:
            failures.append(f"{title}: does not evaluate: {err}")
        elif title in core and not values:
            failures.append(f"{title}: core panel returned no data: {expr}")
    for t in core - seen_titles:
        failures.append(f"core panel {t!r} is not in the dashboard")

    if args.metrics_url:
        exported = set(re.findall(r"^(cellflux_\w+?)(?:_bucket|_sum|_count)?[{ ]", get(args.metrics_url), re.M))
        named = set()
        for _, _, expr in exprs:
            for m in re.findall(r"\b(cellflux_\w+)", expr):
                named.add(re.sub(r"_(bucket|sum|count)$", "", m))
        print(f"server exports {len(exported)} cellflux metrics; expressions name {len(named)}")
        for m in sorted(named - exported):
            failures.append(f"{m} is used by the dashboard/rules but the server does not export it")

    rules = json.loads(get(args.prometheus + "/api/v1/rules"))["data"]["groups"]
    nrules = 0
    for g in rules:
        for r in g["rules"]:
            nrules += 1
            if r.get("health") not in ("ok", "unknown"):
                failures.append(f"rule {r['name']}: {r.get('health')}: {r.get('lastError')}")
    print(f"Prometheus loaded {nrules} rules in {len(rules)} groups")
    if nrules == 0:
        failures.append("Prometheus loaded no alert rules")

    print(f"{len(exprs)} expressions checked")
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
