/* train/signals.h -- stop requests. SIGTERM, SIGUSR1 and SIGINT set a flag that the training
 * loop reads at step boundaries: it then saves a checkpoint and exits with HW_EXIT_REQUEUE. */
#ifndef HW_SIGNALS_H
#define HW_SIGNALS_H

void signals_install(void);
/* The signal number that asked to stop, or 0. */
int signals_pending(void);

#endif /* HW_SIGNALS_H */
