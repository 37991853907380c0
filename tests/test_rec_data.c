/* tests/test_rec_data.c -- the rec data: MovieLens and Taobao loaders on small fixtures
 * (time order with file-order ties, categories, the DARE split positions, frequency negatives
 * outside the history, left-padded batches), the bad-data errors (file:line) and skip counts,
 * the synthetic generator's determinism and planted structure, and the real files in
 * ../shared/datasets when present. */
#define _XOPEN_SOURCE 700
#include "../config/config.h"
#include "../core/check.h"
#include "../datasets/rec_data.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static void write_file(const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
}

static void ml_item(void) {
    /* 6 movies; genre flags: movie 1 Animation(3) first, movie 2 Action(1), 3 none set */
    write_file("u.item", "1|A|x||u|0|0|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
                         "2|B|x||u|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0\n"
                         "3|C|x||u|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
                         "4|D|x||u|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
                         "5|E|x||u|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|1\n"
                         "6|F|x||u|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|1\n");
}

static struct cfg_rec rec_cfg(void) {
    struct hw_config c;
    cfg_defaults(&c);
    c.rec.max_len = 3;
    c.rec.negatives = 1;
    c.rec.train_targets = 2;
    c.rec.min_hist = 1;
    return c.rec;
}

static void test_movielens(void) {
    ml_item();
    /* user 7: 1 (t=10), 2 (t=5), 3 (t=5, later line), 4 (t=20): order 2,3,1,4; user 9 short */
    write_file("u.data", "7\t1\t5\t10\n7\t2\t3\t5\n9\t1\t1\t1\n7\t3\t4\t5\n7\t4\t2\t20\n"
                         "7\t5\t2\t30\n7\t6\t1\t40\n7\t1\t1\t50\n7\t2\t1\t60\n");
    struct rec_data d;
    char err[HW_ERR_LEN];
    CHECK(rec_data_movielens(&d, dir, err) == 0);
    CHECK(d.n_users == 1 && d.users_dropped == 1 && d.rows == 9);
    CHECK(d.n_item == 7 && d.n_cat == 20);
    CHECK(d.item_cat[1] == 4 && d.item_cat[2] == 2 && d.item_cat[3] == 1 && d.item_cat[4] == 1 &&
          d.item_cat[5] == 19);
    int32_t want[8] = {2, 3, 1, 4, 5, 6, 1, 2};
    CHECK(d.off[1] == 8 && memcmp(d.seq, want, sizeof(want)) == 0);
    struct cfg_rec c = rec_cfg();
    /* every item appears in the user's sequence except none: negatives impossible */
    CHECK(rec_data_make_splits(&d, &c, 1, err) == HW_EFORMAT);
    CHECK_MSG(strstr(err, "no negative") != NULL, "%s", err);
    rec_data_free(&d);

    /* a second user who never saw movies 5 and 6: negatives must be those */
    write_file("u.data", "7\t1\t5\t10\n7\t2\t3\t5\n7\t3\t4\t5\n7\t4\t2\t20\n7\t1\t2\t30\n"
                         "7\t2\t1\t40\n7\t3\t1\t50\n7\t4\t1\t60\n8\t5\t1\t1\n8\t6\t1\t2\n"
                         "8\t1\t1\t3\n8\t2\t1\t4\n");
    CHECK(rec_data_movielens(&d, dir, err) == 0);
    CHECK(rec_data_make_splits(&d, &c, 1, err) == 0);
    /* user 0 (raw 7): 8 items; val pos 6, test pos 7; train pos 5 and 0 (<1: stop) */
    const struct rec_split *tr = &d.split[REC_TRAIN], *va = &d.split[REC_VAL],
                           *te = &d.split[REC_TEST];
    CHECK(va->n == 4 && te->n == 4); /* 2 users x (1 positive + 1 negative) */
    CHECK(va->pos[0] == 6 && va->label[0] == 1.0f && va->label[1] == 0.0f);
    CHECK(te->pos[0] == 7 && te->item[0] == d.seq[7]);
    CHECK(tr->n == 4 && tr->pos[0] == 5); /* user 0: pos 5 (pos 0 < 1); user 1: pos 1 */
    CHECK(va->item[1] == 5 || va->item[1] == 6);
    for (int s = 0; s < REC_SPLITS; s++)
        for (int i = 0; i < d.split[s].n; i++)
            if (d.split[s].label[i] == 0.0f && d.split[s].user[i] == 0)
                CHECK(d.split[s].item[i] == 5 || d.split[s].item[i] == 6);
    /* the batch: L = 3 slots, left-padded; training target of user 1 at pos 1 has 1 behaviour */
    int idx[2] = {0, 2};
    int32_t item[2], cat[2], hi[6], hc[6];
    float lab[2];
    rec_data_fill(&d, REC_TRAIN, idx, 2, 3, item, cat, hi, hc, lab);
    /* user 0 pos 5: history seq[2..5) = 1 4 1 (sorted order 2 3 1 4 1 2 3 4) */
    CHECK(hi[0] == 1 && hi[1] == 4 && hi[2] == 1 && item[0] == 2 && lab[0] == 1.0f);
    CHECK(hc[1] == d.item_cat[4] && cat[0] == d.item_cat[2]);
    CHECK(hi[3] == 0 && hi[4] == 0 && hi[5] == 5 && hc[3] == 0);
    rec_data_free(&d);

    /* min_hist skips short targets and counts them */
    c.min_hist = 3;
    CHECK(rec_data_movielens(&d, dir, err) == 0);
    CHECK(rec_data_make_splits(&d, &c, 1, err) == 0);
    CHECK(d.targets_short == 2 && d.split[REC_TRAIN].n == 2); /* user 1: val pos 2, train pos 1 */
    rec_data_free(&d);
}

