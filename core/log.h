/* core/log.h -- rank-aware logging to stderr/stdout. Only rank 0 prints log_info;
 * log_error prints on every rank, prefixed with the rank when the world is larger than one. */
#ifndef HW_LOG_H
#define HW_LOG_H

void log_set_rank(int rank, int world);
int log_rank(void);
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* From now on log_info writes to stderr (stdout carries a protocol: eval --serve). */
void log_info_to_stderr(void);
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Seconds from a monotonic clock. */
double log_now(void);

#endif /* HW_LOG_H */
