"""govctl's text: typed replies (wire.py) rendered for a person."""

from __future__ import annotations

import time

from ..envelope import Ceiling
from ..telemetry import reason_names
from ..wire import GpuStatus, PauseResult, Status


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("  ".join(str(c).rjust(w) if str(c)[:1] in "+-0123456789" else str(c).ljust(w)
                               for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def mhz(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def describe_settings(settings: dict) -> str:
    """A GPU's saved settings in words (originals.json's entry)."""
    lock = settings.get("locked_clocks_mhz")
    if not settings.get("clocks_known", True):
        clocks = "clock lock reset (the driver cannot read it)"
    elif lock:
        clocks = f"clocks locked {lock[0]}-{lock[1]} MHz"
    else:
        clocks = "clocks unlocked"
    return f"power limit {settings['power_limit_w']:.0f} W, {clocks}"


def describe_ceiling(ceiling: dict) -> str:
    lock = ceiling.get("locked_clocks_mhz")
    return Ceiling(ceiling.get("power_limit_w"), tuple(lock) if lock else None).describe()


def saved(g: GpuStatus) -> str:
    """Energy saved since start with its interval and its share of what default settings would
    have used (the ledger's counterfactual)."""
    since = g.ledger.since_start
    if since.counterfactual_j <= 0 and since.saved_j == 0:
        return "-"
    share = f" ({since.saved_j / since.counterfactual_j:.1%})" if since.counterfactual_j > 0 else ""
    return f"{since.saved_j / 1000:.1f} kJ{share} [{since.saved_lo_j / 1000:.1f}, {since.saved_hi_j / 1000:.1f}]"


def _gpu_row(g: GpuStatus) -> list[str]:
    s = g.sample or {}
    target = (g.target or {}).get("sm_clock_max_mhz") or g.limits.get("sm_clock_max_mhz")
    lim = g.limits
    return [
        str(g.index), g.name, g.state, g.policy,
        f"{mhz(target)}/{mhz(s.get('sm_clock_mhz'))} MHz",
        f"{s.get('power_w', 0):.0f} W" if s else "-",
        f"{mhz(s.get('power_limit_w'))} W ({lim['power_limit_min_w']:.0f}-{lim['power_limit_max_w']:.0f}, "
        f"default {lim['power_limit_default_w']:.0f})" if s else "-",
        f"{s.get('temp_c', 0):.0f} C" if s else "-",
        f"{s.get('gpu_util_pct', 0):.0f}%" if s else "-",
        ",".join(reason_names(s.get("clock_event_reasons", 0))) or "-" if s else "-",
        f"{g.energy_since_start_j / 1000:.1f} kJ",
        saved(g),
    ]


def _gpu_details(g: GpuStatus) -> list[str]:
    c = g.controller_state
    detail = ", ".join(f"{k} {v}" for k, v in c.items() if not isinstance(v, dict))
    lines = [f"GPU {g.index} {g.uuid}: {g.controller}: {detail}" + (f"; job {g.job}" if g.job else "")]
    memory = (c.get("phase") or {}).get("from_memory")
    if memory:
        age = int(memory["learned_s_ago"])
        when = f"{age // 86400}d{age % 86400 // 3600:02d}h" if age >= 86400 else \
            f"{age // 3600}h{age % 3600 // 60:02d}m" if age >= 3600 else f"{age // 60}m{age % 60:02d}s"
        lines.append(f"  phase model from memory (the model store), learned {when} ago; "
                     + ("checked against this run's readings" if memory["verified"] else "on trial: dropped if its "
                        "predictions miss"))
    if (c.get("phase") or {}).get("cautious"):
        lines.append("  mix planned cautiously: its windows cannot yet tell arriving work from serial, so all its busy "
                     "time is taken to scale with the clock (a deeper window, once the budget pays for it, tells)")
    dither = c.get("dither")
    if dither:
        lines.append(f"  alternating {mhz(dither['planned_clock_mhz'])} and {mhz(dither['lower_clock_mhz'])} MHz, "
                     f"{100 * dither['lower_share']:.0f}% of the time at the lower (spends the budget between two "
                     "clock steps)")
    if g.cooling:
        lines.append(f"  cooling learned: removes about {g.cooling['removes_w']:.0f} W at "
                     f"{g.cooling['at_temp_c']:.1f} C (prices work at the thermal limit)")
    ceiling = g.envelope.get("ceiling")
    if ceiling:
        lines.append(f"  ceiling {describe_ceiling(ceiling)}, set before govd; "
                     + ("kept" if g.envelope.get("ceiling_kept") else
                        "not kept (envelope.respect_existing_limits = false)"))
    if g.originals:
        lines.append(f"  originals: {describe_settings(g.originals['settings'])}; "
                     + ("changed by govd, given back at stop" if g.originals["changed_by_govd"]
                        else "not changed by govd yet, nothing to give back"))
    if g.reason:
        lines.append(f"  why {g.state}: {g.reason}")
    return lines


def render_status(st: Status) -> str:
    d = st.daemon
    up = int(d.uptime_s)
    lines = [f"govd {d.version}, pid {d.pid}, up {up // 3600}h{up % 3600 // 60:02d}m{up % 60:02d}s, "
             f"{'healthy' if d.healthy else 'DEGRADED'}, CPU {100 * d.cpu_core_share:.2f}% of a core, "
             f"RSS {d.rss_mb:.0f} MB", ""]
    lines.append(table([_gpu_row(g) for g in st.gpus],
                       ["GPU", "name", "state", "policy", "SM target/actual", "power", "limit (range)", "temp",
                        "util", "clock events", "energy", "saved [interval]"]))
    lines.append("")
    for g in st.gpus:
        lines += _gpu_details(g)
    lines.append("")
    lines.append("config: " + (", ".join(st.config_files) or "defaults only"))
    lines += [f"config warning: {w}" for w in st.config_warnings]
    if st.runtime_policies:
        lines.append("policies set at runtime (kept across reload; `govctl policy reset` follows the config): "
                     + ", ".join(f"GPU {i} by uid {uid}" for i, uid in st.runtime_policies.items()))
    writers = st.other_writers
    lines.append("other programs writing clocks: " + ("; ".join(f"GPU {w['gpu']}: {w['what']}" for w in writers)
                                                    if writers else "none seen"))
    if st.trials:
        lines.append("trials: " + "; ".join(f"GPU {i}: {t['until_s']:.0f} s left, then {t['then']}"
                                             for i, t in st.trials.items()))
    return "\n".join(lines)


def describe_jobs(result: dict) -> str:
    """`govctl ledger --job`/`--by job` and `govctl job end`: one line per job, then its GPUs."""
    if not result["jobs"]:
        return "no jobs recorded"
    lines = []
    for j in result["jobs"]:
        span = time.strftime("%Y-%m-%d %H:%M", time.localtime(j["started"]))
        end = ("running" if j["ended"] is None else time.strftime("%H:%M", time.localtime(j["ended"]))
               + ("" if j["end_reason"] == "ended" else f" ({j['end_reason']})"))
        policy = j["policy"] or "the node's"
        lines.append(f"job {j['job']} ({j['user'] or 'user unknown'}, policy {policy}), "
                     f"{span} to {end}: used {j['used_kwh']:.3f} kWh, saved {j['kwh']:.3f} kWh "
                     f"[{j['saved_lo_j'] / 3.6e6:.3f}, {j['saved_hi_j'] / 3.6e6:.3f}], {j['money']:.2f} "
                     f"{j['currency']}, {j['co2e_kg']:.3f} kg CO2e")
        for g in j["gpus"]:
            lines.append(f"  GPU {g['gpu_index']}: used {g['measured_j'] / 1000:.1f} kJ, saved "
                         f"{g['saved_j'] / 1000:.1f} kJ [{g['saved_lo_j'] / 1000:.1f}, {g['saved_hi_j'] / 1000:.1f}], "
                         f"slowdown {g['slowdown']:+.2%}")
    return "\n".join(lines)


def describe_pause(result: PauseResult) -> list[str]:
    """One line per GPU for `govctl pause`: what was given back, or why nothing was."""
    lines = []
    for gpu, report in result.paused.items():
        if report is None:
            lines.append(f"GPU {gpu}: paused; govd had not changed it, nothing to give back")
        elif report["ok"]:
            knobs = ", ".join(k["action"] for k in report["knobs"])
            lines.append(f"GPU {gpu}: paused; given back its original settings ({knobs})")
        else:
            lines.append(f"GPU {gpu}: paused, but NOT back to its original settings: {report['problem']}")
    return lines
