/* cli/cmd_ckpt.c -- `headwise ckpt info|verify FILE`, `ckpt logits` (the model's logits on given
 * token ids, for comparisons with other implementations) and the dispatch to import-hf and
 * export-hf (cmd_hf.c). */
#include "../ckpt/ckpt.h"
#include "../ckpt/ckpt_model.h"
#include "../core/check.h"
#include "../core/fsutil.h"
#include "../core/log.h"
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* lines of space-separated ids, all of one length: (*n, *T) row-major */
static int32_t *read_id_rows(const char *path, int *n, int *T, char *err) {
    size_t len;
    char *text = fs_read_all(path, &len, err);
    if (!text)
        return NULL;
    int32_t *ids = NULL;
    size_t cap = 0, count = 0;
    int rows = 0, width = -1, line = 0;
    for (char *p = text, *next; p && *p; p = next) {
        line++;
        char *nl = strchr(p, '\n');
        next = nl ? nl + 1 : NULL;
        if (nl)
            *nl = 0;
        int w = 0;
        for (char *q = p, *end;; q = end) {
            long v = strtol(q, &end, 10);
            if (end == q)
                break;
            if (v < 0 || v > INT32_MAX) {
                hw_errf(err, HW_EFORMAT, "%s:%d: id %ld is out of range", path, line, v);
                free(text);
                free(ids);
                return NULL;
            }
            if (count == cap)
                ids = HW_REALLOC(ids, sizeof(int32_t) * (cap = cap ? 2 * cap : 1024));
            ids[count++] = (int32_t)v;
            w++;
        }
        if (w == 0)
            continue;
        if (width >= 0 && w != width) {
            hw_errf(err, HW_EFORMAT, "%s:%d: %d ids, the first line has %d", path, line, w, width);
            free(text);
            free(ids);
            return NULL;
        }
        width = w;
        rows++;
    }
    free(text);
    if (!rows)
        hw_errf(err, HW_EFORMAT, "%s: no ids", path);
    *n = rows;
    *T = width;
    return ids;
}

/* `ckpt logits CKPT --ids FILE --out FILE`: raw little-endian float32 (rows, T, vocab) */
static int ckpt_logits(int argc, char **argv, struct dist *d) {
    static const char *const valued[] = {"--ids", "--out", NULL};
    char *pos[3], err[HW_ERR_LEN];
    const char *ids_path = cli_opt(argc, argv, "--ids", NULL),
               *out = cli_opt(argc, argv, "--out", NULL);
    if (cli_positional(argc, argv, valued, pos, 3) != 2 || !ids_path || !out) {
        log_error("usage: headwise ckpt logits CKPT|RUN_DIR --ids FILE --out FILE");
        return HW_EXIT_CONFIG;
    }
    int n = 0, T = 0;
    int32_t *ids = read_id_rows(ids_path, &n, &T, err);
    if (!ids || !n) {
        log_error("%s", err);
        free(ids);
        return HW_EXIT_FAIL;
    }
    struct hw_config *cfg = HW_MALLOC(sizeof(*cfg));
    struct bpe tok;
    struct gpt m;
    memset(&m, 0, sizeof(m));
    const char *why = NULL;
    int rc = ckpt_load_model(d, pos[1], ops_by_name("cpu", &why), cfg, &tok, &m, NULL, NULL, err);
    for (int64_t i = 0; !rc && i < (int64_t)n * T; i++)
        if (ids[i] >= m.c.V)
            rc = hw_errf(err, HW_EFORMAT, "%s: id %d is not below the vocabulary %d", ids_path,
                         ids[i], m.c.V);
    if (!rc && T > m.c.max_T)
        rc = hw_errf(err, HW_EFORMAT, "%s: %d ids a row, more than model.max_seq %d", ids_path, T,
                     m.c.max_T);
    if (!rc) {
        ops_set_threads(cfg->train.threads);
        gpt_alloc_acts(&m, n, T);
        gpt_forward(&m, ids, NULL, n, T, 1.0f, 0);
        rc = fs_write_atomic(out, (const char *)gpt_logits(&m),
                             sizeof(float) * (size_t)n * (size_t)T * (size_t)m.c.V, err);
    }
    if (!rc)
        log_info("logits: %d x %d x %d float32 -> %s", n, T, m.c.V, out);
    else
        log_error("%s", err);
    gpt_free(&m);
    bpe_free(&tok);
    free(cfg);
    free(ids);
    return rc ? HW_EXIT_FAIL : 0;
}

int cmd_ckpt(int argc, char **argv, struct dist *d) {
    char err[HW_ERR_LEN];
    if (argc >= 2 && (!strcmp(argv[1], "import-hf") || !strcmp(argv[1], "export-hf")))
        return cmd_ckpt_hf(argc, argv, d);
    if (argc >= 2 && !strcmp(argv[1], "logits"))
        return ckpt_logits(argc, argv, d);
    if (argc != 3 || (strcmp(argv[1], "info") && strcmp(argv[1], "verify"))) {
        log_error("usage: headwise ckpt info|verify FILE | logits | import-hf | export-hf");
        return HW_EXIT_CONFIG;
    }
    int rc = !strcmp(argv[1], "info") ? ckpt_info(d, argv[2], stdout, err)
                                      : ckpt_verify(d, argv[2], stdout, err);
    if (rc) {
        log_error("%s", err);
        return HW_EXIT_FAIL;
    }
    return 0;
}
