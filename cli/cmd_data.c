/* cli/cmd_data.c -- `headwise data prepare` (tokenizer training, or a given tokenizer such as a
 * Hugging Face tokenizer.json, + token shards with a train/val split, from text, JSONL or the
 * built-in synthetic corpus), `data tokenize` (encode or decode one file) and `data synth`. */
#include "../core/check.h"
#include "../core/fsutil.h"
#include "../core/log.h"
#include "../datasets/bpe.h"
#include "../datasets/shards.h"
#include "../datasets/synth.h"
#include "cli.h"

#include <glob.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EOT "<|endoftext|>"

/* JSONL: join the string field of every line with the end-of-text string eot. Errors name
 * file:line. */
static char *read_jsonl(const char *path, const char *field, const char *eot, size_t *len,
                        char *err) {
    size_t n = 0;
    char *raw = fs_read_all(path, &n, err);
    if (!raw)
        return NULL;
    size_t cap = n + 64, out_n = 0;
    char *out = HW_MALLOC(cap);
    int line = 0;
    for (char *p = raw, *next; p && *p; p = next) {
        line++;
        char *nl = strchr(p, '\n');
        next = nl ? nl + 1 : NULL;
        if (nl)
            *nl = 0;
        if (strspn(p, " \t\r") == strlen(p))
            continue;
        json_error_t je;
        json_t *j = json_loads(p, 0, &je);
        json_t *s = j ? json_object_get(j, field) : NULL;
        if (!j || !json_is_string(s)) {
            hw_errf(err, HW_EFORMAT, "%s:%d:%d: error: %s", path, line, j ? 1 : je.column,
                    j ? "expected an object with a string field" : je.text);
            if (j)
                snprintf(err + strlen(err), HW_ERR_LEN - strlen(err), " '%s'", field);
            json_decref(j);
            free(raw);
            free(out);
            return NULL;
        }
        size_t sl = json_string_length(s);
        if (out_n + sl + strlen(eot) + 1 > cap) {
            cap = 2 * (out_n + sl + strlen(eot) + 1);
            out = HW_REALLOC(out, cap);
        }
        memcpy(out + out_n, json_string_value(s), sl);
        out_n += sl;
        memcpy(out + out_n, eot, strlen(eot));
        out_n += strlen(eot);
        json_decref(j);
    }
    free(raw);
    out[out_n] = 0;
    *len = out_n;
    return out;
}

static int write_split(const struct bpe *tok, const char *text, size_t len, const char *path,
                       int64_t *n_out, char *err) {
    int32_t *ids = NULL;
    int64_t n = bpe_encode(tok, text, len, 1, &ids);
    if (n < 0)
        return hw_errf(err, HW_EFORMAT, "%s: tokenization failed", path);
    int rc = shard_write(path, ids, n, bpe_vocab_size(tok), err);
    free(ids);
    *n_out = n;
    return rc;
}

/* The tokenizer of data prepare: --tokenizer FILE (headwise's own or a Hugging Face
 * tokenizer.json), or NULL to train one. JSONL needs an end-of-text token to separate records. */
static int load_given_tokenizer(struct bpe *tok, const char *path, int jsonl, char *err) {
    int rc = bpe_load(tok, path, err);
    if (!rc && jsonl && bpe_eot_id(tok) < 0)
        rc = hw_errf(err, HW_ECONFIG,
                     "%s: no end-of-text special token to put between JSONL records (one of "
                     "<|endoftext|>, <|end_of_text|>, </s>)",
                     path);
    return rc;
}

/* data prepare's outputs in DIR: tokenizer.json (trained on text[0..cut) first when train is
 * set), train.h5 from text[0..cut) and val.h5 from the rest (when there is a rest). */
