"""How one workload phase's time and power depend on the SM clock, identified from samples only.

The progress proxy (why it is honest): the DRAM traffic of a phase is part of its work, so DRAM
bandwidth utilization is proportional to the rate at which work is done, whatever the clock. GPM's
DRAM bandwidth is used where the GPU has it, else NVML's memory utilization. With the rate R and the
busy share u from one probe at clock f:
    kernel time per unit of work   k(f) = u / R        fitted to  k(f) = a + b / f   (a, b >= 0)
    idle time per unit of work     h(f) = (1 - u) / R
Two slack hypotheses are told apart by how h moves across probes:
    serial  (host work between kernels): h is constant, so wall time per work T(f) = k(f) + h;
    arrival (work arrives over time):    k + h is constant while the GPU keeps up, T(f) = max(T0, k(f)/u_max):
                                         planned busy time stays below u_max, so bursts and backlogs
                                         carried over from other phases can still be absorbed.
Power is fitted to P(f) = c0 + c1 f + c3 f^3 (nonnegative least squares), which covers the linear
region below the voltage knee and the steep one above it. When a phase moves too little DRAM data
for the proxy (R below `min_progress`), the model falls back to the most cautious assumption: all
busy time scales with 1/f and all idle time is serial.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import nnls

ARRIVAL_MISS = 0.08  # a mix's window this far short of the progress its arrival reading predicts: serial
MIX_KERNEL_FALL = 0.05  # a busy mix window with this much less kernel time per work than its reference: other work
ARRIVAL_NEAR = 0.25  # probes within this fraction of the reference clock tell arriving work from serial
ARRIVAL_Z = 2.0  # standard errors by which a mix's windows must reject the serial reading to read arriving work
LATENCY_RESOLVED_UTIL = 0.1  # below this busy share (integer percent readings) a few percent of stretch is unreadable
WARMER_C = 2.0  # a GPU this much warmer than at a phase's reference draws more there than it read (leakage)
MIX_FIT_TOLERANCE = 0.1  # a mix's windows off their fitted kernel-time curve by more than this: held at its reference
KNEE_FIT_TOLERANCE = 0.03  # a single phase's probes off a + b/f by more than this: a roofline, followed point by point
BUSY_MIX_REF_UTIL = 0.5  # a mix busy this much at default has little headroom to read arriving work from
BUSY_MIX_SHARE = 0.25  # a mix saturated in this share of its default readings or more: its work waits on the clock
SATURATED_UTIL = 0.97  # busy share at which the GPU is saturated (NVML's integer readings of a full GPU)
QUEUED = 10.0  # the stretch() of arriving work at a clock where requests would queue: never chosen


@dataclass(frozen=True)
class Probe:
    """Mean readings over a settled window at one clock."""

    clock_mhz: float  # mean SM clock observed
    util: float  # 0..1
    progress: float  # proxy rate (percent of DRAM bandwidth)
    power: float  # W
    temp_c: float = 0.0  # mean GPU temperature, C (leakage power grows with it)
    progress_sd: float = 0.0  # a mix window's: relative standard error of its mean progress (0: not known)
    busy_kernel: float = 0.0  # a mix window's: kernel time per unit of work of its busy readings (0: not known)

    @property
    def saturated(self) -> bool:
        return self.util >= SATURATED_UTIL


def kernel_time_fell(ref: Probe, p: Probe) -> bool:
    """Whether p, read at a lower clock than ref, shows less kernel time per unit of work (busy share
    over progress) than ref by more than `MIX_KERNEL_FALL`. A lower clock never shortens the same
    work's kernels, and the load between windows leaves kernel time per unit of work alone: two
    windows that read so caught different work."""
    if p.clock_mhz >= ref.clock_mhz or p.progress <= 0 or ref.progress <= 0:
        return False
    return p.util / p.progress < (1.0 - MIX_KERNEL_FALL) * ref.util / ref.progress


def fit_kernel(freqs: list[float], k: list[float]) -> tuple[float, float]:
    """k(f) = a + b/f with a, b >= 0 (least squares)."""
    f = np.asarray(freqs, dtype=float)
    y = np.asarray(k, dtype=float)
    if len(f) == 1 or np.ptp(f) < 1.0:
        return 0.0, float(np.mean(y * f))  # one clock: assume all of it scales (cautious)
    scale = float(np.max(f))
    basis = np.column_stack([np.ones_like(f), scale / f])
    coef, _ = nnls(basis, y)
    return float(coef[0]), float(coef[1] * scale)


def knee_knots(freqs: list[float], k: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Kernel time per unit of work against 1/f, made to rise as the clock falls (pooled where noise
    says otherwise), one knot per clock: the curve kernel_time() follows where a + b/f cannot."""
    x = 1.0 / np.asarray(freqs, dtype=float)
    y = np.asarray(k, dtype=float)
    xs, inverse = np.unique(np.round(x, 12), return_inverse=True)
    ys = np.bincount(inverse, weights=y) / np.bincount(inverse)
    blocks: list[list[float]] = []  # [sum, count] of pooled neighbours, pool-adjacent-violators
    for v in ys:
        blocks.append([v, 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, n = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += n
    ks = np.concatenate([np.full(int(n), total / n) for total, n in blocks])
    return xs, ks


def fit_power(freqs: list[float], power: list[float]) -> np.ndarray:
    """Coefficients of P(f) = c0 + c1 (f/1000) + c3 (f/1000)^3, all >= 0."""
    g = np.asarray(freqs, dtype=float) / 1000.0
    p = np.asarray(power, dtype=float)
    if len(g) == 1 or np.ptp(g) < 1e-3:
        return np.array([float(np.mean(p)), 0.0, 0.0])
    cols = [np.ones_like(g), g, g**3] if len(g) >= 3 else [np.ones_like(g), g**3]
    coef, _ = nnls(np.column_stack(cols), p)
    return coef if len(g) >= 3 else np.array([coef[0], 0.0, coef[1]])


@dataclass
class PhaseModel:
    """A phase's identified model, with its reference (default-settings) operating point."""

    ref: Probe
    probes: list[Probe] = field(default_factory=list)
    min_progress: float = 2.0
    util_max: float = 0.9  # arrival: most busy share planned for, the rest absorbs bursts and backlogs
    seen_s: float = 0.0  # time spent in this phase so far (its weight when the budget is shared)
    kind: str = "serial"  # or "arrival"
    a: float = 0.0
    b: float = 0.0
    host: float = 0.0  # serial: idle time per unit of work
    t_arrival: float = 0.0  # arrival: wall time per unit of work while the GPU keeps up
    mix: bool = False  # a mix of phases measured as one (its probes are windows over whole cycles)
    t_fit: tuple[float, float] | None = None  # serial mix, two clocks or more: wall time per work = A + B/f
    busy_fit: tuple[float, float] | None = None  # a mix: its busy readings' kernel time per work = a + b/f
    saturated_share: float = 0.0  # a mix: share of its default-settings readings with the GPU saturated
    periodic: bool | None = None  # a mix: read as repeating in its own rhythm (MixHandling._mix_periodic)
    refresh_after_s: float | None = None  # a mix: held this long before a refresh (None: refresh_s)
    power_coef: np.ndarray = field(default_factory=lambda: np.zeros(3))
    has_proxy: bool = True
    version: int = 0  # bumped by every refit, so callers can cache predictions
    util_fit: tuple[float, float] | None = None  # without a proxy: utilization = a + b/f, from the probes
    knots: tuple[np.ndarray, np.ndarray] | None = None  # a single phase whose probes bend: knee_knots()
    warm_excess_w: float = 0.0  # measured - predicted power on a GPU warmer than at the reference (smoothed)
    latency_bound: bool = False  # the budget bounds its requests' latency too (a policy's bound = "both")
    boost_mhz: float = 0.0  # the highest clock the firmware runs work at (its requests' clock at default)
    memory_age_s: float | None = None  # recalled from the model store: how old it was then (None: learned here)
    recalled_at: float | None = None  # the controller's time it was recalled
    verified: bool = True  # False while a recalled model is on trial (model_memory.py)
    kind_before_rebase: str | None = None  # a mix's kind as its probes read against the reference it replaced
    cautious: bool = False  # a mix whose windows cannot tell arriving work from serial: all busy time scales
    _ref_read: tuple[Probe, float] | None = field(default=None, repr=False)  # (shifted reference, its power as read)
    uid: int = field(default=0, compare=False)  # its controller's key for it (Planner._uid); 0: none yet

    def __post_init__(self) -> None:
        self.refit()

    def busy_mix(self) -> bool:
        """A mix that keeps the GPU saturated for much of its time at default settings (training
        steps between input stalls: 61% of one's readings): its work waits on the clock, as serial
        work does. Mixes of arriving work measured saturated in 0-4% of theirs."""
        return self.mix and self.saturated_share >= BUSY_MIX_SHARE

    def busy_at_reference(self) -> bool:
        """A mix busy half its time or more at default, or saturated in a quarter of its readings
        there: its work may wait on the clock, and its windows are noisy (a training mix's window
        that caught a checkpoint reads half as busy as the next). Under a time bound such a mix's
        windows are judged by what its load cannot fake (_consistent, drop_foreign_probes; under a
        latency bound a busy_mix's are, in _consistent), and its held windows re-check an arrival
        reading (_held_arrival_missed)."""
        return self.mix and (self.ref.util >= BUSY_MIX_REF_UTIL or self.busy_mix())

    def drop_foreign_probes(self) -> None:
        """Under a time bound, drop a busy mix's probes that cannot be the work of its reference at a
        lower clock (kernel_time_fell): a known mix rebased onto a window whose load had risen read
        its old probe's clock as free, and was held at 345 MHz from one window at 1500 (h100,
        gen:mixed:371076, 4% long). The mix is probed again against its new reference."""
        if self.latency_bound or not self.busy_at_reference():
            return
        kept = [p for p in self.probes if not kernel_time_fell(self.ref, p)]
        if len(kept) < len(self.probes):
            self.probes = kept
            self.kind_before_rebase = None
            self.refit()

    def ref_power_read_w(self) -> float:
        """The reference's power as its window read it, before shift_power moved it with the curve
        (a reference taken anew, whatever its way in, is as read)."""
        if self._ref_read is not None and self._ref_read[0] is self.ref:
            return self._ref_read[1]
        return self.ref.power

    def points(self) -> list[Probe]:
        return [self.ref, *self.probes]

    def add(self, probe: Probe) -> None:
        self.probes.append(probe)
        self.kind_before_rebase = None
        self.refit()

    def shift_power(self, offset_w: float, with_ref: bool = True) -> None:
        """Add offset_w to each measured power (the probes', and the reference's when with_ref):
        leakage adds about the same watts at every clock, so a GPU that warmed since the probes
        moves the whole power curve, not its shape."""
        if with_ref:
            read_w = self.ref_power_read_w()
            self.ref = replace(self.ref, power=self.ref.power + offset_w)
            self._ref_read = (self.ref, read_w)
        self.probes = [replace(p, power=p.power + offset_w) for p in self.probes]
        self.refit()

    def refit(self) -> None:
        self.version += 1
        self.cautious = False
        self.warm_excess_w = 0.0
        self.t_fit = None
        pts = self.points()
        busy = [p for p in pts if p.busy_kernel > 0]
        self.busy_fit = fit_kernel([p.clock_mhz for p in busy], [p.busy_kernel for p in busy]) \
            if self.ref.busy_kernel > 0 and len(busy) >= 2 else None
        self.has_proxy = all(p.progress >= self.min_progress for p in pts)
        freqs = [p.clock_mhz for p in pts]
        self.power_coef = fit_power(freqs, [p.power for p in pts])
        if not self.has_proxy:
            # cautious: busy time is all clock-bound at the reference, idle time is all serial. What
            # utilization to expect at a clock (for spotting a phase change) is fitted from the
            # probes instead: the cautious model overstates it, and a phase change would be
            # "detected" at every reading of a GPU held at a low clock
            u = min(max(self.ref.util, 0.0), 1.0)
            self.kind, self.a, self.b, self.host = "serial", 0.0, u * self.ref.clock_mhz, 1.0 - u
            self.util_fit = fit_kernel(freqs, [p.util for p in pts]) if len(pts) >= 2 else None
            return
        self.util_fit = None
        k = [p.util / p.progress for p in pts]
        h = [(1.0 - p.util) / p.progress for p in pts]
        self.a, self.b = fit_kernel(freqs, k)
        self.knots = None
        if not self.mix and self.fit_error() > KNEE_FIT_TOLERANCE:
            # memory-bound work is a roofline: as fast as memory allows down to a knee, slower below.
            # A line in 1/f through a flat stretch and a point past the knee overstates the time
            # at the flat clocks and understates it further down: a copy loop (flat to 1440 MHz on
            # a real H200) was held at 1785 MHz by it where its knee's clock saves twice as much
            self.knots = knee_knots(freqs, k)
        unsat = [i for i, p in enumerate(pts) if not p.saturated]
        t_unsat = [k[i] + h[i] for i in unsat]
        self.t_arrival = float(np.mean(t_unsat)) if t_unsat else k[0] + h[0]
        if len(pts) >= 2 and len(unsat) >= 1:
            h_spread = float(np.ptp(h)) if len(h) > 1 else 0.0
            t_spread = float(np.ptp([a + b for a, b in zip(k, h, strict=True)]))
            # arrival work keeps k + h constant (idle is absorbed); serial work keeps h constant.
            # When in doubt (an arrival phase probed into saturation can look serial) serial is
            # the cautious answer: it predicts the larger slowdown.
            self.kind = "arrival" if t_spread < h_spread else "serial"
            if self.kind == "arrival" and self._progress_follows_clock([pts[i] for i in unsat]):
                # arriving work is done at the rate it arrives while the GPU keeps up: progress that
                # fell with the clock near the reference is work waiting on the clock, whatever the
                # spreads say (a mix of compute and input stalls, read through windows, was once
                # taken for arriving work and held at 480 MHz: 20% slow against a 3% budget)
                self.kind = "serial"
            if self.kind == "arrival" and not self.latency_bound and self.mix and \
                    (self._arrival_missed() or self.kind_before_rebase == "serial"):
                # under a time bound a mix is arriving work only while every window kept the
                # progress that reading predicts for it, and only from windows read against their
                # own reference: a training mix whose 30 s windows caught checkpoints or not passed
                # the spreads test, went on down to 780 MHz at 0.6 of its clock, and `batch` ran 13%
                # long (a100, gen:training:643497); one rebased onto a fresh reference window that
                # matched its old probe's progress was held at 825 MHz (gen:training:261972). Quiet
                # mixes too: a training mix whose reference window caught a checkpoint's end (47%
                # busy) read 11% less progress at 0.43 of its clock and still read arriving work
                # (gen:training:185263, 10% long)
                self.kind = "serial"
            if self.kind == "arrival" and self.mix and not self.latency_bound and not self._arrival_significant():
                # nor from windows whose noise cannot tell it from serial work: a training mix's
                # windows hold a few steps and stalls, and which they caught moves their progress by
                # more than a window one step down tells the two readings apart by (h100
                # gen:mixed:964017: 4% more progress at 0.82 of the clock, read as arriving work,
                # walked down to 465 MHz, `batch` 8.9% long). Planned as serial work whose busy time all
                # scales with the clock, the cautious reading, until its windows tell
                # (docs/decisions/031)
                self.kind, self.cautious = "serial", True
            if self.mix and self.latency_bound and not self.busy_mix():
                # a mix that seldom saturates the GPU at default waits for its work: under a latency
                # bound it is planned as arriving work, by its kernels' stretch, which bounds its
                # end time too. Its windows' wall time per unit of work follows the load between
                # them, and read as the clock's doing it made a serving mix "serial" and 16% slow
                # at probes its requests barely felt (0.8% over the run), spending the budget
                self.kind = "arrival"
        else:
            self.kind = "serial"
        self.host = float(np.mean(h))
        # a serial mix: the wall time per unit of work is what the progress readings show, 1/R,
        # fitted directly. Kernel time plus a constant mean host time does not reproduce it where
        # the idle time per unit of work moves between probes, as it does between windows of a mix
        # of compute and input stalls: that fit predicted 1% at a clock the readings showed 10%
        # slower. (For one phase the two agree, and the split fit is steadier against noise.)
        if self.mix and len(pts) >= 2:
            self.t_fit = fit_kernel(freqs, [1.0 / p.progress for p in pts])

    def _arrival_missed(self) -> bool:
        """True, while the model reads arriving work, when a probe's progress lies more than
        `ARRIVAL_MISS` below what that reading predicts at its clock (wall_time: the arrival rate,
        or what the GPU serves where it saturates). Unlike _progress_follows_clock this judges
        probes far below the reference too."""
        return any(p.progress * self.wall_time(p.clock_mhz) < 1.0 - ARRIVAL_MISS for p in self.probes)

    def _arrival_significant(self) -> bool:
        """Whether a mix's windows below its reference reject the serial reading beyond their noise
        (Probe.progress_sd), by `ARRIVAL_Z` standard errors, and none reads more progress than its
        reference beyond it.

        Each window's progress over the reference's is between what serial work shows, all its busy
        time scaling with the clock (the most it can slow), and 1, what arriving work keeps: how far
        it lies towards 1, in units of that gap, weighted by its noise, over all windows. A deeper
        window's gap is wider, so it tells more. More progress than the reference, beyond the noise,
        is neither reading: the load moved between the windows (a100 gen:training:595284, 78% more
        at 0.82 of the clock), which arriving work's reading would take for headroom; a reading
        above 1 counts as 1."""
        ref = self.ref
        if ref.progress <= 0:
            return True
        num = den = 0.0
        for p in self.probes:
            if p.saturated or p.clock_mhz >= ref.clock_mhz or p.progress_sd <= 0:
                continue
            ratio = p.progress / ref.progress
            sd = ratio * float(np.hypot(p.progress_sd, ref.progress_sd))
            if ratio - 1.0 > ARRIVAL_Z * sd:
                return False  # more progress than its reference beyond noise: the load moved
            gap = 1.0 - 1.0 / (1.0 + ref.util * (ref.clock_mhz / p.clock_mhz - 1.0))
            num += (min(ratio, 1.0) - 1.0 + gap) * gap / sd**2
            den += gap**2 / sd**2
        return den <= 0.0 or num / den > ARRIVAL_Z / np.sqrt(den)

    def _progress_follows_clock(self, pts: list[Probe]) -> bool:
        """True when a probe near the reference (within `ARRIVAL_NEAR` of its clock) shows progress
        falling by more than a quarter of the clock's fall (and a percent of noise). Arriving work
        keeps its progress there; further down, a mix of arrivals saturates in its bursts and
        its progress falls for that reason, which the arrival model covers."""
        ref = self.ref
        for p in pts:
            if p is ref or p.clock_mhz >= ref.clock_mhz or p.clock_mhz < (1.0 - ARRIVAL_NEAR) * ref.clock_mhz:
                continue
            if 1.0 - p.progress / ref.progress > 0.25 * (1.0 - p.clock_mhz / ref.clock_mhz) + 0.01:
                return True
        return False

    # ----- predictions -------------------------------------------------------------------------
    def kernel_time(self, f: float) -> float:
        """Kernel time per unit of work at clock f: a + b/f, or where the probes bend (`knots`) the
        curve through them, flat above the highest clock probed and, below the lowest, growing as
        1/f from there (all of it scaling with the clock: the cautious case, what a roofline's
        compute-bound side does)."""
        if self.knots is None:
            return self.a + self.b / f
        xs, ks = self.knots
        x = 1.0 / np.asarray(f, dtype=float)
        inside = np.interp(x, xs, ks)
        out = np.where(x > xs[-1], ks[-1] * x / xs[-1], inside)
        return float(out) if out.ndim == 0 else out

    # The predictions take a clock or an array of clocks: the planner prices every supported clock
    # of a phase at once when its fit changes (_curves), a hundred of them on an H100.
    def wall_time(self, f: float) -> float:
        """Wall time per unit of work at clock f."""
        k = self.kernel_time(f)
        if self.kind == "arrival":
            return np.maximum(self.t_arrival, k / max(self.util_max, self.ref.util))
        if self.t_fit is not None:
            fitted = self.t_fit[0] + self.t_fit[1] / f
            if not self.latency_bound:
                # under a time bound a serial mix slows by the larger of what its windows' progress
                # shows and what its kernel time per unit of work (busy share over progress, which a
                # move of the load between windows leaves alone) says with its host time fixed: a
                # training mix rebased onto a window as fast as its old probe read the clock as free
                # and was held at 0.82 of its clock for 100 s (a100, gen:training:261972, 5.9% long);
                # a quiet serving mix whose load rose as its windows went down read more progress at
                # 660 MHz than at 1980 and was held at 345, saturated (gen:serving:240287, 11% long)
                at_ref = self.t_fit[0] + self.t_fit[1] / self.ref.clock_mhz
                return at_ref * np.maximum(fitted / at_ref, 1.0 + self.serial_slowdown(f))
            return fitted
        return k + self.host

    def serial_slowdown(self, f: float) -> float:
        """The slowdown at clock f were the work serial whatever the readings say: its kernels as
        fitted, its host time per unit of work fixed. Arriving work slows less (its idle time
        absorbs the kernels' growth), so this is the costlier of the two readings. A cautious mix's
        (`cautious`) at least as much as if all its busy time at the reference scaled with the
        clock: its fit rests on windows that could not tell the two readings apart."""
        s = (self.kernel_time(f) + self.host) / (self.kernel_time(self.ref.clock_mhz) + self.host) - 1.0
        if self.cautious:
            s = np.maximum(s, self.ref.util * (self.ref.clock_mhz / f - 1.0))
        return s

    def power(self, f: float) -> float:
        g = f / 1000.0
        c = self.power_coef
        return c[0] + c[1] * g + c[2] * g**3

    def highest_clock_within(self, clocks, power_w: float, offset_w: float = 0.0) -> float:
        """The highest of clocks whose modelled power, offset by offset_w (what the model misses on
        this GPU now: leakage of a warmer GPU), stays within power_w; the lowest if none does."""
        fitting = [f for f in clocks if self.power(f) + offset_w <= power_w]
        return float(max(fitting)) if fitting else float(min(clocks))

    def slowdown(self, f: float) -> float:
        return self.wall_time(f) / self.wall_time(self.ref.clock_mhz) - 1.0

    def latency_planned(self) -> bool:
        """Whether stretch() plans this phase by its requests' latency: whenever the budget bounds it.
        Readings do not tell requests from batch work reliably (memory-bound decode requests keep
        the busy share and progress of serial work at every clock: planned as serial, by end time,
        their kernels ran 10% slower than the budget), and the kernels' stretch bounds end time
        too; batch work that needs only its end time bounded runs a policy with bound = "time"."""
        return self.latency_bound

    def boost_bound(self) -> bool:
        """Latency-planned work whose busy share is too small to read its stretch from: its requests
        are taken to run at the firmware's boost clock (stretch())."""
        return self.latency_planned() and (not self.has_proxy or self.ref.util < LATENCY_RESOLVED_UTIL)

    def top_mhz(self) -> float:
        """The highest clock worth planning: the reference's, or the boost where requests meet it."""
        return max(self.ref.clock_mhz, self.boost_mhz) if self.boost_bound() else self.ref.clock_mhz

    def stretch(self, f: float) -> float:
        """What the budget bounds at clock f. A budget on end time only: slowdown(). Under a latency
        bound: each request's latency over its latency at the reference, and at least slowdown().
        While the GPU keeps up a request is served as it arrives, so that is its kernels' time at f
        over their time at the reference, observable as the busy share at f over the busy share at
        the reference for the same arrival rate; past the busy share `util_max` arriving work queues,
        and the clock is never chosen. Where the busy share is too small to read, all kernel time is
        taken to scale with the clock from the firmware's boost (the cautious case)."""
        if self.busy_mix() and self.latency_planned() and any(kernel_time_fell(self.ref, p) for p in self.probes):
            # a busy mix's window that reads less kernel time per unit of work than its reference, at
            # a lower clock, caught other work (the job's load rose under it). Planned on it, the
            # mix's stretch read 0 at every clock, `max-savings` held it at 0.83 of its clock, and
            # the serving segment that came next ran 135% late (a100 gen:mixed:988819). It is held
            # at its reference until measured anew. Quieter mixes' windows scatter so by their
            # prefills and decode alone, and their fits hold (docs/decisions/033)
            return self._reference_only(f)
        if self.mix and self.fit_error() > MIX_FIT_TOLERANCE:
            # windows of a mix that no one curve of kernel time against clock passes through: the
            # work changed between them (a job's workload moving on), and a clock planned from them
            # is a guess; neither requests nor the end time are bet on it
            return self._reference_only(f)
        if not self.latency_planned():
            return self.slowdown(f)
        if not self.mix and self.ref.saturated:
            # saturated at default: if this work arrives, it arrives as fast as the GPU serves it at
            # default, and any lower clock queues it without bound; NVML shows it as it shows serial
            # work. A 98%-busy burst at a job's start, probed 2.4 s at 0.9 and 0.82 of the clock,
            # made its requests 3.3 times late. Under a latency bound no lower clock is bet on it;
            # batch work that saturates the GPU runs a policy with bound = "time" (docs/decisions/015)
            return self._reference_only(f)
        if self.boost_bound():
            # how the busy share moves with the clock cannot be read: every kernel scales with it, and
            # from the clock the firmware boosts to when a request comes, not the mean clock of a
            # mostly idle phase (the firmware idles down between requests; a phase locked near that
            # mean met the next burst at it, and the burst's requests queued behind its first second)
            boost = max(self.ref.clock_mhz, self.boost_mhz)
            return np.maximum(boost / f - 1.0, self.slowdown(f))
        k = self.kernel_time(f)
        s = k / self.kernel_time(self.ref.clock_mhz) - 1.0  # serial work too: its kernels are its requests
        if self.mix:
            # and at least what its busy readings show (busy_stretch): a window's mean mixes in its
            # quiet readings, which move kernel time per unit of work more than the clock does
            s = np.maximum(s, self.busy_stretch(f))
        # never at the reference or above, which default settings ran at: a rebased phase whose fit put
        # its reference past the headroom was QUEUED there too, and a weighted stretch no plan could
        # meet sent every other phase to its reference (a decode held at 1603 MHz, not 1320)
        clocks = np.asarray(f, dtype=float)
        lower = clocks < self.ref.clock_mhz - 1e-6
        if self.kind == "arrival":
            s = np.where(lower & (k / self.t_arrival > max(self.util_max, self.ref.util) + 1e-9), QUEUED + s, s)
        elif not self.mix:
            # work that reads as serial may be requests under a latency bound, and a GPU it would
            # keep saturated serves them late whatever their kernels' stretch: a decode phase 93%
            # busy at default, taken for serial work once a prefill's readings joined its model, was
            # held at 795 MHz, saturated, its requests 4.7 times late. Serial work whose busy share
            # stays put as the clock falls (closed-loop decode at 90%, training steps at 95-96%)
            # keeps its clocks; and no clock at or below one it was measured saturated at (the same
            # phase read 100% busy at 1020 MHz, and its fit, averaging its host time over its
            # points, still sent it to 795). Not a mix's mean, which its own bursts saturate
            saturated_at = max((p.clock_mhz for p in self.probes if p.saturated), default=0.0)
            s = np.where(lower & ((k / self.wall_time(f) >= SATURATED_UTIL) | (clocks <= saturated_at + 1e-6)),
                         QUEUED + s, s)
        return np.maximum(s, self.slowdown(f))

    def busy_stretch(self, f: float) -> float:
        """A mix's kernels' stretch at clock f as the busy readings of its windows show it
        (Probe.busy_kernel, fitted a + b/f): between 0 and all of it scaling with the clock. 0 where
        its reference window or all its other windows have too few busy readings to tell.

        What a mix's requests feel is the time of its kernels, and its busy readings measure them
        whatever share of quiet each window caught; its windows' means (kernel_time) do not, and
        read a training mix's steps, 91% clock-bound, as not slowed at all at 0.91 of the clock:
        `balanced` held it there and its job ran 3.6% long (h100 gen:training:902087)."""
        clocks = np.asarray(f, dtype=float)
        if self.busy_fit is None:
            return np.zeros_like(clocks) if clocks.ndim else 0.0
        a, b = self.busy_fit
        s = (a + b / clocks) / (a + b / self.ref.clock_mhz) - 1.0
        s = np.clip(s, 0.0, np.maximum(self.ref.clock_mhz / clocks - 1.0, 0.0))
        return s if clocks.ndim else float(s)

    def spent_stretch(self, f: float) -> float:
        """The stretch requests are taken to have felt at clock f, for the running estimate of the
        latency budget spent: stretch() where it plans a clock; where it forbids one (`QUEUED`: past
        the busy share kept as headroom, or a phase held at its reference), all kernel time scaling
        with the clock from the top (the cautious case), not the sentinel. A probe that left a
        decode phase 93% busy, 1.8% slower in its kernels, had been charged ten times its work: the
        budget of a generated serving run read as spent from its ninth second, and every mix after
        it was held at default."""
        s = float(self.stretch(f))
        return max(0.0, s if s < QUEUED else self.top_mhz() / max(f, 1.0) - 1.0)

    def _reference_only(self, f):
        """A stretch that forbids every clock below the reference (the planner keeps it there)."""
        return np.where(np.asarray(f, dtype=float) < self.ref.clock_mhz - 1e-6, QUEUED, 0.0)

    def fit_error(self) -> float:
        """How far the measured kernel time per unit of work (busy share over progress) lies from
        the fitted curve at its own points, relative, at most; 0 with fewer points than the fit has
        parameters + 1. Kernel time, not wall time: a mix of arriving work does its work at the
        rate it arrives, so its wall time per unit of work follows the load between windows (a
        serving mix whose load moved by a third between windows read as a fit off by 30%, and was
        held at default for the rest of its run), while its kernel time follows the clock."""
        pts = [p for p in self.points() if p.progress > 0 and p.util > 0]
        if len(pts) < 3 or not self.has_proxy:
            return 0.0
        a, b = fit_kernel([p.clock_mhz for p in pts], [p.util / p.progress for p in pts])
        return max(abs((a + b / p.clock_mhz) * p.progress / p.util - 1.0) for p in pts)

    def predict(self, f: float) -> tuple[float, float, float]:
        """(util 0..1, progress, power) expected at clock f."""
        t = self.wall_time(f)
        util = min(1.0, self.kernel_time(f) / t)
        if self.util_fit is not None:
            util = min(1.0, self.util_fit[0] + self.util_fit[1] / f)
        progress = 1.0 / t if self.has_proxy else self.ref.progress
        return util, progress, self.power(f)

    def energy_per_ref_second(self, f: float) -> float:
        """Energy for the work the phase does in one second at its reference clock."""
        return self.power(f) * (1.0 + self.slowdown(f))
