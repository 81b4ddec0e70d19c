"""The `model` controller's memory: identified phase models exported as plain records for the node's
model store (governor/model_store.py), and records recalled from it taken back as known phases, so
that work seen before (after a restart, in the next job, on another GPU of the node) is held at its
planned clock as soon as its reference readings match, without probing it again.

A recalled model is on trial: it is used only where a reference window matches it, and if its
predictions miss (a CUSUM alarm, or the mean of its first `VERIFY_S` of hold), it is dropped and the
phase is measured anew. Mixes are remembered within a run only (`mix_memory`, `_adopt_mix`). The
controller does no I/O: the worker carries records between it and the store.

A mixin of ModelController (model.py): it reads the controller's phase models and parameters.
"""

from __future__ import annotations

import math

from .phase_model import PhaseModel, Probe

VERIFY_S = 3.0  # a recalled model is checked against the mean of this long a hold
VERIFY_TOLERANCE = 0.05  # largest relative miss of busy share or DRAM progress it may show there
RECORD_FORMAT = 1
PROBE_FIELDS = ("clock_mhz", "util", "progress", "power", "temp_c")


def probe_from(data) -> Probe | None:
    """A Probe from a record's dict; None for anything that is not one (a foreign or damaged record)."""
    if not isinstance(data, dict) or set(data) != set(PROBE_FIELDS):
        return None
    values = {}
    for k in PROBE_FIELDS:
        v = data[k]
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            return None
        values[k] = float(v)
    if values["clock_mhz"] <= 0 or not 0.0 <= values["util"] <= 1.0 or values["progress"] < 0 or values["power"] <= 0:
        return None
    return Probe(**values)


def _record(p: Probe) -> dict:
    return {k: getattr(p, k) for k in PROBE_FIELDS}


def fingerprint(ref: Probe) -> str:
    """A coarse key of a phase's reference readings (busy share, DRAM progress, power, clock): the
    store keeps one record per key, the newest."""
    return f"u{ref.util:.2f}:r{ref.progress:.0f}:p{5 * round(ref.power / 5):.0f}:f{ref.clock_mhz:.0f}"


class MemoryHandling:
    """Export and recall of phase models (mixin of ModelController)."""

    def export_models(self) -> list[dict]:
        """Identified single phases, learned here or recalled and verified since. Mixes stay in the
        run that measured them (a mix seen again within it is held at once): recalled by a later run,
        a mix was held at the plan its few windows gave, which saved less than measuring it again
        (pipeline-bubbles 4.7% the first time, 1.1% from memory, because the first run's probes had
        themselves saved), so they are not stored until their plans are."""
        wanted = min(len(self.probe_fracs), self.params["max_probes"])
        out = []
        for m in self.models:
            if m.mix or len(m.probes) < max(1, wanted) or not m.verified:
                continue
            key = fingerprint(m.ref)
            if m.memory_age_s is None:
                self.learned_keys.add(key)
            out.append({"format": RECORD_FORMAT, "key": key, "ref": _record(m.ref),
                        "probes": [_record(p) for p in m.probes], "min_progress": m.min_progress})
        return out

    def import_models(self, records: list[tuple[dict, float]]) -> int:
        """Take (record, age in seconds) pairs as known phases on trial; returns how many were taken.
        Records that are not this controller's, damaged, for another clock range, for a phase known
        already, or for one this controller learned itself are skipped: a phase it learned and let go
        was dropped for a reason (the work became a mix, a refresh measures it anew), and taking it
        back from the store made the same run decide otherwise than without a store."""
        taken = 0
        for record, age_s in records:
            if isinstance(record, dict) and record.get("key") in self.learned_keys:
                continue
            m = self._model_from(record)
            if m is None or self.composite or self._match(m.ref, None) is not None:
                continue  # while the work is held as a mix, single phases are not in play; offered again later
            m.memory_age_s = max(0.0, float(age_s))
            m.recalled_at = self.last_t
            m.verified = False
            taken += 1
            self.models.append(m)
            if len(self.models) > self.params["max_phases"]:
                self.models.pop(0)
        return taken

    def _adopt_mix(self, obs: Probe, now: float) -> bool:
        """A mix's reference window that a mix identified earlier in this run explains (after a
        refresh, or once its phases were tried one by one again): that mix is held at once, its
        windows' pool started from this one. True when so."""
        known = self._match(obs, None, among=self.mix_memory)
        if known is None:
            return False
        self._mix_model = known
        self._set_mix_windows([self._last_window])
        self._rebase(known, obs)
        known.refit()
        self.models = [known]
        self.current = known
        self._hold(now, "known mix")
        return True

    def _model_from(self, record) -> PhaseModel | None:
        if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT or record.get("mix") is True:
            return None  # not a record of this format, or a mix (mixes are not recalled)
        ref = probe_from(record.get("ref"))
        raw = record.get("probes")
        probes = [probe_from(p) for p in raw] if isinstance(raw, list) else [None]
        min_progress = record.get("min_progress")
        if ref is None or not probes or any(p is None for p in probes) or len(probes) > 16 \
                or not isinstance(min_progress, int | float) or not math.isfinite(min_progress):
            return None
        top = self.limits.sm_clock_max_mhz * 1.05
        if any(p.clock_mhz > top for p in (ref, *probes)):
            return None  # measured on a GPU with other clocks: not this one's physics
        return PhaseModel(ref=ref, probes=probes, min_progress=float(min_progress), util_max=self._arrival_util_max(),
                          latency_bound=self.params["bound"] == "both", boost_mhz=self.limits.sm_clock_max_mhz)

    def _trial_missed(self, m: PhaseModel, now: float) -> bool:
        """A recalled model on trial whose predictions missed: it is dropped. True when so."""
        if m.verified or m.memory_age_s is None:
            return False
        self.models = [x for x in self.models if x is not m]
        self.memory_dropped += 1
        return True

    def _trial_check(self, m: PhaseModel, now: float) -> bool:
        """The check of a recalled model: once held `VERIFY_S`, the mean of the hold's readings must
        be what the model predicts at that clock (busy share and DRAM progress within
        `VERIFY_TOLERANCE`; power drifts with temperature and is followed elsewhere). The reference
        readings that matched it say only that the work looks the same at default settings; how it
        answers the clock is what the plan rests on. True when it missed (and was dropped)."""
        if m.verified or m.memory_age_s is None or now - self.state_start < VERIFY_S or len(self._trial_obs) < 5:
            return False
        obs = self._mean_obs(self._trial_obs)
        u, prog, _ = m.predict(obs.clock_mhz)
        miss = max(abs(obs.util - u) / max(u, 0.05), abs(obs.progress - prog) / max(prog, 2.0) if m.has_proxy else 0.0)
        if miss > VERIFY_TOLERANCE:
            return self._trial_missed(m, now)
        m.verified = True
        return False

    def memory_status(self, m: PhaseModel | None) -> dict | None:
        if m is None or m.memory_age_s is None:
            return None
        since = (self.last_t or 0.0) - (m.recalled_at or 0.0)
        return {"learned_s_ago": round(m.memory_age_s + max(0.0, since)), "verified": m.verified}
