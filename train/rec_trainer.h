/* train/rec_trainer.h -- training and evaluation of the rec model (model.family rec): data,
 * sharded model, AdamW (train/optim), validation AUC with the best-validation parameters kept,
 * checkpoints (ckpt/, same HDF5 layout: parameters by stable name), metrics.jsonl, and the
 * final validation/test scores in <run.dir>/eval/results_rec.json (docs/rec.md). */
#ifndef HW_REC_TRAINER_H
#define HW_REC_TRAINER_H

#include "../core/cfg.h"
#include "../dist/dist.h"

/* Returns a process exit code (enum hw_exit). */
int rec_train_run(const struct hw_config *c, struct dist *d);

#endif /* HW_REC_TRAINER_H */
