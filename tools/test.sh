#!/usr/bin/env bash
# The test command of README.md and of CI (.ci/run calls it): installs what the tests need, then
# runs ruff and pytest. As root on Debian it installs the system packages too; elsewhere it says
# which are missing, and the tests that need them skip with the reason. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore DEBIAN_FRONTEND=noninteractive

# libsystemd-dev, pkg-config, gcc: build systemd-python (the optional extra govd[systemd]).
# systemd, util-linux (unshare, nsenter), procps (pgrep), jq: the real-systemd tests and the README's
# journalctl recipe. prometheus: promtool, which checks the metrics endpoint's output.
# slurmctld slurmd slurm-client munge libslurm-dev iproute2: the real-Slurm test (and the SPANK plugin's build).
PACKAGES="libsystemd-dev pkg-config gcc systemd util-linux procps jq prometheus slurmctld slurmd slurm-client munge
libslurm-dev iproute2"
missing=""
if command -v dpkg-query >/dev/null; then
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
fi
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "tools/test.sh: installing$missing"
        apt-get update -qq
        # packages install their binaries only: no service of theirs (prometheus's, munge's, slurm's) is started
        policy_rc_d_added=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
            policy_rc_d_added=1
        fi
        # shellcheck disable=SC2086
        apt-get install -y -qq $missing >/dev/null
        if [ -n "$policy_rc_d_added" ]; then rm -f /usr/sbin/policy-rc.d; fi
    else
        echo "tools/test.sh: not root, so not installing$missing; tests that need them will skip" >&2
    fi
fi
# In CI every test that starts a real component must run: a missing tool is a failure, not a skip.
if [ "${CI:-}" = "true" ] && [ "$(id -u)" = 0 ]; then
    export GOVD_TESTS_REQUIRE_REAL=1
fi
python3 -m pip install -q -e '.[test,systemd,plot,kubernetes]'
ruff check .
python3 -m pytest -q "$@"
