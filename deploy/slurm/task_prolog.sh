#!/bin/sh
# Slurm TaskProlog (slurm.conf: TaskProlog=/etc/slurm/govd/task_prolog.sh): runs as the user in the job and
# prints into the job's output what the Prolog decided about the requested policy (a forbidden or
# unknown name, and that the node's default runs instead).
GOVD_SLURM="${GOVD_SLURM:-/usr/local/bin/govd-slurm}"
[ -x "$GOVD_SLURM" ] || exit 0
"$GOVD_SLURM" task-prolog
exit 0
