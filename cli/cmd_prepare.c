/* cli/cmd_prepare.c -- `headwise data prepare` on many files or into bounded shards: the input
 * glob's files are shared out over the ranks (file i to rank i mod world) and streamed through
 * the tokenizer into numbered shards (datasets/prepare.h). The tokenizer is given
 * (--tokenizer) or trained by rank 0 on the first --train-bytes of the input; every rank then
 * reads the same tokenizer.json. */
#define _POSIX_C_SOURCE 200809L
#include "../core/check.h"
#include "../core/fsutil.h"
#include "../core/log.h"
#include "../datasets/prepare.h"
#include "cli.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EOT "<|endoftext|>"

/* rank 0 makes out/tokenizer.json (the given file's text, or trained on a sample); every rank
 * then loads it */
static int shared_tokenizer(const struct dist *d, char *const *paths, int n,
                            const struct prep_opts *o, const char *given, int vocab,
                            long long train_bytes, struct bpe *tok, char *err) {
    char path[1100];
    snprintf(path, sizeof(path), "%.1000s/tokenizer.json", o->out);
    int rc = 0;
    if (d->rank == 0) {
        rc = fs_mkdirs(o->out, err);
        struct bpe t;
        bpe_init(&t);
        if (!rc && given) {
            bpe_free(&t);
            rc = bpe_load(&t, given, err);
        } else if (!rc) {
            size_t len = 0;
            char *text = prep_sample(paths, n, o, EOT, (size_t)train_bytes, &len, err);
            rc = text ? bpe_train(&t, text, len, vocab - 1, err) : HW_EIO;
            if (!rc && bpe_add_special(&t, EOT) < 0)
                rc = hw_errf(err, HW_EFORMAT, "cannot add special token %s", EOT);
            free(text);
        }
        for (int i = 0; i < n && !rc; i++)
            if (prep_is_jsonl(paths[i], o->jsonl) && bpe_eot_id(&t) < 0)
                rc = hw_errf(err, HW_ECONFIG,
                             "%s: no end-of-text special token to put between the JSONL "
                             "documents of %s (one of <|endoftext|>, <|end_of_text|>, </s>)",
                             given, paths[i]);
        if (!rc)
            rc = bpe_save(&t, path, err);
        bpe_free(&t);
    }
    if (dist_allreduce_max_int(d, rc ? 1 : 0)) /* every rank waits for the file */
        return rc ? rc : hw_errf(err, HW_EIO, "%s: rank 0 could not write it", path);
    bpe_free(tok);
    return bpe_load(tok, path, err);
}

int data_prepare_sharded(int argc, char **argv, struct dist *d, char *const *paths, int n) {
    char err[HW_ERR_LEN] = "";
    const char *format = cli_opt(argc, argv, "--format", NULL);
    const char *given = cli_opt(argc, argv, "--tokenizer", NULL);
    long long vocab, shard_tokens, train_bytes;
    double val_frac;
    if (cli_opt_int(argc, argv, "--vocab", 512, 257, 1 << 20, &vocab) ||
        cli_opt_num(argc, argv, "--val-frac", 0.1, 0.0, 0, 1.0, 1, &val_frac) ||
        cli_opt_int(argc, argv, "--shard-tokens", 1LL << 25, 1024, 1LL << 31, &shard_tokens) ||
        cli_opt_int(argc, argv, "--train-bytes", 64LL << 20, 1024, 1LL << 34, &train_bytes))
        return HW_EXIT_CONFIG;
    struct prep_opts o = {.out = cli_opt(argc, argv, "--out", NULL),
                          .jsonl = format ? !strcmp(format, "jsonl") : -1,
                          .field = cli_opt(argc, argv, "--field", "text"),
                          .val_frac = val_frac,
                          .shard_tokens = shard_tokens};
    struct bpe tok;
    bpe_init(&tok);
    const double t0 = log_now();
    int rc = shared_tokenizer(d, paths, n, &o, given, (int)vocab, train_bytes, &tok, err);
    if (rc) {
        log_error("%s", err);
        bpe_free(&tok);
        return rc == HW_ECONFIG ? HW_EXIT_CONFIG : HW_EXIT_FAIL;
    }
    struct prep_stats st = {0};
    for (int i = d->rank; i < n && !rc; i += d->world)
        rc = prep_file(&tok, paths[i], i, &o, &st, err);
    if (rc)
        log_error("%s", err);
    int any = dist_allreduce_max_int(d, rc ? 1 : 0);
    double sums[7] = {(double)st.bytes,      (double)st.docs,         (double)st.train_tokens,
                      (double)st.val_tokens, (double)st.train_shards, (double)st.val_shards,
                      log_now() - t0};
    for (int k = 0; k < 7; k++)
        sums[k] = k < 6 ? dist_allreduce_sum_double(d, sums[k]) : sums[k];
    if (!any && d->rank == 0) {
        log_info("data prepare: %d files, %.1f MB, %.0f documents -> train %.0f tokens in %.0f "
                 "shards, val %.0f tokens in %.0f shards (vocab %d, %d ranks, %.1f MB/s)",
                 n, sums[0] / 1e6, sums[1], sums[2], sums[4], sums[3], sums[5],
                 bpe_vocab_size(&tok), d->world, sums[0] / 1e6 / (sums[6] > 0 ? sums[6] : 1));
        log_info("train on them with  data.sources: [{path: %s/train_*.h5}]  data.val: "
                 "%s/val_*.h5",
                 o.out, o.out);
    }
    bpe_free(&tok);
    return any ? HW_EXIT_FAIL : 0;
}
