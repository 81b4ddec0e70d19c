#!/bin/sh
# Slurm Epilog (slurm.conf: Epilog=/etc/slurm/govd/epilog.sh): ends the job in govd, which gives its GPUs
# the node policy back, and writes its energy (used, saved) to the AdminComment. Never fails
# the job: govd-slurm always exits 0, and is done within a second when govd is not running.
GOVD_SLURM="${GOVD_SLURM:-/usr/local/bin/govd-slurm}"
[ -x "$GOVD_SLURM" ] || exit 0
"$GOVD_SLURM" epilog
exit 0
