"""The simulated GPU as a Device: the NVML-like face of SimGpu, a driver state file, and faults.

The driver state file (locked clocks, power limit) lives under the runtime folder, because a real
driver outlives the daemon: after a SIGKILL the GPU stays as govd left it, and `govd --restore`
must put it back. Another program changing the clocks is simulated by writing that file, exactly
as `nvidia-smi -lgc` would change the driver's state behind govd's back.
"""

from __future__ import annotations

import json
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass, fields
from pathlib import Path

from ..atomic import write_json_atomic
from ..clock import Clock
from ..device import Device
from ..errors import ConfigError, DeviceError, GpuLostError
from ..settings import Capabilities, Limits
from ..telemetry import GpuInfo, Sample
from .gpu import SimGpu
from .spec import GpuSpec
from .trace import Trace


def sim_uuid(spec_key: str, index: int) -> str:
    return "GPU-" + str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"govd-sim/{spec_key}/{index}"))


@dataclass
class SimFaults:
    """Faults to inject into one simulated GPU; times are simulated seconds."""

    fail_sets: int = 0  # the next N writes fail
    set_error_rate: float = 0.0  # each write fails with this probability
    lost_at_s: float | None = None  # from then on every call fails: GPU fell off the bus
    driver_reload_at_s: float | None = None  # settings to defaults, energy counter from zero
    hang_at_s: float | None = None  # from then on calls block for hang_s real seconds
    hang_s: float = 3600.0
    external_lock_at_s: float | None = None  # another program locks the clocks then
    external_lock_mhz: tuple[int, int] | None = None
    external_power_limit_w: float | None = None  # ... and/or sets this power limit

    @classmethod
    def from_dict(cls, d: dict, source: str) -> SimFaults:
        known = {f.name for f in fields(cls)}
        for key in d:
            if key not in known:
                raise ConfigError(source, key, f"unknown fault; allowed: {', '.join(sorted(known))}")
        d = dict(d)
        if d.get("external_lock_mhz") is not None:
            d["external_lock_mhz"] = tuple(int(x) for x in d["external_lock_mhz"])
        return cls(**d)


def check_lock(spec: GpuSpec, index: int, min_mhz: int, max_mhz: int) -> None:
    """What the simulated driver accepts as a clock lock, online and offline alike: as NVML, any
    range with 0 < min <= max (the driver runs at supported clocks within it; `nvidia-smi -lgc
    1000,1500` is a common operator setting and need not be on the grid)."""
    if not 0 < min_mhz <= max_mhz:
        raise DeviceError(f"GPU {index}: locked clocks {min_mhz}-{max_mhz} MHz are invalid (need 0 < min <= max; "
                          f"supported clocks {spec.sm_clocks_mhz[0]}..{spec.sm_clocks_mhz[-1]} MHz)")


def check_power_limit(spec: GpuSpec, index: int, watts: float) -> None:
    if not spec.power_limit_min_w <= watts <= spec.power_limit_max_w:
        raise DeviceError(f"GPU {index}: power limit {watts} W out of range "
                          f"[{spec.power_limit_min_w}, {spec.power_limit_max_w}] W")


