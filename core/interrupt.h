/* core/interrupt.h -- a progress hook for long rank-local work that has no step boundary
 * (reading and tokenizing data at start-up): the loop calls hw_interrupted() between lines or
 * blocks and ends with HW_ESTOP when it returns 1; the job decides what a stop means by setting
 * the hook (training and eval: a stop signal seen on any rank, dist_notice). Unset, it costs a
 * load and a branch. Like SQLite's progress handler. HW_FAULT_SLOW_LOAD_MS (tests) makes every
 * call sleep that long while a hook is set, so that a small file loads slowly. */
#ifndef HW_INTERRUPT_H
#define HW_INTERRUPT_H

/* Install poll(arg) (NULL: none). poll returns nonzero to stop; it is called at most every
 * 10 ms, and once it said stop every later call says so until the hook is set again. */
void hw_interrupt_set(int (*poll)(void *arg), void *arg);
/* 1: stop the work under way and return HW_ESTOP. */
int hw_interrupted(void);

#endif /* HW_INTERRUPT_H */
