"""How well one GPU's cooling removes heat, learned from its own power and temperature readings.

Why: at its thermal limit a GPU under default settings is throttled by its firmware to whatever
power the cooling removes at the slowdown temperature. A short window at default cannot show that
(it boosts for a second on a GPU that is not yet hot enough to throttle), so to price work done at
the thermal limit the ledger needs the cooling itself: how much power the GPU would dissipate,
held at a given temperature.

The model is Newton's law of cooling with one heat capacity, C dT/dt = P - (T - T_in) / R, fitted
online by least squares on 2-second intervals: dT/dt = a P - b T + c, so R = a / b and the inlet
temperature T_in = c / b. Old intervals fade (half-life `half_life_s`), so a change of fan speed or
inlet temperature is followed. NVML reports whole degrees, so single intervals are noisy; the fit
is only trusted after the GPU has been seen over a wide enough range of power and temperature
(warming up from idle is enough) and when the result is physical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class CoolingModel:
    interval_s: float = 2.0
    half_life_s: float = 1200.0
    min_intervals: int = 30
    min_temp_span_c: float = 8.0
    min_power_span_w: float = 80.0
    _start: tuple[float, float] | None = None  # (time, temperature) at the start of the interval
    _energy_j: float = 0.0
    _sxx: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    _sxy: np.ndarray = field(default_factory=lambda: np.zeros(3))
    _n: float = 0.0
    _t_range: list = field(default_factory=lambda: [math.inf, -math.inf])
    _p_range: list = field(default_factory=lambda: [math.inf, -math.inf])
    _fit: tuple[float, float] | None = None  # (R C/W, inlet C) once trusted
    _coef: tuple[float, float, float] | None = None  # (a, b, c) of dT/dt = a P - b T + c, once trusted

    def observe(self, time_s: float, temp_c: float, energy_j: float) -> None:
        """One reading: its time, temperature and the energy used since the previous reading."""
        if self._start is None:
            self._start, self._energy_j = (time_s, temp_c), 0.0
            return
        self._energy_j += energy_j
        t0, temp0 = self._start
        dt = time_s - t0
        if dt < self.interval_s:
            return
        power = self._energy_j / dt
        mid = 0.5 * (temp0 + temp_c)
        x = np.array([power, -mid, 1.0])
        decay = 0.5 ** (dt / self.half_life_s)
        self._sxx = self._sxx * decay + np.outer(x, x)
        self._sxy = self._sxy * decay + x * (temp_c - temp0) / dt
        self._n = self._n * decay + 1.0
        self._t_range = [min(self._t_range[0], mid), max(self._t_range[1], mid)]
        self._p_range = [min(self._p_range[0], power), max(self._p_range[1], power)]
        self._start, self._energy_j = (time_s, temp_c), 0.0
        self._fit = self._solve()

    def _solve(self) -> tuple[float, float] | None:
        self._coef = None
        if self._n < self.min_intervals or self._t_range[1] - self._t_range[0] < self.min_temp_span_c \
                or self._p_range[1] - self._p_range[0] < self.min_power_span_w:
            return None
        try:
            a, b, c = np.linalg.solve(self._sxx + 1e-9 * np.eye(3), self._sxy)
        except np.linalg.LinAlgError:
            return None
        if a <= 0 or b <= 0:
            return None
        r, inlet = a / b, c / b
        if not (0.005 <= r <= 2.0 and -20.0 <= inlet <= 80.0):
            return None
        self._coef = (float(a), float(b), float(c))
        return float(r), float(inlet)

    @property
    def fit(self) -> tuple[float, float] | None:
        """(thermal resistance C/W, inlet temperature C), or None while not trusted."""
        return self._fit

    def advance(self, temp_c: float, power_w: float, dt: float) -> float | None:
        """The temperature dt seconds on, from temp_c, dissipating power_w (None while not trusted):
        for following how warm a GPU would be under other settings than it runs at."""
        if self._coef is None:
            return None
        a, b, c = self._coef
        return temp_c + dt * (a * power_w - b * temp_c + c)

    def steady_power_w(self, temp_c: float) -> float | None:
        """The power the cooling removes with the GPU held at temp_c, or None while not trusted."""
        if self._fit is None:
            return None
        r, inlet = self._fit
        return max(0.0, (temp_c - inlet) / r)
