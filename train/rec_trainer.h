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

/* `headwise eval` with eval.tasks [rec]: each of eval.checkpoints (a file, or a run directory's
 * latest checkpoint) is rebuilt from its stored config, its data reloaded, and scored on
 * validation and test; results_<checkpoint>.json goes to eval.output or <run dir>/eval. Any
 * rank count (tables are read as row slabs). */
int rec_eval_run(const struct hw_config *c, struct dist *d);

#endif /* HW_REC_TRAINER_H */
