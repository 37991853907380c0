/* train/signals.h -- stop requests. SIGTERM, SIGUSR1 and SIGINT set a flag that the training
 * loop reads at step boundaries (every rank; the ranks agree with an all-reduce): it then saves
 * a checkpoint and exits with HW_EXIT_REQUEUE.
 *
 * `headwise train` installs the handlers first thing in main, before MPI starts, so a signal
 * during start-up is kept instead of killing the rank ("User defined signal 1"): the data loading
 * answers it (train/task.h trainer_load_begin), or else the end of the first step does.
 *
 * HW_STOP_FILE=PATH: once that file exists, stop as if SIGUSR1 had arrived. The Slurm scripts
 * create it on SIGUSR1 instead of forwarding the signal, because a launcher (srun, mpirun) or a
 * rank that is still starting loses or dies of a signal in its first moments, while the file is
 * still there when the ranks reach their first step boundary. Rank 0 (as the launcher names it:
 * OMPI_COMM_WORLD_RANK, PMIX_RANK, SLURM_PROCID) looks at most every 0.1 s, the other ranks every
 * 2 s (one rank seeing it is enough, since the ranks agree through an all-reduce; the slow look
 * covers a launcher that names no rank 0), so a large job does not flood a shared filesystem. */
#ifndef HW_SIGNALS_H
#define HW_SIGNALS_H

/* Idempotent: the flag keeps a signal that arrived before a later call. */
void signals_install(void);
/* The signal number that asked to stop (SIGUSR1 for HW_STOP_FILE), or 0. */
int signals_pending(void);
/* A poll for work that has no step boundary (data loading, an eval task), with a
 * struct dist_notice as arg: a local stop request raises the notice, another rank's counts.
 * Returns nonzero once either happened. */
int signals_notice_poll(void *notice);

#endif /* HW_SIGNALS_H */