static int prepare_write(struct bpe *tok, int train, int vocab, const char *text, size_t len,
                         size_t cut, const char *out, int64_t *n_train, int64_t *n_val, char *err) {
    char path[1100];
    int rc = 0;
    if (train) {
        rc = bpe_train(tok, text, cut, vocab - 1, err);
        if (!rc && bpe_add_special(tok, EOT) < 0)
            rc = hw_errf(err, HW_EFORMAT, "cannot add special token %s", EOT);
    }
    if (!rc) {
        snprintf(path, sizeof(path), "%s/tokenizer.json", out);
        rc = bpe_save(tok, path, err);
    }
    if (!rc) {
        snprintf(path, sizeof(path), "%s/train.h5", out);
        rc = write_split(tok, text, cut, path, n_train, err);
    }
    if (!rc && cut < len) {
        snprintf(path, sizeof(path), "%s/val.h5", out);
        rc = write_split(tok, text + cut, len - cut, path, n_val, err);
    }
    return rc;
}

static int data_prepare(int argc, char **argv, struct dist *d) {
    char err[HW_ERR_LEN];
    const char *input = cli_opt(argc, argv, "--input", NULL);
    if (input && cli_opt(argc, argv, "--out", NULL)) { /* a glob, or bounded shards: streamed */
        glob_t g;
        if (glob(input, 0, NULL, &g) != 0 || g.gl_pathc == 0) {
            globfree(&g);
            log_error("data prepare: --input %s matches no file", input);
            return HW_EXIT_FAIL;
        }
        int rc = -1;
        if (g.gl_pathc > 1 || cli_opt(argc, argv, "--shard-tokens", NULL))
            rc = data_prepare_sharded(argc, argv, d, g.gl_pathv, (int)g.gl_pathc);
        globfree(&g);
        if (rc >= 0)
            return rc;
    }
    const char *out = cli_opt(argc, argv, "--out", NULL);
    const char *format = cli_opt(argc, argv, "--format", NULL);
    const char *field = cli_opt(argc, argv, "--field", "text");
    const char *tok_path = cli_opt(argc, argv, "--tokenizer", NULL);
    long long vocab, seed, bytes;
    double val_frac;
    if (cli_opt_int(argc, argv, "--vocab", 512, 257, 1 << 20, &vocab) ||
        cli_opt_num(argc, argv, "--val-frac", 0.1, 0.0, 0, 1.0, 1, &val_frac) ||
        cli_opt_int(argc, argv, "--seed", 1337, LLONG_MIN, LLONG_MAX, &seed) ||
        cli_opt_int(argc, argv, "--bytes", 2000000, 1, 1LL << 40, &bytes))
        return HW_EXIT_CONFIG;
    int synthetic = cli_flag(argc, argv, "--synthetic");
    if (!out || (!input && !synthetic)) {
        log_error("usage: headwise data prepare (--input FILE|GLOB [--format text|jsonl] [--field "
                  "F] [--shard-tokens N] [--train-bytes N] | --synthetic [--bytes N]) --out DIR "
                  "[--vocab N>256 | --tokenizer FILE] [--val-frac 0..1] [--seed S]");
        return HW_EXIT_CONFIG;
    }
    int jsonl = !synthetic &&
                (format ? !strcmp(format, "jsonl")
                        : (strlen(input) > 6 && !strcmp(input + strlen(input) - 6, ".jsonl")));
    struct bpe tok;
    bpe_init(&tok);
    if (tok_path && load_given_tokenizer(&tok, tok_path, jsonl, err)) {
        log_error("%s", err);
        bpe_free(&tok);
        return HW_EXIT_CONFIG;
    }
    size_t len = 0;
    char *text = NULL;
    if (synthetic) {
        text = synth_corpus((uint64_t)seed, (size_t)bytes, &len);
    } else {
        const char *eot = tok_path ? bpe_eot_string(&tok) : EOT;
        text = jsonl ? read_jsonl(input, field, eot, &len, err) : fs_read_all(input, &len, err);
        if (!text) {
            log_error("%s", err);
            bpe_free(&tok);
            return HW_EXIT_FAIL;
        }
    }
    /* split: the last val_frac of the text, cut at a line boundary */
    size_t cut = (size_t)((double)len * (1.0 - val_frac));
    while (cut < len && cut > 0 && text[cut - 1] != '\n')
        cut++;
    if (fs_mkdirs(out, err)) {
        log_error("%s", err);
        free(text);
        bpe_free(&tok);
        return HW_EXIT_FAIL;
    }
    double t0 = log_now();
    int64_t n_train = 0, n_val = 0;
    int rc = prepare_write(&tok, !tok_path, (int)vocab, text, len, cut, out, &n_train, &n_val, err);
    if (rc) {
        log_error("%s", err);
    } else {
        log_info("data prepare: %zu bytes -> vocab %d (%.2fs), train %lld tokens, val %lld tokens "
                 "(%.2f bytes/token)",
                 len, bpe_vocab_size(&tok), log_now() - t0, (long long)n_train, (long long)n_val,
                 (double)len / (double)(n_train + n_val ? n_train + n_val : 1));
        log_info("wrote %s/tokenizer.json, %s/train.h5%s%s", out, out, cut < len ? ", " : "",
                 cut < len ? "val.h5" : "");
    }
    bpe_free(&tok);
    free(text);
    return rc ? HW_EXIT_FAIL : 0;
}

