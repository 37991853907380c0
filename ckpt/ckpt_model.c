/* ckpt/ckpt_model.c -- model from checkpoint (see ckpt_model.h). */
#include "ckpt_model.h"

#include "../core/check.h"
#include "../ops/ops.h"
#include "ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int ckpt_load_model(const struct dist *d, const char *path, const struct ops *be,
                    struct hw_config *cfg, struct bpe *tok, struct gpt *m, int64_t *step,
                    char *resolved, char *err) {
    char file[CKPT_PATH_LEN];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        int found = ckpt_latest(path, file, err);
        if (found < 0)
            return found;
        if (found == 0)
            return hw_errf(err, HW_EIO, "%s: no checkpoint in this run directory", path);
    } else {
        snprintf(file, sizeof(file), "%s", path);
    }
    if (resolved)
        snprintf(resolved, CKPT_PATH_LEN, "%s", file);
    struct ckpt_file f;
    struct ckpt_meta meta;
    memset(&f, 0, sizeof(f));
    memset(&meta, 0, sizeof(meta));
    bpe_init(tok);
    int rc = ckpt_open(&f, d, file, err);
    if (!rc)
        rc = ckpt_read_meta(&f, &meta, err);
    if (!rc) {
        char name[CKPT_PATH_LEN + 16];
        snprintf(name, sizeof(name), "%s:/config", file);
        rc = cfg_load_string(cfg, meta.config_yaml, name, 0, NULL, err);
    }
    if (!rc) {
        bpe_free(tok);
        rc = bpe_from_json(tok, meta.tokenizer_json, strlen(meta.tokenizer_json), file, err);
    }
    if (!rc) {
        struct gpt_config gc;
        char sig[256];
        int vocab = cfg->model.vocab ? cfg->model.vocab : bpe_vocab_size(tok);
        gpt_config_from_cfg(&gc, &cfg->model, vocab);
        const char *cls = strstr(meta.model_sig, " classes=");
        gc.n_cls = cls ? atoi(cls + 9) : 0; /* a classifier head (train.task classify) */
        gpt_config_signature(&gc, sig, sizeof(sig));
        if (strcmp(sig, meta.model_sig) != 0) {
            rc = hw_errf(err, HW_EMISMATCH, "%s: stored model '%s' does not match its config '%s'",
                         file, meta.model_sig, sig);
        } else {
            rc = gpt_build(m, &gc, be, NULL, err);
            /* weights are read into host memory and uploaded: the backend's memory may be a
             * device's */
            float *host = rc ? NULL : malloc(sizeof(float) * (m->num_params ? m->num_params : 1));
            for (int i = 0; i < m->n_params && !rc; i++) {
                const struct param *p = &m->params[i];
                struct ckpt_tensor t;
                memset(&t, 0, sizeof(t));
                t.name = p->name;
                t.ndim = p->ndim;
                for (int k = 0; k < p->ndim; k++)
                    t.shape[k] = t.count[k] = p->shape[k];
                t.data = host + p->offset;
                rc = ckpt_read_tensor(&f, "model", &t, err);
            }
            if (!rc)
                be->upload(m->param_mem, host, sizeof(float) * m->num_params);
            free(host);
        }
    }
    if (!rc && step)
        *step = meta.step;
    ckpt_meta_free(&meta);
    ckpt_close(&f);
    return rc;
}
