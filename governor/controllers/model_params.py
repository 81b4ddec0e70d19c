"""The `model` controller's tunables, with their defaults, ranges and meaning (a policy's [params])."""

from __future__ import annotations

from ..config_keys import Key

BOUNDS = ("both", "time")  # what a budget bounds: end time and request latency, or end time only

# the few knobs an operator turns, in a policy's [params]
MODEL_PARAMS = {
    "objective": Key(str, "min_energy", choices=("min_energy", "min_edp", "power_cap"),
                     doc="what to minimize within the budget"),
    "slowdown_budget": Key(float, 0.03, lo=0.0, hi=1.0, doc="largest slowdown against default, a fraction"),
    "bound": Key(str, "both", choices=BOUNDS,
                 doc="what the budget bounds: end time and request latency (both), or end time only (time: "
                     "batch and training, where queueing does not matter)"),
    "budget_use": Key(float, 0.8, lo=0.1, hi=1.0, doc="share of the budget planned for (the rest is margin)"),
    "refresh_s": Key(float, 120.0, lo=5.0, hi=86400.0, doc="re-measure a held phase this often"),
}

# heuristics: named, documented defaults, overridable only under a policy's [expert] table
MODEL_EXPERT = {
    "settle_s": Key(float, 0.4, lo=0.0, hi=10.0, doc="ignore readings this long after a change"),
    "measure_s": Key(float, 0.8, lo=0.2, hi=30.0, doc="measuring time at each probe point"),
    "probe_fracs": Key(str, "auto",
                       doc="first probe clocks as fractions of the reference clock, comma-separated; "
                           "auto: 1 - 3 x budget and 1 - 6 x budget, so probing costs scale with the budget"),
    "max_probes": Key(int, 4, lo=1, hi=10, doc="most probe points per phase"),
    "reference_warmer_c": Key(float, 10.0, lo=1.0, hi=100.0,
                              doc="also re-measure a held phase when the GPU is this much warmer than at "
                                  "its reference"),
    "cusum_drift": Key(float, 0.06, lo=0.0, hi=1.0, doc="CUSUM drift allowance (normalized residual)"),
    "cusum_threshold": Key(float, 0.5, lo=0.05, hi=10.0, doc="CUSUM alarm threshold"),
    "match_tolerance": Key(float, 0.12, lo=0.01, hi=1.0, doc="largest residual for a known phase to match"),
    "max_phases": Key(int, 8, lo=1, hi=64, doc="phase models kept"),
    "min_progress_pct": Key(float, 2.0, lo=0.01, hi=50.0,
                            doc="least DRAM activity (NVML memory utilization) for the progress proxy"),
    "min_progress_gpm_pct": Key(float, 0.05, lo=0.001, hi=50.0,
                                doc="the same for GPM DRAM bandwidth, which has finer resolution"),
    "arrival_util_max": Key(float, 0.9, lo=0.5, hi=1.0,
                            doc="arrival phases under a latency bound: most busy share a clock may give them "
                                "(beyond it bursts queue); within it the budget bounds each request's stretch"),
    "arrival_util_max_time": Key(float, 0.98, lo=0.5, hi=1.0,
                                 doc="bound = time: most busy share planned for arriving work (end time needs "
                                     "only that the GPU keeps up)"),
    "power_margin": Key(float, 0.03, lo=0.0, hi=0.5, doc="power_cap: limit above the predicted power"),
    "fast_changes": Key(int, 4, lo=2, hi=100,
                        doc="changes to an unknown phase (or unmeasurable windows) within 30 s after which "
                            "the mix is treated as one phase"),
    "composite_measure_s": Key(float, 4.0, lo=1.0, hi=120.0,
                               doc="measuring window while phases change too fast to tell apart"),
    "composite_budget_share": Key(float, 0.5, lo=0.0, hi=1.0,
                                  doc="share of the budget planned for a mix of phases: DRAM progress "
                                      "weights memory-heavy phases more, so a mix's slowdown is "
                                      "underestimated"),
    "ledger_match_tolerance": Key(float, 0.2, lo=0.01, hi=1.0,
                                  doc="largest residual of one sample for the ledger to price it by a "
                                      "known phase's reference (else no saving is claimed for it)"),
    "mix_window_error": Key(float, 0.03, lo=0.0, hi=1.0,
                            doc="least relative error of one default-settings window of a mix of phases "
                                "(beyond what the spread over its own cycles shows)"),
    "dither_period_s": Key(float, 60.0, lo=0.0, hi=3600.0,
                           doc="alternate with the next lower clock over this period to spend the budget "
                               "the clock steps leave (0: never)"),
    "mix_window_max_s": Key(float, 30.0, lo=1.0, hi=600.0,
                            doc="longest window of a mix of phases: one in which no whole number of the "
                                "mix's cycles is found is lengthened up to this"),
    "composite_tolerance": Key(float, 0.2, lo=0.01, hi=1.0,
                               doc="largest window residual before a composite phase is re-measured"),
}
