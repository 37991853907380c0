/* tests/test_evaldata.c -- evaluation data: the MultiFC loader on the real staged CSV (row,
 * rejection, domain and label counts against domain_label_counts.json), on a hand-written
 * official-layout TSV fixture and on edge-case CSVs; the stratified split; the chat template
 * with its spans; the RoleMRC reader and task-to-aspect map on a hand-written fixture. */
#define _POSIX_C_SOURCE 200809L
#include "../core/check.h"
#include "../datasets/chat.h"
#include "../datasets/multifc.h"
#include "../datasets/rolemrc.h"
#include "check.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MULTIFC_CSV    "../shared/datasets/multifc/multifc_dev_claimid_claim_label.csv"
#define MULTIFC_COUNTS "../shared/datasets/multifc/domain_label_counts.json"
#define MULTIFC_TSV    "tests/fixtures/multifc_official_sample.tsv"
#define ROLEMRC_JSONL  "tests/fixtures/rolemrc_fixture.jsonl"

static char dir[64];

/* Writes text to dir/name and returns the path (static buffer, one at a time). */
static const char *write_tmp(const char *name, const char *text) {
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
    return path;
}

static const struct multifc_domain *find_dom(const struct multifc *m, const char *name) {
    for (int d = 0; d < m->n_dom; d++)
        if (strcmp(m->dom[d].name, name) == 0)
            return &m->dom[d];
    return NULL;
}

static const struct multifc_example *find_ex(const struct multifc *m, const char *id) {
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->ex[i].claim_id, id) == 0)
            return &m->ex[i];
    return NULL;
}

/* Examples of domain d with label_id l. */
static int count_label(const struct multifc *m, int d, int l) {
    int c = 0;
    for (int i = 0; i < m->n; i++)
        c += m->ex[i].domain == d && m->ex[i].label_id == l;
    return c;
}

/* The index is consistent: domains and labels sorted and distinct, ids point at the strings. */
static void check_index(const struct multifc *m) {
    for (int d = 0; d < m->n_dom; d++) {
        CHECK(d == 0 || strcmp(m->dom[d - 1].name, m->dom[d].name) < 0);
        for (int l = 1; l < m->dom[d].n_labels; l++)
            CHECK(strcmp(m->dom[d].labels[l - 1], m->dom[d].labels[l]) < 0);
    }
    int bad = 0, sum = 0;
    for (int i = 0; i < m->n; i++) {
        const struct multifc_example *e = &m->ex[i];
        const struct multifc_domain *dm = &m->dom[e->domain];
        bad += strncmp(dm->name, e->claim_id, 4) != 0;
        if (m->labelled)
            bad += e->label_id < 0 || strcmp(dm->labels[e->label_id], e->label) != 0;
        else
            bad += e->label_id != -1 || e->label != NULL;
    }
    for (int d = 0; d < m->n_dom; d++)
        sum += m->dom[d].n_examples;
    CHECK(bad == 0);
    CHECK(sum == m->n);
}

/* ------------------------------------------------------------------------------------------ */

