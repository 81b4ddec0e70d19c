"""The simulated GPU's sensors, as NVML reports them (../shared/calibration.md, "Sensors and actuators").

Truth goes in every simulation step; what comes out is what NVML would return, with its windows,
granularity and noise. All randomness is drawn here, once per step, from a seeded generator, so
that the seed changes the readings and never the truth, and a reading does not depend on how often
it is read.

- Utilization: integer percent of the last *completed* sample period (1/6 s) with a kernel running.
- Memory utilization: integer percent of that period with device memory read or written. Memory
  that is busy moves data at about the rate it can sustain, not at its theoretical peak, so a
  kernel that uses a share d of peak bandwidth keeps memory busy min(1, d / 0.9) of its time: the
  busy share is the bandwidth share over the sustainable rate (0.9 of peak, assumed: no public table
  maps NVML's time share to bandwidth), saturating at 100% for the heaviest decode. It stays
  proportional to the traffic below saturation, as NVML's counter is for streaming work, and
  flattens above it, where a progress proxy built on it loses sight of clock effects.
- Power: a sensor that samples about 25% of the time (calibration.md, SC'24 arXiv 2312.02741 on
  A100 and H100; assumed for the other GPUs too): every 100 ms one 25 ms step is sampled at random,
  with the spec's relative noise. The 1 s average is the mean of the last ten samples; the instant
  reading (GA100's default, and the instant field) is the newest sample.
- Energy: a counter in mJ, updated every 100 ms by the sampled power times 100 ms: unbiased, and
  noisy over short windows (a burst the sampler missed is missing from it).
- Temperature: integer degrees C.
- GPM SM activity and DRAM bandwidth (Hopper): period means with 2% relative noise (assumed).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from .spec import GpuSpec

GPM_NOISE_FRAC = 0.02
MEMORY_ACTIVE_RATE = 0.9  # share of peak bandwidth memory moves at while it is busy (assumed)
POWER_SAMPLED_SHARE = 0.25  # of the steps of each energy update period


def memory_busy_share(dram_bw: float) -> float:
    """Share of kernel time with memory traffic, for a kernel using dram_bw of peak bandwidth."""
    return min(1.0, max(0.0, dram_bw) / MEMORY_ACTIVE_RATE)


@dataclass(frozen=True)
class SensorValues:
    gpu_util_pct: int
    mem_util_pct: int
    power_avg_w: float
    power_instant_w: float
    energy_mj: int
    sm_activity_pct: float
    dram_bw_pct: float


class NvmlSensors:
    def __init__(self, spec: GpuSpec, rng: random.Random, step_s: float, initial_power_w: float):
        self.spec, self.rng = spec, rng
        self.period_steps = max(1, round(spec.util_window_s / step_s))
        self.update_steps = max(1, round(spec.energy_update_s / step_s))
        self.step_s = step_s
        n_avg = max(1, round(spec.power_avg_window_s / spec.energy_update_s))
        self.samples: deque[float] = deque([initial_power_w] * n_avg, maxlen=n_avg)
        self._period = [0.0, 0.0, 0.0, 0.0]  # util, memory busy, SM activity, DRAM bandwidth
        self._period_n = 0
        self._update_powers: list[float] = []
        self.util_pct = self.mem_pct = 0
        self.sm_activity_pct = self.dram_bw_pct = 0.0
        self.counter_j = 0.0

    def step(self, util: float, dram: float, sm_activity: float, power_w: float) -> None:
        """One simulation step of truth: kernel share, DRAM bandwidth share and GPM SM activity of
        the step (each averaged over it), and its true power."""
        mem_busy = util * memory_busy_share(dram / util) if util > 0 else 0.0
        acc = self._period
        acc[0] += util
        acc[1] += mem_busy
        acc[2] += sm_activity
        acc[3] += dram
        self._period_n += 1
        if self._period_n >= self.period_steps:
            n = self._period_n
            self.util_pct = int(round(100.0 * min(1.0, acc[0] / n)))
            self.mem_pct = int(round(100.0 * min(1.0, acc[1] / n)))
            self.sm_activity_pct = round(100.0 * min(1.0, acc[2] / n * (1.0 + self.rng.gauss(0.0, GPM_NOISE_FRAC))), 2)
            self.dram_bw_pct = round(100.0 * min(1.0, acc[3] / n * (1.0 + self.rng.gauss(0.0, GPM_NOISE_FRAC))), 2)
            self._period = [0.0, 0.0, 0.0, 0.0]
            self._period_n = 0
        self._update_powers.append(power_w)
        if len(self._update_powers) >= self.update_steps:
            sampled = self.rng.choice(self._update_powers) * (1.0 + self.rng.gauss(0.0, self.spec.power_noise_frac))
            self.samples.append(sampled)
            self.counter_j += sampled * self.update_steps * self.step_s
            self._update_powers = []

    def reset_counter(self) -> None:
        """A driver reload: the energy counter starts from zero."""
        self.counter_j = 0.0

    def values(self) -> SensorValues:
        avg = sum(self.samples) / len(self.samples)
        inst = self.samples[-1]
        return SensorValues(
            gpu_util_pct=self.util_pct, mem_util_pct=self.mem_pct,
            power_avg_w=round(inst if self.spec.power_sensor_instant else avg, 3), power_instant_w=round(inst, 3),
            energy_mj=int(self.counter_j * 1000.0), sm_activity_pct=self.sm_activity_pct,
            dram_bw_pct=self.dram_bw_pct)
