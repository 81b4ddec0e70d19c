"""`govd`: the daemon's command line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from .. import __version__
from ..backends import open_nvml_devices, open_sim_devices
from ..clock import RealClock
from ..config import example_config
from ..daemon import Daemon, DaemonOptions
from ..errors import GovdError
from ..logsetup import setup_logging
from ..paths import resolve_paths
from ..restore import do_restore

log = logging.getLogger("govd")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="govd", description="GPU DVFS governor daemon: saves GPU energy by setting "
                                "SM clocks and power limits within safe bounds.")
    p.add_argument("action", nargs="?", choices=("run", "install", "uninstall"), default="run",
                   help="run (default); install or uninstall the systemd service")
    p.add_argument("--prefix", type=Path, default=Path("/"),
                   help="install/uninstall: place files under this folder and run no commands")
    p.add_argument("--config", type=Path, help="config file (default: CONFIG_DIR/govd.toml, plus conf.d/*.toml)")
    p.add_argument("--root", help="put config, state and runtime folders under DIR (run unprivileged)")
    p.add_argument("--sim", metavar="GPU[,GPU...]",
                   help="use simulated GPUs instead of NVML: h100-sxm, a100-sxm4, h200, v100-sxm2 or spec files")
    p.add_argument("--trace", help="workload trace for simulated GPUs (a file or a built-in name); it loops")
    p.add_argument("--policy", help="policy for every GPU without its own (a name or a .toml path)")
    p.add_argument("--dry-run", action="store_true",
                   help="decide and log, never write to a GPU; with install/uninstall: print the plan only")
    p.add_argument("--duration", type=float, metavar="S", help="stop cleanly after S seconds (of simulated time)")
    p.add_argument("--speed", type=float, default=1.0, metavar="X",
                   help="simulated GPUs run X times faster than real time (default 1)")
    p.add_argument("--status-every", type=float, metavar="S",
                   help="log a status line per GPU every S seconds (overrides daemon.status_log_s)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="log verbosity")
    p.add_argument("--restore", action="store_true",
                   help="offline: put every GPU in originals.json back to its original settings, then exit")
    p.add_argument("--force", action="store_true", help="with --restore: even if the owning govd still runs")
    p.add_argument("--json", action="store_true", help="with --restore: print the report as JSON")
    p.add_argument("--print-example-config", action="store_true", help="print a commented example config")
    p.add_argument("--version", action="version", version=f"govd {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    # a reload asked for while starting up must not kill the daemon; the config is read at start anyway
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    args = parser().parse_args(argv)
    if args.print_example_config:
        print(example_config())
        return 0
    if args.action in ("install", "uninstall"):
        from ..install import install, uninstall  # noqa: PLC0415

        return (install if args.action == "install" else uninstall)(args.prefix, args.dry_run)
    setup_logging(args.log_level or "info")
    try:
        paths = resolve_paths(args.root)
        if args.restore:
            return do_restore(args, paths)
        if args.speed <= 0:
            raise GovdError("--speed must be > 0")
        if args.trace and not args.sim:
            raise GovdError("--trace needs --sim GPU: traces drive simulated GPUs only")
        clock = RealClock(speed=args.speed)
        paths.ensure()
        driver = None
        if args.sim:
            from ..sim.trace import load_trace  # noqa: PLC0415 - an NVML host never loads the simulator

            trace = load_trace(args.trace or "demo")
            devices = open_sim_devices([g for g in args.sim.split(",") if g], clock, paths.runtime_dir, trace)
            driver = "simulated"
        else:
            system, devices = open_nvml_devices()
            driver = system.driver_version()
        options = DaemonOptions(config_file=args.config, policy=args.policy, dry_run=args.dry_run,
                                duration_s=args.duration, driver_version=driver, log_level=args.log_level,
                                status_log_s=args.status_every)
        daemon = Daemon(paths, options, devices, clock)
        if args.log_level is None:
            setup_logging(daemon.config.get("daemon", "log_level"))
        return daemon.run()
    except GovdError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
