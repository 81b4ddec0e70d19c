#!/usr/bin/env python3
"""Every trace of the public suite on h100-sxm and a100-sxm4, for the firmware default, every shipped
policy and every peer, side by side: energy saved and slowdown per cell, and for `balanced` the
ledger's own estimate of its saving next to the true one.

    python tools/bench_policies.py            # prints markdown (what docs/benchmarks.md holds)
    python tools/bench_policies.py --json

Oracles (governor/lab/oracle_search.py), found by search on the simulator, bound what is possible at
the `balanced` budget (3% of end time and of mean request latency): `oracle` (the best plan found),
`oracle_static` (the best fixed clock or power limit), `oracle_power` (a power limit per phase).
Capture is a policy's saving divided by `oracle`'s. Cells of traces with arriving work show the
mean request latency slowdown as a third figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from governor.lab.simulate import DEFAULT_POLICY, oracle_runs, peer_policies, run_trace  # noqa: E402
from governor.policy import load_policy  # noqa: E402
from governor.sim.spec import load_spec  # noqa: E402
from governor.sim.trace import load_trace, suite_traces  # noqa: E402

POLICIES = ["balanced", "batch", "max-savings", "pid-util", "thermal"]
GPUS = ["h100-sxm", "a100-sxm4"]


def _row(gpu: str, name: str, label: str, r, ref) -> dict:
    """One cell: a run against the firmware default of the same trace."""
    lat = r.latency_slowdowns(ref)
    return {"gpu": gpu, "trace": name, "policy": label, "saved": 1 - r.energy_j / ref.energy_j,
            "slowdown": r.seconds / ref.seconds - 1, "latency_slowdown": lat[0] if lat else None,
            "latency_p99_slowdown": lat[1] if lat else None, "true_saved_j": ref.energy_j - r.energy_j,
            "default_energy_j": ref.energy_j, "ledger_saved_j": r.ledger_saved_j, "ledger_lo_j": r.ledger_saved_lo_j,
            "ledger_hi_j": r.ledger_saved_hi_j, "reversals": r.reversals}


def measure_cell(gpu: str, name: str) -> list[dict]:
    """Default, the oracles, every policy and every peer on one trace of one GPU."""
    spec = load_spec(gpu)
    policies = [load_policy(p) for p in POLICIES] + peer_policies(spec)
    trace = load_trace(name)
    ref = run_trace(spec, trace, DEFAULT_POLICY)
    oracles = oracle_runs(spec, trace, ref, 0.03)
    # the oracles' runs keep no ledger of their own (no control windows): nothing to compare there
    rows = [{**_row(gpu, name, kind, r, ref), "ledger_saved_j": 0.0, "ledger_lo_j": 0.0, "ledger_hi_j": 0.0}
            for kind, r in oracles.items()]
    best = 1 - oracles["oracle"].energy_j / ref.energy_j
    for policy in policies:
        row = _row(gpu, name, policy.name, run_trace(spec, trace, policy), ref)
        rows.append({**row, "capture": row["saved"] / best if best > 1e-9 else None})
    return rows


def measure(gpus: list[str], traces: list[str], jobs: int = 1) -> list[dict]:
    cells = [(g, t) for g in gpus for t in traces]
    if jobs <= 1:
        return [row for g, t in cells for row in measure_cell(g, t)]
    with ProcessPoolExecutor(jobs) as ex:
        return [row for rows in ex.map(measure_cell, *zip(*cells, strict=True)) for row in rows]


def markdown(rows: list[dict]) -> str:
    out = []
    names = list(dict.fromkeys(r["policy"] for r in rows))
    for gpu in dict.fromkeys(r["gpu"] for r in rows):
        out.append(f"### {gpu}: energy saved / slowdown against the firmware default\n")
        out.append("| trace | " + " | ".join(names) + " |")
        out.append("|---|" + "---|" * len(names))
        for trace in dict.fromkeys(r["trace"] for r in rows if r["gpu"] == gpu):
            cells = []
            for p in names:
                r = next(x for x in rows if x["gpu"] == gpu and x["trace"] == trace and x["policy"] == p)
                lat = "" if r["latency_slowdown"] is None else f" / {100 * r['latency_slowdown']:+.1f}%"
                cells.append(f"{100 * r['saved']:+.1f}% / {100 * r['slowdown']:+.2f}%{lat}")
            out.append(f"| {trace} | " + " | ".join(cells) + " |")
        out.append("")
        out.append(f"### {gpu}: `balanced` against the oracles (budget 3% of end time and of request latency)\n")
        out.append("| trace | balanced saved / slowdown / latency | within both bounds | capture of `oracle` | "
                   ">= 95% of `oracle_static` | dominated by a peer |")
        out.append("|---|---|---|---|---|---|")
        for trace in dict.fromkeys(r["trace"] for r in rows if r["gpu"] == gpu):
            cell = {r["policy"]: r for r in rows if r["gpu"] == gpu and r["trace"] == trace}
            b, st = cell["balanced"], cell["oracle_static"]
            static_ok = b["saved"] >= 0.95 * st["saved"] if st["saved"] > 0 else True
            def lat(r):
                return r["latency_slowdown"] if r["latency_slowdown"] is not None else 0.0

            peers = [p for p in ("ondemand", "zeus-pl", "geopm-activity")
                     if cell[p]["saved"] > b["saved"] + 1e-3 and cell[p]["slowdown"] < b["slowdown"] + 1e-4
                     and lat(cell[p]) < lat(b) + 1e-4]
            cap = f"{100 * b['capture']:.0f}%" if b.get("capture") is not None else "-"
            within = b["slowdown"] <= 0.03 and lat(b) <= 0.03
            latency = "-" if b["latency_slowdown"] is None else f"{100 * b['latency_slowdown']:+.1f}%"
            out.append(f"| {trace} | {100 * b['saved']:+.1f}% / {100 * b['slowdown']:+.2f}% / {latency} | "
                       f"{'yes' if within else 'no'} | {cap} | "
                       f"{'yes' if static_ok else 'no'} ({100 * st['saved']:.1f}%) | {', '.join(peers) or 'no'} |")
        out.append("")
    out.append("### The ledger's estimate for `balanced` against the true saving\n")
    out.append("| GPU | trace | true saving | ledger estimate [interval] | error, % of the saving | error, % of "
               "default energy | truth inside |")
    out.append("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["policy"] != "balanced":
            continue
        err = r["ledger_saved_j"] - r["true_saved_j"]
        rel = 100 * err / r["true_saved_j"] if abs(r["true_saved_j"]) > 1 else float("nan")
        inside = r["ledger_lo_j"] <= r["true_saved_j"] <= r["ledger_hi_j"]
        interval = f"[{r['ledger_lo_j'] / 1000:.1f}, {r['ledger_hi_j'] / 1000:.1f}]"
        out.append(f"| {r['gpu']} | {r['trace']} | {r['true_saved_j'] / 1000:.1f} kJ | "
                   f"{r['ledger_saved_j'] / 1000:.1f} kJ {interval} | "
                   f"{rel:+.1f}% | {100 * err / r['default_energy_j']:+.2f}% | {'yes' if inside else 'no'} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true")
    p.add_argument("--gpu", action="append", help="only this GPU (repeatable)")
    p.add_argument("--trace", action="append", help="only this trace (repeatable)")
    p.add_argument("--jobs", type=int, default=2, help="processes to run cells in (default 2)")
    p.add_argument("--write", action="store_true", help="refresh the tables in docs/benchmarks.md in place")
    args = p.parse_args()
    traces = args.trace or suite_traces()
    rows = measure(args.gpu or GPUS, traces, args.jobs)
    text = markdown(rows)
    if args.write:
        from docsection import write_section  # noqa: PLC0415 - a sibling in tools/

        tables, ledger = text.split("### The ledger's estimate", 1)
        write_section("bench_policies", tables)
        write_section("bench_policies_ledger", "### The ledger's estimate" + ledger)
    print(json.dumps(rows, indent=2) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