class SimDriverFile:
    """The simulated driver's persistent settings for one GPU."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> dict | None:
        try:
            with self.path.open() as fh:
                return json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise DeviceError(f"simulated driver state {self.path} is unreadable: {exc}") from None

    def write(self, state: dict) -> None:
        write_json_atomic(self.path, state, mode=0o644)

    def mtime_ns(self) -> int:
        try:
            return self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return 0


class SimDevice(Device):
    def __init__(self, spec: GpuSpec, index: int, clock: Clock, state_dir: Path, trace: Trace | None = None,
                 loop: bool = False, faults: SimFaults | None = None, seed: int = 0):
        self.spec = spec
        self.clock = clock
        self.info = GpuInfo(index=index, uuid=sim_uuid(spec.key, index), name=spec.name,
                            pci_bus_id=f"00000000:{0x18 + 0x10 * index:02X}:00.0", backend="sim")
        self.gpu = SimGpu(spec, trace, seed=seed + index, loop=loop)
        self.state_dir = Path(state_dir)
        self.driver = SimDriverFile(self.state_dir / f"gpu{index}.json")
        self.faults_file = self.state_dir / f"faults-gpu{index}.json"
        self._faults_mtime = 0
        self.faults = faults or SimFaults()
        self._lock = threading.Lock()
        self._t0 = clock.now()
        self._seen_mtime = -1
        self._lost = False
        self._reloaded = False
        self._externally_written = False
        self._load_driver_state(initial=True)

    # ----- driver state ------------------------------------------------------------------------
    def _state(self) -> dict:
        return {"spec": self.spec.key, "uuid": self.info.uuid, "index": self.info.index,
                "locked_clocks_mhz": list(self.gpu.locked) if self.gpu.locked else None,
                "power_limit_w": self.gpu.power_limit_w}

    def _save_driver_state(self) -> None:
        self.driver.write(self._state())
        self._seen_mtime = self.driver.mtime_ns()

    def _load_driver_state(self, initial: bool = False) -> None:
        mtime = self.driver.mtime_ns()
        if mtime == self._seen_mtime:
            return
        self._seen_mtime = mtime
        state = self.driver.read()
        if state is None:
            if initial:
                self._save_driver_state()
            return
        lock = state.get("locked_clocks_mhz")
        self.gpu.set_locked(tuple(int(x) for x in lock) if lock else None)
        self.gpu.set_power_limit(float(state.get("power_limit_w", self.spec.power_limit_default_w)))

    def _load_faults(self) -> None:
        try:
            mtime = self.faults_file.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime == self._faults_mtime:
            return
        self._faults_mtime = mtime
        try:
            data = json.loads(self.faults_file.read_text())
            self.faults = SimFaults.from_dict(data, str(self.faults_file))
        except (OSError, ValueError, TypeError, ConfigError) as exc:
            raise DeviceError(f"bad fault file {self.faults_file}: {exc}") from None

    def _sim_time(self) -> float:
        return self.clock.now() - self._t0

    def _sync(self, writing: bool = False) -> None:
        """Bring the simulated GPU up to now and apply faults due by now."""
        self._load_faults()
        f = self.faults
        t = self._sim_time()
        if self._lost or (f.lost_at_s is not None and t >= f.lost_at_s):
            self._lost = True
            raise GpuLostError(f"GPU {self.info.index} ({self.info.uuid})")
        if f.hang_at_s is not None and t >= f.hang_at_s:
            time.sleep(f.hang_s)
        self.gpu.advance_to(t)
        if f.driver_reload_at_s is not None and t >= f.driver_reload_at_s and not self._reloaded:
            self._reloaded = True
            self.gpu.driver_reload()
            self._save_driver_state()
        if f.external_lock_at_s is not None and t >= f.external_lock_at_s and not self._externally_written:
            self._externally_written = True
            state = self._state()
            if f.external_lock_mhz:
                state["locked_clocks_mhz"] = list(f.external_lock_mhz)
            if f.external_power_limit_w:
                state["power_limit_w"] = f.external_power_limit_w
            self.driver.write(state)  # as another program would: govd's view is not updated
        self._load_driver_state()
        if writing:
            if f.fail_sets > 0:
                f.fail_sets -= 1
                raise DeviceError(f"GPU {self.info.index}: injected write failure")
            if f.set_error_rate > 0 and self.gpu.rng.random() < f.set_error_rate:
                raise DeviceError(f"GPU {self.info.index}: injected write failure")

    # ----- Device ------------------------------------------------------------------------------
    def limits(self) -> Limits:
        s = self.spec
        return Limits(
            sm_clocks_mhz=s.sm_clocks_mhz, mem_clock_mhz=s.mem_clock_mhz,
            power_limit_min_w=s.power_limit_min_w, power_limit_max_w=s.power_limit_max_w,
            power_limit_default_w=s.power_limit_default_w, temp_slowdown_c=s.temp_slowdown_c,
            temp_shutdown_c=s.temp_shutdown_c,
            capabilities=Capabilities(can_lock_clocks=True, can_set_power_limit=True, has_energy_counter=True,
                                      has_instant_power=s.has_instant_field, has_gpm=s.has_gpm),
        )

    def sample(self) -> Sample:
        with self._lock:
            self._sync()
            r = self.gpu.read()
            return Sample(
                time_s=self.clock.now(), gpu_util_pct=r.gpu_util_pct, mem_util_pct=r.mem_util_pct,
                power_w=r.power_avg_w, temp_c=r.temp_c, sm_clock_mhz=r.sm_clock_mhz,
                mem_clock_mhz=r.mem_clock_mhz, power_limit_w=self.gpu.power_limit_w,
                clock_event_reasons=r.reasons,
                power_instant_w=r.power_instant_w if self.spec.has_instant_field else None,
                energy_mj=r.energy_mj,
                sm_activity_pct=r.sm_activity_pct if self.spec.has_gpm else None,
                dram_bw_pct=r.dram_bw_pct if self.spec.has_gpm else None,
            )

    def get_power_limit_w(self) -> float:
        with self._lock:
            self._sync()
            return self.gpu.power_limit_w

    def get_locked_clocks(self) -> tuple[int, int] | None:
        with self._lock:
            self._sync()
            return self.gpu.locked

    def set_locked_clocks(self, min_mhz: int, max_mhz: int) -> None:
        with self._lock:
            self._sync(writing=True)
            check_lock(self.spec, self.info.index, min_mhz, max_mhz)
            self.gpu.set_locked((int(min_mhz), int(max_mhz)))
            self._save_driver_state()

    def reset_locked_clocks(self) -> None:
        with self._lock:
            self._sync(writing=True)
            self.gpu.set_locked(None)
            self._save_driver_state()

    def set_power_limit_w(self, watts: float) -> None:
        with self._lock:
            self._sync(writing=True)
            check_power_limit(self.spec, self.info.index, watts)
            self.gpu.set_power_limit(watts)
            self._save_driver_state()

    def restore_handle(self) -> dict:
        return {"backend": "sim", "state_file": str(self.driver.path.resolve()), "spec": self.spec.key,
                "index": self.info.index, "uuid": self.info.uuid}


class SimDriverOnly(Device):
    """A simulated GPU's driver state without the physics: what `govd --restore` opens offline."""

    def __init__(self, handle: dict):
        from .spec import load_spec

        self.spec = load_spec(handle["spec"])
        self.driver = SimDriverFile(Path(handle["state_file"]))
        self.info = GpuInfo(index=int(handle["index"]), uuid=handle["uuid"], name=self.spec.name,
                            pci_bus_id="", backend="sim")

    def _state(self) -> dict:
        state = self.driver.read()
        if state is None:
            raise DeviceError(f"simulated GPU state {self.driver.path} is gone (the simulated driver was "
                              "unloaded, so the GPU is at its defaults)")
        return state

    def limits(self) -> Limits:
        s = self.spec
        return Limits(sm_clocks_mhz=s.sm_clocks_mhz, mem_clock_mhz=s.mem_clock_mhz,
                      power_limit_min_w=s.power_limit_min_w, power_limit_max_w=s.power_limit_max_w,
                      power_limit_default_w=s.power_limit_default_w, temp_slowdown_c=s.temp_slowdown_c,
                      temp_shutdown_c=s.temp_shutdown_c)

    def sample(self) -> Sample:
        raise DeviceError("an offline simulated GPU has no sensors")

    def get_power_limit_w(self) -> float:
        return float(self._state()["power_limit_w"])

    def get_locked_clocks(self) -> tuple[int, int] | None:
        lock = self._state().get("locked_clocks_mhz")
        return (int(lock[0]), int(lock[1])) if lock else None

    def _update(self, **changes) -> None:
        state = self._state()
        state.update(changes)
        self.driver.write(state)

    def set_locked_clocks(self, min_mhz: int, max_mhz: int) -> None:
        check_lock(self.spec, self.info.index, min_mhz, max_mhz)
        self._update(locked_clocks_mhz=[int(min_mhz), int(max_mhz)])

    def reset_locked_clocks(self) -> None:
        self._update(locked_clocks_mhz=None)

    def set_power_limit_w(self, watts: float) -> None:
        check_power_limit(self.spec, self.info.index, watts)
        self._update(power_limit_w=float(watts))

    def restore_handle(self) -> dict:
        return {"backend": "sim", "state_file": str(self.driver.path), "spec": self.spec.key,
                "index": self.info.index, "uuid": self.info.uuid}


def sim_state_dir(runtime_dir: Path) -> Path:
    d = Path(runtime_dir) / "sim"
    d.mkdir(parents=True, exist_ok=True, mode=0o755)
    return d

