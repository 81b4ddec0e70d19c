"""Errors govd reports to operators. Each message says what went wrong and what is allowed.

Device errors are sorted by what the daemon should do about them: a missing knob is skipped, a
permission problem is reported once with the capability needed, a lost GPU is marked degraded.
"""

from __future__ import annotations


class GovdError(Exception):
    """Base of every error govd reports with a message meant for an operator.

    Picklable with its message and attributes as they are: an error raised in a worker process
    (the benchmark tools run simulations in a process pool) must reach the operator as itself. The
    default pickling calls the class with the message alone, which a subclass whose constructor
    takes other arguments either refuses (the pool then reports only that a worker died) or wraps
    into its message a second time."""

    def __reduce__(self):
        return _rebuild_error, (type(self), str(self), dict(self.__dict__))


def _rebuild_error(cls: type, message: str, state: dict) -> GovdError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ConfigError(GovdError):
    """A config or policy file is wrong: names the file, the key path and what is allowed."""

    def __init__(self, source: str, key: str, problem: str):
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class TraceError(GovdError):
    """A workload trace does not follow trace-format.md."""


class DeviceError(GovdError):
    """An operation on a GPU failed."""


class NoDriverError(DeviceError):
    def __init__(self, detail: str = ""):
        msg = "no NVIDIA driver found; run with --sim GPU to use a simulated GPU"
        super().__init__(f"{msg} ({detail})" if detail else msg)


class NoPermissionError(DeviceError):
    def __init__(self, what: str):
        super().__init__(
            f"{what}: permission denied; changing clocks or power limits needs root or CAP_SYS_ADMIN"
        )


class NotSupportedError(DeviceError):
    def __init__(self, what: str, why: str = ""):
        tail = f" ({why})" if why else ""
        super().__init__(f"{what} is not supported on this GPU{tail}; the GPU keeps running without that knob")


class GpuLostError(DeviceError):
    def __init__(self, what: str):
        super().__init__(f"{what}: the GPU has fallen off the bus or was reset; it is marked degraded")


class DeviceTimeoutError(DeviceError):
    """An NVML call did not answer in time (a sick GPU can block for tens of seconds)."""
