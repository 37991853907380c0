/* train/tensorboard.h -- TensorBoard event files, written natively: TFRecord framing (the
 * record's length, the masked CRC-32C of the length, the record, the masked CRC-32C of the
 * record) around tensorflow.Event protos, of which only the scalar subset is written (wall_time,
 * step, file_version, and a Summary of (tag, simple_value) pairs). One file per run start,
 * RUN_DIR/tb/events.out.tfevents.<unix seconds>.<host>.<pid>; TensorBoard reads every file of
 * the directory, so a resumed run continues the same curves. */
#ifndef HW_TENSORBOARD_H
#define HW_TENSORBOARD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct tb_writer;

/* Create DIR/tb and a new event file in it (its first record names the format); NULL with one
 * line in err when it cannot be created. */
struct tb_writer *tb_open(const char *run_dir, char *err);
/* One event at `step`: every number of the metrics object (integers too, but not "step") as a
 * scalar named by its key; arrays, objects and strings are left out. Flushed at once. Returns 0,
 * or -1 when the write failed (the file is then closed and later calls do nothing). */
int tb_scalars(struct tb_writer *w, int64_t step, const json_t *metrics);
void tb_close(struct tb_writer *w);
/* The file's path. */
const char *tb_path(const struct tb_writer *w);

/* CRC-32C (Castagnoli), as TFRecord uses it before masking. */
uint32_t tb_crc32c(const void *data, size_t n);

#endif /* HW_TENSORBOARD_H */
