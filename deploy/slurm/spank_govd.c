/*
 * spank_govd: adds --govd-policy=NAME to srun, sbatch and salloc, so a user picks the govd policy
 * for the job's GPUs the way --gpu-freq or EAR's --ear-policy work. The name travels to the Prolog
 * and Epilog as SPANK_GOVD_POLICY (the job control environment); govd-slurm checks it against the
 * site's rules there. Nothing here can fail a job: a malformed name is refused at submission with a
 * message, and everything else is decided on the node.
 *
 * It also ends the job in govd when its batch script ends, in slurmstepd (root), while the job is
 * still running: only then may its AdminComment still be written (in the Epilog Slurm already counts
 * the job as finished and refuses the update). It runs `govd-slurm job-end`, bounded to 3 seconds.
 *
 * Build: gcc -shared -fPIC -o spank_govd.so spank_govd.c   (headers from libslurm-dev)
 * plugstack.conf: optional /usr/lib/slurm/spank_govd.so [job_end=/usr/local/bin/govd-slurm] [site=FILE]
 */
#include <ctype.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <slurm/slurm.h>
#include <slurm/spank.h>

SPANK_PLUGIN(govd, 1);

#define GOVD_POLICY_MAX 64

static char policy[GOVD_POLICY_MAX + 1];
static char job_end[4096] = "/usr/local/bin/govd-slurm";
static char site[4096] = "";

/* A policy name as govd allows it: a letter or digit, then letters, digits, '.', '_' or '-'. */
static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > GOVD_POLICY_MAX || !isalnum((unsigned char)s[0]))
        return 0;
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return 0;
    }
    return 1;
}

static int take_policy(int val, const char *optarg, int remote)
{
    (void)val;
    (void)remote;
    if (optarg == NULL || !valid_name(optarg)) {
        slurm_error("--govd-policy=%s: a policy name is letters, digits, '.', '_' or '-' (at most %d); "
                    "`govctl policy list` on a node shows them", optarg ? optarg : "", GOVD_POLICY_MAX);
        return -1;
    }
    snprintf(policy, sizeof(policy), "%s", optarg);
    return 0;
}

static struct spank_option govd_policy_option = {
    "govd-policy", "NAME",
    "govd power policy for this job's GPUs (for example batch, balanced, max-savings); the site may limit the choice",
    1, 0, take_policy,
};

/* Registered explicitly in every context: an option table alone is not offered by sbatch/salloc
 * (the allocator context), and the remote side must know the option to accept it. */
int slurm_spank_init(spank_t sp, int ac, char **av)
{
    for (int i = 0; i < ac; i++) {
        if (strncmp(av[i], "job_end=", 8) == 0)
            snprintf(job_end, sizeof(job_end), "%s", av[i] + 8);
        else if (strncmp(av[i], "site=", 5) == 0)
            snprintf(site, sizeof(site), "%s", av[i] + 5);
        else
            slurm_error("spank_govd: unknown argument %s (allowed: job_end=PATH, site=FILE)", av[i]);
    }
    if (spank_option_register(sp, &govd_policy_option) != ESPANK_SUCCESS) {
        slurm_error("spank_govd: cannot register --govd-policy");
        return -1;
    }
    return 0;
}

/* After the options are parsed, on the submitting side: hand the name to the Prolog and Epilog. */
int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
    (void)ac;
    (void)av;
    spank_context_t ctx = spank_context();
    if (policy[0] == '\0' || (ctx != S_CTX_LOCAL && ctx != S_CTX_ALLOCATOR))
        return 0;
    if (spank_job_control_setenv(sp, "GOVD_POLICY", policy, 1) != ESPANK_SUCCESS) {
        slurm_error("spank_govd: cannot pass --govd-policy=%s to the job's Prolog", policy);
        return -1;
    }
    return 0;
}

/* In slurmstepd, when the batch script has ended: `govd-slurm job-end` while the job still runs. */
int slurm_spank_exit(spank_t sp, int ac, char **av)
{
    (void)ac;
    (void)av;
    uint32_t job_id = 0, step_id = 0;
    if (!spank_remote(sp) || job_end[0] == '\0' || access(job_end, X_OK) != 0)
        return 0;
    if (spank_get_item(sp, S_JOB_ID, &job_id) != ESPANK_SUCCESS ||
        spank_get_item(sp, S_JOB_STEPID, &step_id) != ESPANK_SUCCESS || step_id != SLURM_BATCH_SCRIPT)
        return 0;
    pid_t pid = fork();
    if (pid < 0)
        return 0;
    if (pid == 0) {
        char id[32];
        snprintf(id, sizeof(id), "%u", job_id);
        setenv("SLURM_JOB_ID", id, 1);
        if (site[0] != '\0')
            setenv("GOVD_SLURM_SITE", site, 1);
        execl(job_end, job_end, "job-end", (char *)NULL);
        _exit(0);
    }
    /* never hold a job up for govd: at most 3 s, then the child is killed */
    for (int i = 0; i < 300; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return 0;
        struct timespec ten_ms = {0, 10 * 1000 * 1000};
        nanosleep(&ten_ms, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return 0;
}
