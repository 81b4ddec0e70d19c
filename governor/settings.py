"""What may be set on a GPU and what the governor asks for: capabilities, limits, setpoints, and
the writable settings a restore puts back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Capabilities:
    """Which knobs and sensors this GPU has; a missing knob is left alone, never faked."""

    can_lock_clocks: bool = True
    can_set_power_limit: bool = True
    has_energy_counter: bool = True
    has_instant_power: bool = False
    has_gpm: bool = False
    is_mig: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Limits:
    """What may be set on one GPU, as the GPU itself reports it."""

    sm_clocks_mhz: tuple[int, ...]  # supported SM clocks for the current memory clock, ascending
    mem_clock_mhz: int
    power_limit_min_w: float
    power_limit_max_w: float
    power_limit_default_w: float
    temp_slowdown_c: float
    temp_shutdown_c: float
    capabilities: Capabilities = field(default_factory=Capabilities)

    def __post_init__(self) -> None:
        if not self.sm_clocks_mhz:
            raise ValueError("Limits needs at least one supported SM clock")
        if tuple(sorted(self.sm_clocks_mhz)) != tuple(self.sm_clocks_mhz):
            object.__setattr__(self, "sm_clocks_mhz", tuple(sorted(self.sm_clocks_mhz)))

    @property
    def sm_clock_min_mhz(self) -> int:
        return self.sm_clocks_mhz[0]

    @property
    def sm_clock_max_mhz(self) -> int:
        return self.sm_clocks_mhz[-1]

    def snap_clock(self, mhz: float) -> int:
        """The supported clock nearest to mhz (ties go to the lower, the safer side)."""
        clocks = self.sm_clocks_mhz
        if mhz <= clocks[0]:
            return clocks[0]
        if mhz >= clocks[-1]:
            return clocks[-1]
        lo, hi = 0, len(clocks) - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if clocks[mid] <= mhz:
                lo = mid
            else:
                hi = mid
        return clocks[lo] if mhz - clocks[lo] <= clocks[hi] - mhz else clocks[hi]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sm_clocks_mhz"] = list(self.sm_clocks_mhz)
        return d


@dataclass(frozen=True)
class Setpoint:
    """What the governor asks of one GPU. None for a knob means "the GPU's own default".

    Setpoint() is the firmware default: no locked clocks, default power limit.
    """

    sm_clock_min_mhz: int | None = None
    sm_clock_max_mhz: int | None = None
    power_limit_w: float | None = None

    @property
    def locks_clocks(self) -> bool:
        return self.sm_clock_max_mhz is not None or self.sm_clock_min_mhz is not None

    @property
    def is_default(self) -> bool:
        return not self.locks_clocks and self.power_limit_w is None

    def lock(self, limits: Limits) -> tuple[int, int] | None:
        """The SM clock lock the GPU should hold: None for no lock; a missing end is the GPU's own."""
        if not self.locks_clocks:
            return None
        lo = self.sm_clock_min_mhz if self.sm_clock_min_mhz is not None else limits.sm_clock_min_mhz
        hi = self.sm_clock_max_mhz if self.sm_clock_max_mhz is not None else limits.sm_clock_max_mhz
        return (lo, hi)

    def power(self, limits: Limits) -> float:
        """The power limit the GPU should hold: the GPU's default where the setpoint names none."""
        return self.power_limit_w if self.power_limit_w is not None else limits.power_limit_default_w

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_SETPOINT = Setpoint()


@dataclass(frozen=True)
class DeviceSettings:
    """The writable state of a GPU as found or as left: what restore puts back.

    locked_clocks_mhz is None when the clocks are not locked (firmware boost). When a backend
    cannot read the current lock (NVML has no getter for locked clocks), clocks_known is False and
    restore resets the lock, the state a GPU is in after every driver load.
    """

    power_limit_w: float
    locked_clocks_mhz: tuple[int, int] | None = None
    clocks_known: bool = True

    def to_dict(self) -> dict:
        return {
            "power_limit_w": self.power_limit_w,
            "locked_clocks_mhz": list(self.locked_clocks_mhz) if self.locked_clocks_mhz else None,
            "clocks_known": self.clocks_known,
        }

    @classmethod
    def from_dict(cls, d: dict) -> DeviceSettings:
        lock = d.get("locked_clocks_mhz")
        return cls(
            power_limit_w=float(d["power_limit_w"]),
            locked_clocks_mhz=(int(lock[0]), int(lock[1])) if lock else None,
            clocks_known=bool(d.get("clocks_known", True)),
        )