static void test_multifc_real(void) {
    if (access(MULTIFC_CSV, R_OK) != 0) {
        printf("test_evaldata: SKIP MultiFC real file: %s not found\n", MULTIFC_CSV);
        return;
    }
    char err[HW_ERR_LEN];
    struct multifc m;
    int rc = multifc_load(&m, MULTIFC_CSV, err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc)
        return;
    CHECK(m.labelled == 1);
    /* 3,481 data rows; the 3 merged ones hold 9 records between them (issue 17 item 11: they
     * were rejected, which lost the records they swallowed). */
    CHECK(m.n == 3487);
    CHECK(m.n_rejected == 0);
    CHECK(m.n_repaired == 3);
    CHECK(m.n_unknown == 0); /* every label is a known label of its domain */
    static const char *const rep[3][2] = {
        {"wast-00047", "line 1464: merged record split into 2 claims: wast-00047 (line 1464), "
                       "pomt-12586 (line 1465)"},
        {"farg-00319", "line 1661: merged record split into 3 claims: farg-00319 (line 1661), "
                       "snes-02423 (line 1662), pomt-12178 (line 1663)"},
        {"wast-00111", "line 2069: merged record split into 4 claims: wast-00111 (line 2069), "
                       "goop-00270 (line 2070), snes-03565 (line 2071), pomt-09798 (line 2072)"}};
    for (int i = 0; i < 3 && i < m.n_repaired; i++) {
        char want[256];
        snprintf(want, sizeof(want), "%s: %s", rep[i][0], rep[i][1]);
        CHECK_MSG(strcmp(m.repaired[i], want) == 0, "%s", m.repaired[i]);
    }
    /* Each recovered record with its own claim, label and line. */
    static const struct {
        const char *id, *label, *claim_start, *claim_end;
        int line;
    } recovered[9] = {
        {"wast-00047", "2 pinnochios", "A study shows that corn", "and open up markets.", 1464},
        {"pomt-12586", "pants on fire!", "\"Two liberal Democrat", "assassination.\"", 1465},
        {"farg-00319", "distorts the facts", "17 million taxpayer", "Congress members.\xE2\x80\x9D",
         1661},
        {"snes-02423", "false", "Photographs show a pregnant woman", "refugee in Michigan.", 1662},
        {"pomt-12178", "mostly true", "\"Says Dontre Hamilton", "park bench in Milwaukee.\"", 1663},
        {"wast-00111", "2 pinnochios", "Smugglers prioritize profit", "America and the region.",
         2069},
        {"goop-00270", "0", "Queen Elizabeth Escaped", "Assassination Attempt?", 2070},
        {"snes-03565", "false", "A Hillary Clinton supporter", "protest of Donald Trump.", 2071},
        {"pomt-09798", "false", "\"Every other democracy", "and we don't.\"", 2072},
    };
    for (int i = 0; i < 9; i++) {
        const struct multifc_example *x = find_ex(&m, recovered[i].id);
        CHECK_MSG(x != NULL, "%s", recovered[i].id);
        if (!x)
            continue;
        size_t lc = strlen(x->claim), le = strlen(recovered[i].claim_end);
        CHECK_MSG(strcmp(x->label, recovered[i].label) == 0 && x->line == recovered[i].line &&
                      strncmp(x->claim, recovered[i].claim_start,
                              strlen(recovered[i].claim_start)) == 0 &&
                      lc >= le && strcmp(x->claim + lc - le, recovered[i].claim_end) == 0 &&
                      !strpbrk(x->claim, "\t\n"),
                  "%s: [%s] [%s] line %d", recovered[i].id, x->claim, x->label, x->line);
    }
    CHECK(strcmp(m.ex[0].claim_id, "tron-00244") == 0 && m.ex[0].line == 2);
    CHECK(strcmp(m.ex[0].claim, "Pope Francis: All Dogs Go to Heaven") == 0);
    CHECK(strcmp(m.ex[0].label, "fiction!") == 0);
    CHECK(strcmp(m.ex[m.n - 1].claim_id, "snes-01955") == 0 && m.ex[m.n - 1].line == 3488);
    /* Quoted fields: "" became ", commas kept; leading spaces kept (15 claims). */
    int lead = 0, quote = 0, multiline = 0;
    for (int i = 0; i < m.n; i++) {
        lead += m.ex[i].claim[0] == ' ';
        quote += strchr(m.ex[i].claim, '"') != NULL;
        multiline += strchr(m.ex[i].claim, '\n') != NULL;
    }
    CHECK(lead == 15);
    CHECK(quote == 847); /* 844 plain rows, and pomt-12586, pomt-12178, pomt-09798 */
    CHECK(multiline == 0);
    const struct multifc_example *q = find_ex(&m, "snes-00534");
    CHECK(q && strcmp(q->claim, "A photograph shows Subtropical Storm Alberto approaching "
                                "Pensacola Beach in Florida.") == 0);
    check_index(&m);

    /* domain_label_counts.json counts the 3,481 rows, each merged one under its CSV label field
     * in its own domain (wast "pants on fire!", farg "mostly true", wast "false": labels of the
     * records they swallowed). The usable counts are the JSON's less those three, plus the 9
     * recovered records under their own domains and labels. */
    static const char *const minus[3][2] = {
        {"wast", "pants on fire!"}, {"farg", "mostly true"}, {"wast", "false"}};
    json_error_t jerr;
    json_t *root = json_load_file(MULTIFC_COUNTS, 0, &jerr);
    CHECK_MSG(root != NULL, "%s: %s", MULTIFC_COUNTS, jerr.text);
    if (!root) {
        multifc_free(&m);
        return;
    }
    CHECK(json_integer_value(json_object_get(root, "n_rows")) == 3481);
    CHECK(json_integer_value(json_object_get(root, "n_domains")) == 26);
    json_t *doms = json_object_get(root, "domains");
    CHECK(json_object_size(doms) == 26 && m.n_dom == 26);
    const char *dname;
    json_t *dj;
    int mismatches = 0, labels_total = 0, pairs = 0;
    json_object_foreach(doms, dname, dj) {
        const struct multifc_domain *dm = find_dom(&m, dname);
        CHECK_MSG(dm != NULL, "domain %s", dname);
        if (!dm)
            continue;
        int d = (int)(dm - m.dom), rows = 0;
        json_t *labels = json_object_get(dj, "labels");
        const char *lname;
        json_t *cj;
        json_object_foreach(labels, lname, cj) {
            int want = (int)json_integer_value(cj);
            for (int k = 0; k < 3; k++)
                want -= !strcmp(minus[k][0], dname) && !strcmp(minus[k][1], lname);
            for (int k = 0; k < 9; k++)
                want += !strncmp(recovered[k].id, dname, 4) && !strcmp(recovered[k].label, lname);
            int l = -1;
            for (int j = 0; j < dm->n_labels; j++)
                if (strcmp(dm->labels[j], lname) == 0)
                    l = j;
            int usable = l >= 0 ? count_label(&m, d, l) : 0;
            pairs += usable > 0;
            rows += usable;
            if (usable != want) {
                mismatches++;
                fprintf(stderr, "%s/%s: usable %d, expected %d\n", dname, lname, usable, want);
            }
        }
        /* every usable label is one the JSON lists (the merged rows' heads add none) */
        CHECK_MSG(rows == dm->n_examples, "%s", dname);
        labels_total += dm->n_labels;
    }
    CHECK(mismatches == 0);
    CHECK(labels_total == 151 && pairs == 151);
    json_decref(root);
    const struct multifc_domain *pomt = find_dom(&m, "pomt");
    CHECK(pomt && pomt->n_examples == 1538 && pomt->n_labels == 9);
    printf("test_evaldata: MultiFC %s: %d usable claims, %d rejected, %d merged rows repaired, "
           "%d domains, %d (domain, label) pairs\n",
           MULTIFC_CSV, m.n, m.n_rejected, m.n_repaired, m.n_dom, labels_total);

    /* The split on real data: every example in exactly one part, per-stratum sizes. */
    int *s1 = malloc(sizeof(int) * (size_t)m.n), *s2 = malloc(sizeof(int) * (size_t)m.n);
    multifc_split(&m, 0.1, 0.1, 7, s1);
    multifc_split(&m, 0.1, 0.1, 7, s2);
    CHECK(memcmp(s1, s2, sizeof(int) * (size_t)m.n) == 0);
    int parts[3] = {0, 0, 0}, bad = 0;
    for (int i = 0; i < m.n; i++) {
        bad += s1[i] < 0 || s1[i] > 2;
        if (s1[i] >= 0 && s1[i] <= 2)
            parts[s1[i]]++;
    }
    CHECK(bad == 0 && parts[0] + parts[1] + parts[2] == m.n);
    for (int d = 0; d < m.n_dom; d++)
        for (int l = 0; l < m.dom[d].n_labels; l++) {
            int k = count_label(&m, d, l), nv = 0, nt = 0;
            for (int i = 0; i < m.n; i++)
                if (m.ex[i].domain == d && m.ex[i].label_id == l) {
                    nv += s1[i] == 1;
                    nt += s1[i] == 2;
                }
            int et = k > 1 ? (int)(0.1 * k + 0.5) : 0, ev = k > 1 ? (int)(0.1 * k + 0.5) : 0;
            if (ev > k - et)
                ev = k - et;
            if (nv != ev || nt != et) {
                bad++;
                fprintf(stderr, "%s/%s k=%d: val %d test %d, expected %d %d\n", m.dom[d].name,
                        m.dom[d].labels[l], k, nv, nt, ev, et);
            }
        }
    CHECK(bad == 0);
    printf("test_evaldata: MultiFC split 0.1/0.1 seed 7: train %d, val %d, test %d\n", parts[0],
           parts[1], parts[2]);
    /* One split for every method (issue 17 item 11): the log-likelihood task splits with no val
     * part, the classifier with data.val_frac; both with MULTIFC_SPLIT_SEED. The test part must
     * not depend on the val fraction. */
    multifc_split(&m, 0.0, 0.2, MULTIFC_SPLIT_SEED, s1);
    multifc_split(&m, 0.1, 0.2, MULTIFC_SPLIT_SEED, s2);
    int same = 1, n_test = 0;
    for (int i = 0; i < m.n; i++) {
        same &= (s1[i] == 2) == (s2[i] == 2);
        n_test += s1[i] == 2;
    }
    CHECK(same && n_test > 600);
    free(s1);
    free(s2);
    multifc_free(&m);
}

