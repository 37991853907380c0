/* eval/serve.h -- `headwise eval --serve CKPT`: a checkpoint answers lm-evaluation-harness
 * requests as JSON lines on stdin/stdout (the protocol of tools/lm_eval_headwise). Owns the
 * protocol: one request line, one answer line, in order; the log goes to stderr.
 *
 *   {"id": 1, "type": "info"}
 *     -> {"id": 1, "max_length": T, "vocab": V, "eot": ID, "checkpoint": PATH, "step": S}
 *   {"id": 2, "type": "loglikelihood", "requests": [[context, continuation], ...]}
 *     -> {"id": 2, "results": [[logprob, is_greedy], ...]}
 *   {"id": 3, "type": "loglikelihood_rolling", "requests": [text, ...]}
 *     -> {"id": 3, "results": [logprob, ...]}
 *   {"id": 4, "type": "generate_until",
 *    "requests": [[context, {"until": [..], "max_gen_toks": N}], ...]}
 *     -> {"id": 4, "results": [text, ...]}
 *
 * The semantics are lm_eval's HFLM's (eval/lm.h): the context/continuation split of
 * _encode_pair, left truncation to the model's length, rolling windows with an end-of-text
 * prefix, greedy decoding cut at the first stop string. A bad line gets {"id": .., "error":
 * "..."} and the server goes on; end of input ends it (exit 0). Under mpirun rank 0 reads and
 * broadcasts each line, request i of a line is computed by rank i mod world, and rank 0 writes
 * the gathered answer, which does not depend on the number of ranks. */
#ifndef HW_SERVE_H
#define HW_SERVE_H

#include "../dist/dist.h"
#include "lm.h"

#include <stdio.h>

/* Serves until end of input on in (rank 0's); answers go to out. Returns 0, or HW_ESTOP. */
int serve_run(struct dist *d, struct lm *lm, const char *ckpt, long long step, FILE *in, FILE *out);

#endif /* HW_SERVE_H */