/* Space-separated decimal ids from a file. */
static int32_t *read_ids(const char *path, int64_t *n_out, char *err) {
    size_t n = 0;
    char *s = fs_read_all(path, &n, err);
    if (!s)
        return NULL;
    int64_t cap = 1024, k = 0;
    int32_t *ids = HW_MALLOC((size_t)cap * sizeof(*ids));
    for (char *p = s, *end;; p = end) {
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
            p++;
        if (!*p)
            break;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX) {
            hw_errf(err, HW_EFORMAT, "%s: byte %td: expected a token id", path, p - s);
            free(ids);
            free(s);
            return NULL;
        }
        if (k == cap)
            ids = HW_REALLOC(ids, (size_t)(cap *= 2) * sizeof(*ids));
        ids[k++] = (int32_t)v;
    }
    free(s);
    *n_out = k;
    return ids;
}

/* Ids as text, space-separated, one line. */
static char *format_ids(const int32_t *ids, int64_t n, size_t *len) {
    char *buf = HW_MALLOC((size_t)n * 12 + 2);
    size_t k = 0;
    for (int64_t i = 0; i < n; i++)
        k += (size_t)sprintf(buf + k, i ? " %d" : "%d", ids[i]);
    buf[k++] = '\n';
    buf[k] = '\0';
    *len = k;
    return buf;
}

/* --pieces: each pre-tokenisation chunk as a line of hex bytes */
struct hex_out {
    char *buf;
    size_t n, cap;
};

static void put_piece(void *ctx, const char *p, size_t n) {
    struct hex_out *h = ctx;
    if (h->n + 2 * n + 2 > h->cap)
        h->buf = HW_REALLOC(h->buf, h->cap = 2 * (h->n + 2 * n + 2));
    for (size_t i = 0; i < n; i++)
        h->n += (size_t)sprintf(h->buf + h->n, "%02x", (unsigned char)p[i]);
    h->buf[h->n++] = '\n';
    h->buf[h->n] = '\0';
}

/* `data tokenize --tokenizer T (--text F | --ids F) --out O [--repeat N] [--pieces]`: encode a
 * file (special strings become their ids) or decode ids; --repeat times the encoder, one thread,
 * best of N; --pieces writes the pre-tokenizer's chunks (hex, one per line) instead of ids. */
