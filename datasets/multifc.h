/* datasets/multifc.h -- MultiFC claim/verdict data (Augenstein et al., EMNLP 2019): loads the
 * staged 3-column CSV or the official 13-column (train/dev) / 12-column (test) TSV into one
 * table of claims, finds and drops merged (broken) records, indexes the per-domain label sets,
 * and makes a seeded stratified train/val/test split. See shared/datasets/multifc/SOURCE.md.
 * Owns struct multifc and everything it points to. */
#ifndef HW_MULTIFC_H
#define HW_MULTIFC_H

#include <stdint.h>

struct multifc_example {
    char *claim_id; /* e.g. "pomt-00123"; the first 4 letters name the domain (website) */
    char *claim;    /* exactly as in the file (may begin with a space, may be empty) */
    char *label;    /* the website's own verdict string; NULL in an unlabelled file */
    int domain;     /* index into multifc.dom */
    int label_id;   /* index into dom[domain].labels; -1 if unlabelled */
    int line;       /* 1-based line of the file where the record starts */
};

struct multifc_domain {
    char name[8];  /* "pomt", ... (4 letters) */
    char **labels; /* (n_labels) distinct labels of the usable examples, sorted by strcmp */
    int n_labels;
    int n_examples; /* usable examples of this domain */
};

struct multifc {
    struct multifc_example *ex; /* (n) usable examples, in file order */
    int n;
    struct multifc_domain *dom; /* (n_dom) sorted by name */
    int n_dom;
    /* (n_rejected) one line per record detected as broken and left out, in file order:
     * "<claimID>: line <N>: <why>", so the claimID is the text before the first ':'. */
    char **rejected;
    int n_rejected;
    int labelled; /* 1: the file has a label column (CSV, 13-column TSV); 0: 12-column TSV */
};

/* Loads path into *m (overwritten without freeing). Data rows read = m->n + m->n_rejected.
 * Format, from the first line (after an optional UTF-8 BOM):
 *   - a line with a tab: TSV, one record per line, fields split on tabs, NO quote processing
 *     (a claim may begin with '"'; reading such a file with CSV quoting is what merged rows
 *     in the staged CSV). Either a header line whose first field is "claimID" (columns found
 *     by name: claimID, claim, optional label) or headerless: 13 fields = claimID, claim,
 *     label, claimURL, reason, categories, speaker, checker, tags, articleTitle,
 *     publishDate, claimDate, entities (train/dev); 12 fields = the same without label (test).
 *   - otherwise: RFC 4180 CSV with a header naming claimID, claim and optionally label (other
 *     columns ignored); quoted fields may hold commas, newlines and "" for a quote.
 * Both: CRLF or LF line ends, a missing final newline and blank lines are accepted; fields are
 * kept byte for byte (no trimming). A record is rejected (listed in rejected[], not used) when
 * its claim holds a tab, or a newline followed by a claimID-like "xxxx-NNNNN" (a merged
 * record whose label belongs to the swallowed record), or its label holds a tab or newline.
 * Errors (m left zeroed; return value, err = "path:line: error: ..."): HW_EIO (cannot read),
 * HW_EFORMAT: unknown header, wrong field count, unterminated quote, text after a closing
 * quote, NUL byte, bad claimID (must be 4 lowercase letters, '-', digits), empty label in a
 * labelled file, duplicate claimID. Returns 0 on success. */
int multifc_load(struct multifc *m, const char *path, char *err);
/* Releases everything; accepts a zeroed struct and leaves it zeroed. */
void multifc_free(struct multifc *m);

/* Seeded stratified split of the usable examples: within each (domain, label) stratum of k
 * examples (unlabelled files: one stratum per domain), listed in file order and shuffled
 * (Fisher-Yates) with a key derived from (seed, domain name, label string), the first
 * n_test = floor(frac_test*k + 0.5) go to test, the next n_val = min(floor(frac_val*k + 0.5),
 * k - n_test) to val, the rest to train; strata with 1 example go to train. split (m->n) gets
 * 0 train, 1 val, 2 test. A pure function of (the stratum's members, fractions, seed):
 * adding rows of other strata does not change a stratum's assignment. Needs
 * 0 <= frac_val, 0 <= frac_test, frac_val + frac_test <= 1 (asserted). */
void multifc_split(const struct multifc *m, double frac_val, double frac_test, uint64_t seed,
                   int *split);

#endif /* HW_MULTIFC_H */