static void expect_err(int rc, const char *err, const char *needle) {
    CHECK_MSG(rc == HW_EFORMAT && strstr(err, needle), "rc %d, err '%s', want '%s'", rc, err,
              needle);
}

static void test_bad_movielens(void) {
    struct rec_data d;
    char err[HW_ERR_LEN], want[600];
    ml_item();
    write_file("u.data", "7\t1\t5\t10\n7\t2\t3\n");
    snprintf(want, sizeof(want), "%s/u.data:2: error: expected 4 tab-separated integers", dir);
    expect_err(rec_data_movielens(&d, dir, err), err, want);
    write_file("u.data", "7\t1\t5\t10\n7\t99\t3\t4\n");
    snprintf(want, sizeof(want), "%s/u.data:2: error: item 99 is not in u.item", dir);
    expect_err(rec_data_movielens(&d, dir, err), err, want);
    write_file("u.data", "7\tx\t5\t10\n");
    expect_err(rec_data_movielens(&d, dir, err), err, "u.data:1: error");
    write_file("u.item", "1|A|x||u|0|0|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n2|B|x||u|0|7|0\n");
    snprintf(want, sizeof(want), "%s/u.item:2: error: expected 24", dir);
    expect_err(rec_data_movielens(&d, dir, err), err, want);
    write_file("u.item", "1|A|x||u|0|0|0|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0|2\n");
    expect_err(rec_data_movielens(&d, dir, err), err, "u.item:1: error: genre flag 19");
    char nodir[300];
    snprintf(nodir, sizeof(nodir), "%s/missing", dir);
    CHECK(rec_data_movielens(&d, nodir, err) == HW_EIO && strstr(err, "cannot open"));
}