static int data_tokenize(int argc, char **argv) {
    char err[HW_ERR_LEN];
    const char *tok_path = cli_opt(argc, argv, "--tokenizer", NULL);
    const char *text_path = cli_opt(argc, argv, "--text", NULL);
    const char *ids_path = cli_opt(argc, argv, "--ids", NULL);
    const char *out = cli_opt(argc, argv, "--out", NULL);
    long long repeat;
    if (cli_opt_int(argc, argv, "--repeat", 1, 1, 1000, &repeat))
        return HW_EXIT_CONFIG;
    if (!tok_path || !out || !text_path == !ids_path) {
        log_error("usage: headwise data tokenize --tokenizer FILE (--text FILE | --ids FILE) "
                  "--out FILE [--repeat N] [--pieces]");
        return HW_EXIT_CONFIG;
    }
    struct bpe tok;
    if (bpe_load(&tok, tok_path, err)) {
        log_error("%s", err);
        bpe_free(&tok);
        return HW_EXIT_CONFIG;
    }
    size_t len = 0, out_len = 0;
    char *result = NULL;
    int64_t n = 0;
    int32_t *ids = NULL;
    if (text_path) {
        char *text = fs_read_all(text_path, &len, err);
        double best = 1e30;
        for (long long r = 0; text && r < repeat; r++) {
            free(ids);
            double t0 = log_now();
            n = bpe_encode(&tok, text, len, 1, &ids);
            best = log_now() - t0 < best ? log_now() - t0 : best;
        }
        if (text && cli_flag(argc, argv, "--pieces")) {
            struct hex_out h = {HW_CALLOC(1, 1), 0, 1};
            bpe_pieces(&tok, text, len, put_piece, &h);
            result = h.buf;
            out_len = h.n;
        } else if (text) {
            result = format_ids(ids, n, &out_len);
            log_info("encoded %zu bytes into %lld tokens in %.4f s (%.2f MB/s, one thread, best of "
                     "%lld)",
                     len, (long long)n, best, (double)len / best / 1e6, repeat);
        }
        free(text);
    } else if ((ids = read_ids(ids_path, &n, err))) {
        int64_t k = bpe_decode(&tok, ids, n, &result);
        if (k < 0)
            hw_errf(err, HW_EFORMAT, "%s: an id is outside the vocabulary [0, %d)", ids_path,
                    bpe_vocab_size(&tok));
        out_len = k < 0 ? 0 : (size_t)k;
    }
    int rc = result ? fs_write_atomic(out, result, out_len, err) : HW_EFORMAT;
    if (rc)
        log_error("%s", err);
    free(result);
    free(ids);
    bpe_free(&tok);
    return rc ? HW_EXIT_FAIL : 0;
}

static int data_synth(int argc, char **argv) {
    char err[HW_ERR_LEN];
    const char *out = cli_opt(argc, argv, "--out", NULL);
    long long bytes, seed;
    if (cli_opt_int(argc, argv, "--bytes", 1000000, 1, 1LL << 40, &bytes) ||
        cli_opt_int(argc, argv, "--seed", 1337, LLONG_MIN, LLONG_MAX, &seed))
        return HW_EXIT_CONFIG;
    if (!out) {
        log_error("usage: headwise data synth --out FILE [--bytes N] [--seed S]");
        return HW_EXIT_CONFIG;
    }
    size_t len;
    char *text = synth_corpus((uint64_t)seed, (size_t)bytes, &len);
    int rc = fs_write_atomic(out, text, len, err);
    free(text);
    if (rc) {
        log_error("%s", err);
        return HW_EXIT_FAIL;
    }
    log_info("wrote %zu bytes of synthetic tasks to %s", len, out);
    return 0;
}

int cmd_data(int argc, char **argv, struct dist *d) {
    if (argc >= 2 && !strcmp(argv[1], "prepare"))
        return data_prepare(argc - 1, argv + 1, d);
    if (argc >= 2 && !strcmp(argv[1], "synth"))
        return data_synth(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "tokenize"))
        return data_tokenize(argc - 1, argv + 1);
    log_error("usage: headwise data prepare|tokenize|synth|csft-score ... (see headwise --help)");
    return HW_EXIT_CONFIG;
}
