#!/bin/sh
# Slurm Prolog (slurm.conf: Prolog=/etc/slurm/govd/prolog.sh, PrologFlags=Alloc): starts the job's GPUs
# on the policy its user asked for (--govd-policy, or `govd:policy=NAME` in --comment). Never fails
# the job: govd-slurm always exits 0, and is done within a second when govd is not running.
GOVD_SLURM="${GOVD_SLURM:-/usr/local/bin/govd-slurm}"
[ -x "$GOVD_SLURM" ] || exit 0
"$GOVD_SLURM" prolog
exit 0