static void test_multifc_tsv(void) {
    char err[HW_ERR_LEN];
    struct multifc m;
    /* tests/fixtures/multifc_official_sample.tsv: 8 hand-written rows (fictional claims, claimIDs
     * 9xxxx) in the official headerless 13-column train/dev layout; not MultiFC data. */
    int rc = multifc_load(&m, MULTIFC_TSV, err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc)
        return;
    CHECK(m.labelled == 1 && m.n == 8 && m.n_rejected == 0 && m.n_dom == 4);
    static const char *const names[4] = {"abbc", "goop", "pomt", "snes"};
    static const int counts[4] = {1, 2, 3, 2}, nlab[4] = {1, 1, 2, 2};
    for (int d = 0; d < 4 && d < m.n_dom; d++)
        CHECK(strcmp(m.dom[d].name, names[d]) == 0 && m.dom[d].n_examples == counts[d] &&
              m.dom[d].n_labels == nlab[d]);
    CHECK(m.n_dom == 4 && strcmp(m.dom[2].labels[0], "false") == 0 &&
          strcmp(m.dom[2].labels[1], "half-true") == 0);
    CHECK(strcmp(m.ex[1].claim_id, "pomt-90002") == 0 && m.ex[1].line == 2);
    CHECK(strcmp(m.ex[1].claim, "\"Says the lighthouse tax doubled in one year.") == 0);
    CHECK(strcmp(m.ex[1].label, "false") == 0 && m.ex[1].label_id == 0 && m.ex[1].domain == 2);
    CHECK(strcmp(m.ex[2].claim, " A photo shows a cat driving a tram.") == 0);
    CHECK(strcmp(m.ex[3].label, "0") == 0 && m.ex[3].domain == 1);
    CHECK(strcmp(m.ex[5].claim, "Claims written with \"double quotes\" inside stay as they are.") ==
          0);
    CHECK(m.ex[7].line == 8);
    check_index(&m);

    /* Derived variants: the 12-column test layout (label column removed), and the 13-column
     * layout with a header line and CRLF line ends. */
    size_t cap = 1 << 16, len12 = 0, lenh = 0;
    char *t12 = calloc(cap, 1), *th = calloc(cap, 1);
    lenh += (size_t)snprintf(th, cap,
                             "claimID\tclaim\tlabel\tclaimURL\treason\tcategories\tspeaker\tchecker"
                             "\ttags\tarticleTitle\tpublishDate\tclaimDate\tentities\r\n");
    FILE *f = fopen(MULTIFC_TSV, "rb");
    char line[4096];
    while (f && fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = 0;
        lenh += (size_t)snprintf(th + lenh, cap - lenh, "%s\r\n", line);
        char *tab1 = strchr(line, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
        char *tab3 = tab2 ? strchr(tab2 + 1, '\t') : NULL;
        if (tab3)
            len12 += (size_t)snprintf(t12 + len12, cap - len12, "%.*s%s\n", (int)(tab2 - line),
                                      line, tab3);
    }
    if (f)
        fclose(f);
    struct multifc u;
    rc = multifc_load(&u, write_tmp("test12.tsv", t12), err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc == 0) {
        CHECK(u.labelled == 0 && u.n == 8 && u.n_dom == 4 && u.n_rejected == 0);
        CHECK(u.ex[0].label == NULL && u.ex[0].label_id == -1 && u.dom[2].n_labels == 0);
        CHECK(u.dom[2].labels == NULL && u.dom[2].n_examples == 3);
        CHECK(strcmp(u.ex[1].claim, m.ex[1].claim) == 0);
        check_index(&u);
        int s[8];
        multifc_split(&u, 0.0, 0.5, 1, s); /* unlabelled: one stratum per domain */
        CHECK(s[6] == 0);                  /* abbc has a single example */
        CHECK(s[2] + s[5] == 2);           /* snes: k=2, round(1.0) = 1 to test */
        multifc_free(&u);
    }
    rc = multifc_load(&u, write_tmp("header_crlf.tsv", th), err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc == 0) {
        CHECK(u.labelled == 1 && u.n == 8 && u.n_dom == 4);
        int same = 1;
        for (int i = 0; i < 8; i++)
            same &= strcmp(u.ex[i].claim, m.ex[i].claim) == 0 &&
                    strcmp(u.ex[i].label, m.ex[i].label) == 0 && u.ex[i].line == i + 2;
        CHECK(same);
        CHECK(strchr(u.ex[0].claim, '\r') == NULL);
        multifc_free(&u);
    }
    free(t12);
    free(th);

    /* A row with a missing column. */
    const char *p = write_tmp("short.tsv", "abcd-00001\tc\tl\t4\t5\t6\t7\t8\t9\t10\t11\t12\t13\n"
                                           "abcd-00002\tc\tl\t4\t5\t6\t7\t8\t9\t10\t11\t12\n");
    char want[HW_ERR_LEN];
    snprintf(want, sizeof(want), "%s:2: error: 12 tab-separated fields, expected 13", p);
    CHECK(multifc_load(&u, p, err) == HW_EFORMAT);
    CHECK_MSG(strcmp(err, want) == 0, "%s", err);
    CHECK(u.n == 0 && u.ex == NULL);
    p = write_tmp("eleven.tsv", "abcd-00001\tc\tl\t4\t5\t6\t7\t8\t9\t10\t11\n");
    CHECK(multifc_load(&u, p, err) == HW_EFORMAT);
    CHECK_MSG(strstr(err, ":1: error: 11 tab-separated fields;") != NULL, "%s", err);
    multifc_free(&m);
}

static void test_multifc_csv_edges(void) {
    char err[HW_ERR_LEN];
    struct multifc m;
    /* BOM, CRLF, "" inside quotes, a quoted newline, an empty claim, a leading space, a blank
     * line, a quote inside an unquoted field, a synthetic merged record, no final newline. */
    const char *p =
        write_tmp("edge.csv", "\xEF\xBB\xBF"
                              "claimID,claim,label\r\n"
                              "abcd-00001,\"He said \"\"no\"\", twice\",true\r\n"
                              "abcd-00002,\"two\r\nlines\",false\r\n"
                              "\r\n"
                              "abcd-00003,,false\r\n"
                              "efgh-00004, leading space,\"mostly true\"\r\n"
                              "efgh-00005,\"glued\tmeta\tdata\nabcd-99999\tnext claim\","
                              "stolen\r\n"
                              "efgh-00006,5\" of snow,true");
    int rc = multifc_load(&m, p, err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc == 0) {
        CHECK(m.n == 5 && m.n_rejected == 1 && m.n_dom == 2 && m.labelled == 1);
        CHECK(strcmp(m.ex[0].claim, "He said \"no\", twice") == 0 && m.ex[0].line == 2);
        CHECK(strcmp(m.ex[1].claim, "two\r\nlines") == 0 && m.ex[1].line == 3);
        CHECK(strcmp(m.ex[1].label, "false") == 0);
        CHECK(strcmp(m.ex[2].claim, "") == 0 && m.ex[2].line == 6);
        CHECK(strcmp(m.ex[3].claim, " leading space") == 0 && m.ex[3].line == 7);
        CHECK(strcmp(m.ex[3].label, "mostly true") == 0);
        CHECK(strcmp(m.ex[4].claim, "5\" of snow") == 0 && strcmp(m.ex[4].label, "true") == 0);
        CHECK(m.ex[4].line == 10);
        CHECK_MSG(strncmp(m.rejected[0], "efgh-00005: line 8: merged record", 33) == 0 &&
                      strstr(m.rejected[0], "abcd-99999"),
                  "%s", m.rejected[0]);
        /* "stolen" came only from the rejected row. */
        const struct multifc_domain *e = find_dom(&m, "efgh");
        CHECK(e && e->n_labels == 2 && strcmp(e->labels[0], "mostly true") == 0);
        check_index(&m);
        multifc_free(&m);
    }
    multifc_free(&m); /* a zeroed struct is fine */

    /* A bare tab in a claim is rejected too; extra columns of a CSV are ignored. */
    p = write_tmp("tab.csv",
                  "id2,claimID,claim,label\nx,abcd-00001,\"a\tb\",t\ny,abcd-00002,ok,t\n");
    rc = multifc_load(&m, p, err);
    CHECK_MSG(rc == 0, "%s", err);
    CHECK(m.n == 1 && m.n_rejected == 1 &&
          strcmp(m.rejected[0], "abcd-00001: line 2: merged record: the claim field holds a tab") ==
              0);
    multifc_free(&m);
    /* No label column: unlabelled. */
    p = write_tmp("nolabel.csv", "claimID,claim\nabcd-00001,x\n");
    CHECK(multifc_load(&m, p, err) == 0 && m.labelled == 0 && m.n == 1 && !m.ex[0].label);
    multifc_free(&m);

    static const struct {
        const char *name, *text, *msg;
    } bad[] = {
        {"unterminated.csv", "claimID,claim,label\nabcd-00001,x,t\nabcd-00002,\"open\nmore,t\n",
         "3: error: quoted field opened on this line is never closed"},
        {"afterquote.csv", "claimID,claim,label\nabcd-00001,\"a\"b,t\n",
         "2: error: text after a closing quote (a quote inside a quoted field must be doubled: "
         "\"\")"},
        {"fields.csv", "claimID,claim,label\nabcd-00001,a,b,t\n", "2: error: 4 fields, expected 3"},
        {"badid.csv", "claimID,claim,label\nABCD-1,x,t\n",
         "2: error: bad claimID 'ABCD-1' (expected 4 lowercase letters, '-', digits, e.g. "
         "pomt-00123)"},
        {"dup.csv", "claimID,claim,label\nabcd-00001,x,t\nabcd-00002,y,t\nabcd-00001,z,t\n",
         "4: error: duplicate claimID 'abcd-00001' (first on line 2)"},
        {"emptylabel.csv", "claimID,claim,label\nabcd-00001,x,\n",
         "2: error: empty label for claimID 'abcd-00001'"},
        {"header.csv", "id,text,verdict\nabcd-00001,x,t\n",
         "1: error: unrecognised header: expected columns claimID, claim and optionally label "
         "(e.g. 'claimID,claim,label'), or a tab-separated file"},
        {"empty.csv", "", "1: error: empty file (expected a header line)"},
        {"nul.csv", "claimID,claim,label\nabcd-00001,x\0,t\n", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *path = write_tmp(bad[i].name, bad[i].text);
        if (!bad[i].msg) { /* fputs stops at the NUL: append the rest by hand */
            FILE *f = fopen(path, "ab");
            fwrite("\0,t\n", 1, 4, f);
            fclose(f);
        }
        char want[HW_ERR_LEN];
        snprintf(want, sizeof(want), "%s:%s", path,
                 bad[i].msg ? bad[i].msg : "2: error: NUL byte (binary file?)");
        rc = multifc_load(&m, path, err);
        CHECK_MSG(rc == HW_EFORMAT && strcmp(err, want) == 0, "%s: rc %d: %s", bad[i].name, rc,
                  err);
        CHECK(m.n == 0 && m.n_rejected == 0 && m.dom == NULL);
    }
    CHECK(multifc_load(&m, "/nonexistent/multifc.csv", err) == HW_EIO);
    CHECK_MSG(strstr(err, "/nonexistent/multifc.csv") != NULL, "%s", err);
}

/* Stratified split on synthetic strata of 1, 2, 5, 10 and 37 examples. */
/* Labels are checked against the known labels of their domain; every text field must be UTF-8
 * (issue 17 item 11: a misspelled label became a class of its own, a non-UTF-8 label dropped
 * records from the sample log). */
static void test_multifc_labels(void) {
    char err[HW_ERR_LEN];
    struct multifc m;
    static const struct {
        const char *name, *text, *msg;
    } bad[] = {
        {"typo.csv", "claimID,claim,label\npomt-00001,x,false\npomt-00002,y,flase\n",
         ":3: error: label 'flase' of claimID 'pomt-00002' is not a pomt label: did you mean "
         "'false'? (known pomt labels: false|full flop|half flip|half-true|mostly false|mostly "
         "true|no flip|pants on fire!|true)"},
        {"case.csv", "claimID,claim,label\nsnes-00001,x,False\n",
         ":2: error: label 'False' of claimID 'snes-00001' is not a snes label: did you mean "
         "'false'?"},
        {"space.csv", "claimID,claim,label\ntron-00001,x,fiction! \n",
         ":2: error: label 'fiction! ' of claimID 'tron-00001' is not a tron label: did you mean "
         "'fiction!'?"},
        {"digit.csv", "claimID,claim,label\nwast-00001,x,5 pinnochios\n",
         "is not a wast label: did you mean '2 pinnochios'?"},
        {"utf8label.csv", "claimID,claim,label\npomt-00001,x,fal\xffse\n",
         ":2: error: the label of claimID 'pomt-00001' is not UTF-8 (byte 0xff at byte 3 of the "
         "field)"},
        {"utf8claim.csv", "claimID,claim,label\npomt-00001,ok,true\npomt-00002,\"a\xc3(b\",true\n",
         ":3: error: the claim of claimID 'pomt-00002' is not UTF-8 (byte 0xc3 at byte 1 of the "
         "field)"},
        {"overlong.csv", "claimID,claim,label\npomt-00001,\xc0\xaf,true\n", "is not UTF-8"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *path = write_tmp(bad[i].name, bad[i].text);
        int rc = multifc_load(&m, path, err);
        CHECK_MSG(rc == HW_EFORMAT && strncmp(err, path, strlen(path)) == 0 &&
                      strstr(err, bad[i].msg),
                  "%s: rc %d: %s", bad[i].name, rc, err);
        CHECK(m.n == 0 && m.ex == NULL && m.unknown == NULL);
    }
    /* A label outside the known set, and not near one, is kept and listed; a domain outside
     * the 26 is not checked; UTF-8 text is fine. */
    const char *p =
        write_tmp("unknown.csv", "claimID,claim,label\n"
                                 "pomt-00001,caf\xc3\xa9 \xe2\x80\x9cq\xe2\x80\x9d,lie\n"
                                 "pomt-00002,y,true\n"
                                 "zzzz-00003,z,whatever\n");
    int rc = multifc_load(&m, p, err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc == 0) {
        CHECK(m.n == 3 && m.n_unknown == 1);
        CHECK_MSG(m.n_unknown == 1 &&
                      !strcmp(m.unknown[0], "pomt-00001: line 2: label 'lie' is not a known "
                                            "pomt label"),
                  "%s", m.n_unknown ? m.unknown[0] : "");
        CHECK(m.n_dom == 2 && m.dom[0].n_labels == 2); /* "lie" is a class of its own */
        multifc_free(&m);
    }
    CHECK(multifc_known_labels("goop") && strstr(multifc_known_labels("goop"), "|10"));
    CHECK(multifc_known_labels("zzzq") == NULL); /* a domain outside the 26 */
}

static void test_split(void) {
    char err[HW_ERR_LEN];
    static const int sizes[5] = {1, 2, 5, 10, 37};
    static const char *const strata[5][2] = {
        {"aaaa", "x"}, {"aaaa", "y"}, {"bbbb", "x"}, {"bbbb", "z"}, {"cccc", "x"}};
    size_t cap = 1 << 14, len = 0;
    char *csv = malloc(cap);
    len += (size_t)snprintf(csv, cap, "claimID,claim,label\n");
    int id = 0;
    /* interleave strata so a stratum's members are not contiguous in the file */
    for (int r = 0; r < 37; r++)
        for (int s = 0; s < 5; s++)
            if (r < sizes[s]) {
                len += (size_t)snprintf(csv + len, cap - len, "%s-%05d,claim %d,%s\n", strata[s][0],
                                        id, id, strata[s][1]);
                id++;
            }
    struct multifc m, m2;
    int rc = multifc_load(&m, write_tmp("split.csv", csv), err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc) {
        free(csv);
        return;
    }
    CHECK(m.n == 55);
    int s1[55], s2[55], s3[55], s4[60];
    multifc_split(&m, 0.2, 0.3, 42, s1);
    multifc_split(&m, 0.2, 0.3, 42, s2);
    multifc_split(&m, 0.2, 0.3, 43, s3);
    CHECK(memcmp(s1, s2, sizeof(s1)) == 0);
    CHECK(memcmp(s1, s3, sizeof(s1)) != 0);
    /* per stratum: test = round(0.3k), val = round(0.2k), k = 1 -> train */
    static const int want_test[5] = {0, 1, 2, 3, 11}, want_val[5] = {0, 0, 1, 2, 7};
    for (int s = 0; s < 5; s++) {
        int n[3] = {0, 0, 0};
        for (int i = 0; i < m.n; i++)
            if (strncmp(m.ex[i].claim_id, strata[s][0], 4) == 0 &&
                strcmp(m.ex[i].label, strata[s][1]) == 0 && s1[i] >= 0 && s1[i] <= 2)
                n[s1[i]]++;
        CHECK_MSG(n[2] == want_test[s] && n[1] == want_val[s] &&
                      n[0] == sizes[s] - want_test[s] - want_val[s],
                  "stratum %d: %d %d %d", s, n[0], n[1], n[2]);
    }
    /* Edge fractions: everything to test; nothing held out. */
    multifc_split(&m, 0.0, 1.0, 1, s3);
    int all_test = 1; /* aaaa-00000 is the single member of its stratum */
    for (int i = 0; i < m.n; i++)
        all_test &= s3[i] == (strcmp(m.ex[i].claim_id, "aaaa-00000") == 0 ? 0 : 2);
    CHECK(all_test);
    multifc_split(&m, 0.0, 0.0, 1, s3);
    int all_train = 1;
    for (int i = 0; i < m.n; i++)
        all_train &= s3[i] == 0;
    CHECK(all_train);
    /* Adding rows of other strata leaves the existing strata's assignment unchanged, even
     * when they shift domain and label indices (new domain aaab, new first label "a" in bbbb). */
    for (int i = 0; i < 5; i++)
        len += (size_t)snprintf(csv + len, cap - len, "%s-%05d,extra,%s\n", i < 3 ? "aaab" : "bbbb",
                                900 + i, i < 3 ? "x" : "a");
    rc = multifc_load(&m2, write_tmp("split2.csv", csv), err);
    CHECK_MSG(rc == 0 && m2.n == 60, "%s", err);
    if (rc == 0) {
        CHECK(m2.n_dom == 4 && m2.ex[2].domain == 2 && m2.ex[2].label_id == 1 &&
              m.ex[2].label_id == 0);
        multifc_split(&m2, 0.2, 0.3, 42, s4);
        CHECK(memcmp(s1, s4, sizeof(s1)) == 0);
        multifc_free(&m2);
    }
    free(csv);
    multifc_free(&m);
}

/* ------------------------------------------------------------------------------------------ */

static void test_chat(void) {
    char err[HW_ERR_LEN];
    struct chat_template t;
    chat_template_default(&t);
    const struct chat_msg msgs[3] = {
        {"System", "You are a pirate."}, {"user", "Hi!"}, {"ASSISTANT", "Arr."}};
    char *out;
    struct chat_span *sp;
    const char *want = "<|system|>\nYou are a pirate.<|end|>\n<|user|>\nHi!<|end|>\n"
                       "<|assistant|>\nArr.<|end|>\n";
    int n = chat_render(&t, msgs, 3, 0, &out, &sp, err);
    CHECK_MSG(n >= 0, "%s", err);
    if (n < 0)
        return;
    CHECK(n == (int)strlen(want) && strcmp(out, want) == 0);
    /* role tag and content spans, byte for byte */
    static const int expect[3][4] = {{0, 11, 11, 28}, {36, 45, 45, 48}, {56, 70, 70, 74}};
    for (int i = 0; i < 3; i++) {
        CHECK(sp[i].msg == i && sp[i].role_start == expect[i][0] &&
              sp[i].role_end == expect[i][1] && sp[i].content_start == expect[i][2] &&
              sp[i].content_end == expect[i][3]);
        CHECK(sp[i].content_end - sp[i].content_start == (int)strlen(msgs[i].content));
        CHECK(memcmp(out + sp[i].content_start, msgs[i].content, strlen(msgs[i].content)) == 0);
        const char *tag = i == 0 ? t.system : i == 1 ? t.user : t.assistant;
        CHECK(memcmp(out + sp[i].role_start, tag, strlen(tag)) == 0);
        CHECK(memcmp(out + sp[i].content_end, t.end_turn, strlen(t.end_turn)) == 0);
    }
    free(out);
    free(sp);

    /* generation prompt: the conversation so far, then the assistant tag */
    n = chat_render(&t, msgs, 2, 1, &out, &sp, err);
    CHECK(n >= 0 && strcmp(out, "<|system|>\nYou are a pirate.<|end|>\n<|user|>\nHi!<|end|>\n"
                                "<|assistant|>\n") == 0);
    CHECK(n >= 0 && sp[1].content_start == 45 && sp[1].content_end == 48);
    free(out);
    free(sp);
    n = chat_render(&t, msgs, 3, 1, &out, &sp, err);
    CHECK(n == (int)strlen(want) + 14 && strncmp(out, want, strlen(want)) == 0 &&
          strcmp(out + strlen(want), "<|assistant|>\n") == 0);
    free(out);
    free(sp);

    /* a custom template with a bos string and an empty end_turn */
    struct chat_template c;
    memset(&c, 0, sizeof(c));
    strcpy(c.system, "S: ");
    strcpy(c.user, "U: ");
    strcpy(c.assistant, "A: ");
    strcpy(c.bos, "<s>");
    n = chat_render(&c, msgs, 3, 1, &out, &sp, err);
    CHECK(n == 39 && strcmp(out, "<s>S: You are a pirate.U: Hi!A: Arr.A: ") == 0);
    CHECK(n >= 0 && sp[0].role_start == 3 && sp[0].content_start == 6 && sp[2].content_end == 36);
    free(out);
    free(sp);
    n = chat_render(&c, msgs, 0, 0, &out, &sp, err);
    CHECK(n == 3 && strcmp(out, "<s>") == 0 && sp != NULL);
    free(out);
    free(sp);

    const struct chat_msg badm[2] = {{"user", "x"}, {"robot", "y"}};
    CHECK(chat_render(&t, badm, 2, 0, &out, &sp, err) == HW_EFORMAT);
    CHECK_MSG(strcmp(err, "message 1: unknown role 'robot' (expected system, user or assistant)") ==
                  0,
              "%s", err);
    CHECK(out == NULL && sp == NULL);
    CHECK(chat_role_name("Assistant") && strcmp(chat_role_name("Assistant"), "assistant") == 0);
    CHECK(chat_role_name("tool") == NULL && chat_role_name(NULL) == NULL);
}

/* ------------------------------------------------------------------------------------------ */

static void test_rolemrc_fixture(void) {
    char err[HW_ERR_LEN];
    struct rolemrc r;
    int rc = rolemrc_load(&r, ROLEMRC_JSONL, err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc)
        return;
    enum { K = ROLEMRC_ASPECT_KNOWLEDGE, S = ROLEMRC_ASPECT_STYLE, NE = ROLEMRC_ASPECT_NESTED };
    enum { MT = ROLEMRC_ASPECT_MULTITURN, PR = ROLEMRC_ASPECT_PRIORITY };
    static const struct {
        const char *task, *group;
        unsigned aspects;
        int within, n_msgs;
    } want[13] = {
        {"role_related_mrc_answer_with_narration", NULL, K | S, 1, 2},
        {"role_related_mrc_answer_no_narration", NULL, K, 1, 2},
        {"role_related_mrc_refused_with_narration", NULL, K, 1, 2},
        {"role_related_mrc_refused_no_narration", NULL, S, -1, 2},
        {"role_unrelated_mrc_refused_with_narration", NULL, K, 0, 2},
        {"role_unrelated_mrc_refused_no_narration", NULL, K | S, 0, 2},
        {"role_unrelated_mrc_answer_with_narration", NULL, K, 0, 2},
        {"role_unrelated_mrc_answer_no_narration", NULL, S, -1, 2},
        {"role_related_mrc_answer_no_narration-special-content",
         "role_related_mrc_answer_no_narration", NE, -1, 2},
        {"role_related_mrc_answer_with_narration-special-format",
         "role_related_mrc_answer_with_narration", NE, -1, 2},
        {"role_related_mrc_refused_no_narration-2ndrefused",
         "role_related_mrc_refused_no_narration", MT, -1, 4},
        {"role_unrelated_mrc_refused_with_narration-2ndanswer",
         "role_unrelated_mrc_refused_with_narration", MT, -1, 4},
        {"role_related_mrc_answer_no_narration-refused", "role_related_mrc_answer_no_narration", PR,
         -1, 2},
    };
    CHECK(r.n == 13);
    for (int i = 0; i < 13 && i < r.n; i++) {
        const struct rolemrc_example *e = &r.ex[i];
        char group[128];
        rolemrc_task_group(e->task, group, sizeof(group));
        CHECK_MSG(strcmp(e->task, want[i].task) == 0, "row %d: %s", i, e->task);
        CHECK_MSG(e->aspects == want[i].aspects && e->knowledge_within == want[i].within,
                  "%s: aspects %u within %d", e->task, e->aspects, e->knowledge_within);
        CHECK_MSG(strcmp(group, want[i].group ? want[i].group : want[i].task) == 0, "%s -> %s",
                  e->task, group);
        CHECK(e->n_msgs == want[i].n_msgs && e->line == i + 1);
        CHECK(strcmp(e->msgs[0].role, "system") == 0 && strstr(e->msgs[0].content, "Passage: "));
        CHECK(strcmp(e->msgs[e->n_msgs - 1].role, "user") == 0);
        CHECK(e->reference[0] != '\0');
        if (e->n_msgs == 4)
            CHECK(strcmp(e->msgs[2].role, "assistant") == 0);
    }
    CHECK(r.n == 13 && strcmp(r.ex[0].reference, "*taps the brass frame* Every four hours, child. "
                                                 "A long wick smokes, and smoke on the lens dims "
                                                 "the beam the boats steer by.") == 0);

    /* The chat template renders a fixture prompt; the spans recover the messages. */
    struct chat_template t;
    chat_template_default(&t);
    char *out;
    struct chat_span *sp;
    int n = chat_render(&t, r.ex[10].msgs, r.ex[10].n_msgs, 1, &out, &sp, err);
    CHECK(n > 0);
    if (n > 0) {
        int ok = 1;
        for (int i = 0; i < r.ex[10].n_msgs; i++)
            ok &=
                sp[i].content_end - sp[i].content_start == (int)strlen(r.ex[10].msgs[i].content) &&
                memcmp(out + sp[i].content_start, r.ex[10].msgs[i].content,
                       strlen(r.ex[10].msgs[i].content)) == 0;
        CHECK(ok);
        free(out);
        free(sp);
    }
    rolemrc_free(&r);
    rolemrc_free(&r);
}

/* The map over the official test-set histogram (SOURCE.md) gives NeMo Gym's judge counts. */
static void test_rolemrc_map(void) {
    static const struct {
        const char *task;
        int n;
    } hist[18] = {
        {"role_related_mrc_answer_no_narration", 100},
        {"role_related_mrc_answer_no_narration-refused", 20},
        {"role_related_mrc_answer_no_narration-special-content", 58},
        {"role_related_mrc_answer_no_narration-special-format", 22},
        {"role_related_mrc_answer_with_narration", 100},
        {"role_related_mrc_answer_with_narration-refused", 22},
        {"role_related_mrc_answer_with_narration-special-content", 58},
        {"role_related_mrc_answer_with_narration-special-format", 20},
        {"role_related_mrc_refused_no_narration", 100},
        {"role_related_mrc_refused_no_narration-2ndrefused", 100},
        {"role_related_mrc_refused_with_narration", 100},
        {"role_related_mrc_refused_with_narration-2ndrefused", 100},
        {"role_unrelated_mrc_answer_no_narration", 100},
        {"role_unrelated_mrc_answer_with_narration", 100},
        {"role_unrelated_mrc_refused_no_narration", 100},
        {"role_unrelated_mrc_refused_no_narration-2ndanswer", 100},
        {"role_unrelated_mrc_refused_with_narration", 100},
        {"role_unrelated_mrc_refused_with_narration-2ndanswer", 100},
    };
    int per[5] = {0}, rows = 0;
    for (int i = 0; i < 18; i++) {
        unsigned a = rolemrc_task_aspects(hist[i].task, NULL);
        CHECK_MSG(a != 0, "%s", hist[i].task);
        rows += hist[i].n;
        for (int b = 0; b < 5; b++)
            if (a >> b & 1u)
                per[b] += hist[i].n;
    }
    CHECK(rows == 1400);
    CHECK_MSG(per[0] == 600 && per[1] == 400 && per[2] == 158 && per[3] == 400 && per[4] == 42,
              "%d %d %d %d %d", per[0], per[1], per[2], per[3], per[4]);
    int within = 7;
    CHECK(rolemrc_task_aspects("role_related_mrc_dialogue---x", &within) == 0 && within == -1);
    CHECK(rolemrc_task_aspects("role_related_mrc_answer_no_narration-bogus", NULL) == 0);
    CHECK(rolemrc_task_aspects("role_related_mrc_answer_no_narrationX", NULL) == 0);
    CHECK(rolemrc_task_aspects("", NULL) == 0);
    CHECK(strcmp(rolemrc_aspect_name(ROLEMRC_ASPECT_KNOWLEDGE), "knowledge") == 0);
    CHECK(strcmp(rolemrc_aspect_name(ROLEMRC_ASPECT_MULTITURN), "multiturn") == 0);
    CHECK(strcmp(rolemrc_aspect_name(ROLEMRC_ASPECT_PRIORITY), "priority") == 0);
    CHECK(strcmp(rolemrc_aspect_name(3), "unknown") == 0);
    char g[16];
    rolemrc_task_group("role_related_mrc_answer_no_narration-refused", g, sizeof(g));
    CHECK(strcmp(g, "role_related_mr") == 0);
    rolemrc_task_group("plain", g, sizeof(g));
    CHECK(strcmp(g, "plain") == 0);
    rolemrc_task_group("x-refused", g, 1);
    CHECK(g[0] == '\0');
}

static void test_rolemrc_errors(void) {
    char err[HW_ERR_LEN], want[HW_ERR_LEN];
    struct rolemrc r;
    const char *ok = "{\"question\":[{\"role\":\"System\",\"content\":\"sys\"},"
                     "{\"role\":\"User\",\"content\":\"q\"}],\"reference\":\"a\",\"task\":"
                     "\"role_related_mrc_answer_no_narration\",\"extra\":[1,2]}";
    /* extra keys, CRLF, blank lines and a BOM are fine */
    char text[1024];
    snprintf(text, sizeof(text), "\xEF\xBB\xBF%s\r\n\r\n  \n%s", ok, ok);
    int rc = rolemrc_load(&r, write_tmp("ok.jsonl", text), err);
    CHECK_MSG(rc == 0 && r.n == 2 && r.ex[1].line == 4, "%s", err);
    rolemrc_free(&r);

    static const struct {
        const char *name, *line2, *msg;
    } bad[] = {
        {"noref.jsonl", "{\"question\":[{\"role\":\"User\",\"content\":\"q\"}],\"task\":\"t\"}",
         "2: error: missing key 'reference'"},
        {"robot.jsonl",
         "{\"question\":[{\"role\":\"System\",\"content\":\"s\"},{\"role\":\"Robot\",\"content\":"
         "\"q\"}],\"reference\":\"a\",\"task\":\"t\"}",
         "2: error: question[1]: unknown role 'Robot' (expected System, User or Assistant)"},
        {"array.jsonl", "[1, 2]", "2: error: expected a JSON object, got array"},
        {"refnum.jsonl",
         "{\"question\":[{\"role\":\"User\",\"content\":\"q\"}],\"reference\":3,\"task\":\"t\"}",
         "2: error: key 'reference' must be a string, got number"},
        {"noquestion.jsonl", "{\"reference\":\"a\",\"task\":\"t\"}",
         "2: error: missing key 'question'"},
        {"emptyq.jsonl", "{\"question\":[],\"reference\":\"a\",\"task\":\"t\"}",
         "2: error: key 'question' must be a non-empty array, got an empty array"},
        {"qstr.jsonl", "{\"question\":\"hi\",\"reference\":\"a\",\"task\":\"t\"}",
         "2: error: key 'question' must be a non-empty array, got string"},
        {"msgnotobj.jsonl", "{\"question\":[\"hi\"],\"reference\":\"a\",\"task\":\"t\"}",
         "2: error: question[0] must be an object, got string"},
        {"nocontent.jsonl",
         "{\"question\":[{\"role\":\"User\"}],\"reference\":\"a\",\"task\":\"t\"}",
         "2: error: question[0]: missing key 'content'"},
        {"tasknull.jsonl",
         "{\"question\":[{\"role\":\"User\",\"content\":\"q\"}],\"reference\":\"a\",\"task\":null}",
         "2: error: key 'task' must be a string, got null"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "%s\n%s\n", ok, bad[i].line2);
        const char *path = write_tmp(bad[i].name, text);
        snprintf(want, sizeof(want), "%s:%s", path, bad[i].msg);
        rc = rolemrc_load(&r, path, err);
        CHECK_MSG(rc == HW_EFORMAT && strcmp(err, want) == 0, "%s: rc %d: %s", bad[i].name, rc,
                  err);
        CHECK(r.n == 0 && r.ex == NULL);
    }
    const char *path = write_tmp("syntax.jsonl", "{\"question\": [\n");
    rc = rolemrc_load(&r, path, err);
    snprintf(want, sizeof(want), "%s:1:", path);
    CHECK_MSG(rc == HW_EFORMAT && strncmp(err, want, strlen(want)) == 0 &&
                  strstr(err, "error: invalid JSON: "),
              "%s", err);
    CHECK(rolemrc_load(&r, "/nonexistent/x.jsonl", err) == HW_EIO);
    /* nothing to score is an error naming the file, not a results file of nulls */
    path = write_tmp("blank.jsonl", "\n  \n");
    rc = rolemrc_load(&r, path, err);
    snprintf(want, sizeof(want), "%s: error: no examples", path);
    CHECK_MSG(rc == HW_EFORMAT && strncmp(err, want, strlen(want)) == 0, "%s", err);
    CHECK(r.n == 0 && r.ex == NULL);
}

int main(void) {
    printf("test_evaldata: %s and %s are small HAND-WRITTEN fixtures in the official layouts, "
           "not RoleMRC or MultiFC data\n",
           ROLEMRC_JSONL, MULTIFC_TSV);
    snprintf(dir, sizeof(dir), "/tmp/hwevaldata.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_multifc_real();
    test_multifc_tsv();
    test_multifc_csv_edges();
    test_multifc_labels();
    test_split();
    test_chat();
    test_rolemrc_fixture();
    test_rolemrc_map();
    test_rolemrc_errors();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return check_report("test_evaldata");
}