static void test_taobao(void) {
    struct rec_data d;
    char err[HW_ERR_LEN], p[300];
    snprintf(p, sizeof(p), "%s/ub.csv", dir);
    write_file("ub.csv", "1,100,7,pv,5\n1,200,8,pv,3\n1,100,9,cart,4\n1,300,7,pv,9\n"
                         "1,300,8,pv,10\n2,100,7,pv,1\n2,200,8,fav,2\n");
    CHECK(rec_data_taobao(&d, p, err) == 0);
    CHECK(d.rows == 7 && d.skipped_rows == 2 && d.users_dropped == 1 && d.n_users == 1);
    CHECK(d.n_item == 4 && d.n_cat == 3 && d.cat_conflicts == 1);
    /* items re-indexed by raw id: 100->1, 200->2, 300->3; user 1 by time: 200, 100, 300, 300 */
    int32_t want[4] = {2, 1, 3, 3};
    CHECK(d.off[1] == 4 && memcmp(d.seq, want, sizeof(want)) == 0);
    CHECK(d.item_cat[3] == 1); /* first category seen (7 -> 1) is kept */
    rec_data_free(&d);
    write_file("ub.csv", "1,100,7,pv,5\n1,200,8,click,3\n");
    expect_err(rec_data_taobao(&d, p, err), err, "ub.csv:2: error: behavior 'click'");
    write_file("ub.csv", "1,100,7,pv,5\n1,200,8,pv\n");
    expect_err(rec_data_taobao(&d, p, err), err, "ub.csv:2: error: expected user,item");
    write_file("ub.csv", "1,100,7,buy,5\n");
    expect_err(rec_data_taobao(&d, p, err), err, "ub.csv:1: error: no pv rows");
}

static void test_synth(void) {
    struct hw_config c;
    cfg_defaults(&c);
    c.rec.synth_users = 50;
    c.rec.synth_items = 200;
    c.rec.synth_cats = 10;
    c.rec.max_len = 20;
    struct rec_data a, b;
    char err[HW_ERR_LEN];
    rec_data_synth(&a, &c.rec, 3);
    rec_data_synth(&b, &c.rec, 3);
    CHECK(a.n_users == 50 && a.off[50] == b.off[50]);
    CHECK(memcmp(a.seq, b.seq, sizeof(int32_t) * (size_t)a.off[50]) == 0);
    /* planted structure: a user's items of one category mostly share one sign */
    int agree = 0, total = 0;
    for (int u = 0; u < a.n_users; u++)
        for (int64_t i = a.off[u]; i < a.off[u + 1]; i++)
            for (int64_t k = a.off[u]; k < i; k++)
                if (a.item_cat[a.seq[i]] == a.item_cat[a.seq[k]]) {
                    total++;
                    agree += ((a.seq[i] - 1) / 10) % 2 == ((a.seq[k] - 1) / 10) % 2;
                }
    CHECK_MSG(total > 100 && agree > 0.75 * total, "sign agreement %d of %d", agree, total);
    CHECK(rec_data_make_splits(&a, &c.rec, 3, err) == 0);
    CHECK(a.split[REC_VAL].n == 50 * 3 && a.split[REC_TEST].n == 50 * 3);
    rec_data_free(&a);
    rec_data_free(&b);
}

static void test_real(void) {
    const char *ml = "../shared/datasets/movielens-100k";
    char p[300];
    snprintf(p, sizeof(p), "%s/u.data", ml);
    if (access(p, R_OK)) {
        printf("test_rec_data: movielens: skipped: %s not found\n", p);
    } else {
        struct rec_data d;
        char err[HW_ERR_LEN];
        CHECK(rec_data_movielens(&d, ml, err) == 0);
        CHECK(d.rows == 100000 && d.n_users == 943 && d.n_item == 1683);
        rec_data_free(&d);
    }
    const char *tb = "../shared/datasets/taobao-userbehavior-sample/UserBehavior_head4321.csv";
    if (access(tb, R_OK)) {
        printf("test_rec_data: taobao: skipped: %s not found\n", tb);
    } else {
        struct rec_data d;
        char err[HW_ERR_LEN];
        CHECK(rec_data_taobao(&d, tb, err) == 0);
        CHECK(d.rows == 4321 && d.skipped_rows == 4321 - 3926);
        CHECK(d.n_users + d.users_dropped == 43);
        rec_data_free(&d);
    }
}

int main(void) {
    snprintf(dir, sizeof(dir), "/tmp/hw_test_rec_data_XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    test_movielens();
    test_bad_movielens();
    test_taobao();
    test_synth();
    test_real();
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd))
        fprintf(stderr, "could not remove %s\n", dir);
    return check_report("test_rec_data");
}
