/* eval/eval_cfg.c -- the `eval` section's keys (see eval_cfg.h); the task names are checked by
 * eval/tasks.c when the job starts. */
#include "eval_cfg.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define BIG 1000000000LL

static const char *const rolemrc_protocol_vals[] = {"official", "strict", NULL};

#define CFG_S   struct cfg_eval
#define CFG_SEC eval
static const struct cfg_key keys[] = {
    CFG_LIST(checkpoints, "checkpoint files or run directories to evaluate (a run directory "
                          "means every checkpoint in it)"),
    CFG_LIST(tasks, "tasks to run: perplexity, multifc, multifc_classify, rolemrc; or rec "
                    "alone, for model.family rec checkpoints"),
    CFG_STRING(output, "", 0, "results directory; \"\" = eval/ inside the (first) run directory"),
    CFG_INT(batch_size, 8, 1, 65536, "examples per forward pass; scores do not depend on it"),
    CFG_INT(limit, 0, 0, BIG, "at most this many examples per task; 0 = all"),
    CFG_INT(bootstrap_iters, 1000, 0, 10000000, "bootstrap resamples for standard errors"),
    CFG_BOOL(log_samples, 0, "also write per-sample inputs and outputs as JSONL"),
    CFG_INT64(seed, 1234, 0, INT64_MAX, "seed of few-shot draws, splits and the bootstrap"),
    CFG_STRING(perplexity_data, "", 0, "perplexity task: a token shard (.h5) or a raw text file"),
    CFG_STRING(multifc_data, "", 0,
               "MultiFC: the staged claimID,claim,label CSV or an official 13/12-column TSV"),
    CFG_INT(multifc_shots, 0, 0, 64, "MultiFC log-likelihood scoring: in-context examples"),
    CFG_DBL(multifc_test_frac, 0.2, 0.0, 1, 1.0, 1,
            "MultiFC with one labelled split: the test part of the seeded stratified split"),
    CFG_STRING(rolemrc_data, "", 0, "RoleMRC: roleMRC_test.jsonl or a file in its schema"),
    CFG_ENUM(rolemrc_protocol, "official", rolemrc_protocol_vals,
             "RoleMRC reference metrics: official = as the authors' evaluation.py (BLEU mean "
             "over the replies with tokens, ROUGE-Lsum with its arguments swapped); strict = "
             "an empty reply scores BLEU 0, ROUGE-Lsum(reference, reply) (docs/eval.md)"),
    CFG_INT(max_new_tokens, 256, 1, 65536, "generation length (RoleMRC)"),
    CFG_LIST(stop, "stop strings for generation"),
    CFG_LIST(
        judge_command,
        "LLM judge argv (no shell): gets each judge prompt on stdin, answers 0 or 1; [] = off"),
    CFG_STRING(chat_data, "", 0,
               "chat_qa: JSONL in the RoleMRC question schema (question + reference), scored by "
               "containment"),
    CFG_BOOL(
        indicator, 0,
        "chat tasks: append the checkpoint's sft.indicator to every user turn (\".\" first when "
        "it ends alphanumerically)"),
    CFG_DBL(pasta_alpha, 1.0, 0.0, 1, 1.0, 0,
            "chat tasks: PASTA-style steering, attention to non-user tokens is scaled by this and "
            "renormalised on every head; 1 = off")};

const struct cfg_section cfg_section_eval = {
    .name = "eval",
    .keys = keys,
    .n_keys = (int)(sizeof(keys) / sizeof(keys[0])),
};
