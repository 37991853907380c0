/* datasets/multifc.h -- MultiFC claim/verdict data (Augenstein et al., EMNLP 2019): loads the
 * staged 3-column CSV or the official 13-column (train/dev) / 12-column (test) TSV into one
 * table of claims, finds and drops merged (broken) records, indexes the per-domain label sets,
 * and makes a seeded stratified train/val/test split. See shared/datasets/multifc/SOURCE.md.
 * Owns struct multifc and everything it points to. */
#ifndef HW_MULTIFC_H
#define HW_MULTIFC_H

#include <stdint.h>

/* The seed of the one MultiFC split every method uses (multifc_split): the log-likelihood task
 * (eval multifc), the classifier's training (train.task classify) and its evaluation
 * (multifc_classify). Not train.seed or eval.seed, so that changing either of those keeps the
 * split; 1337 is train.seed's default, so classifiers trained with that seed keep theirs. */
#define MULTIFC_SPLIT_SEED 1337ULL

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
    /* (n_repaired) one line per merged record that was split back into its records, in file
     * order: "<claimID>: line <N>: merged record split into <k> claims: <id> (line <L>), ..." */
    char **repaired;
    int n_repaired;
    /* (n_unknown) one line per example whose label is not among the known labels of its domain
     * (multifc_known_labels), in file order: "<claimID>: line <N>: label '<l>' is not a known
     * <domain> label". Such a label is used as it is: a class of its own. */
    char **unknown;
    int n_unknown;
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
 * kept byte for byte (no trimming).
 * Merged records (the staged CSV's rows wast-00047, farg-00319 and wast-00111): a claim field
 * that holds the record's remaining 11 official columns tab-separated, then on each following
 * line a whole 13-column record, and on its last line "<claimID>\t<claim>" of the record whose
 * label the row's label field is, is split back into all of those records (each with its own
 * line); the last one's claim gets back the opening '"' the merging reader took as the end of a
 * quoted field (when its '"' are unbalanced and it ends with one). Listed in repaired[].
 * Any other claim holding a tab, or a newline followed by a claimID (four lowercase letters, a
 * dash, five digits), or a label holding a tab or newline, is rejected (listed in rejected[], not
 * used). Labels of the 26 MultiFC domains are checked against multifc_known_labels: a label within
 * one edit (insertion, deletion, substitution or swap of neighbours) of a known label of its
 * domain, or equal to one but for letter case and spaces, is an error (misspelled); any other
 * unknown label is listed in unknown[] and kept (the train split has labels the dev split
 * lacks). Domains outside the 26 are not checked.
 * Errors (m left zeroed; return value, err = "path:line: error: ..."): HW_EIO (cannot read),
 * HW_EFORMAT: unknown header, wrong field count, unterminated quote, text after a closing
 * quote, NUL byte, bytes that are not UTF-8, bad claimID (must be 4 lowercase letters, '-',
 * digits), empty label in a labelled file, a misspelled label, duplicate claimID, no usable
 * claim. Returns 0 on success. */
int multifc_load(struct multifc *m, const char *path, char *err);
/* Releases everything; accepts a zeroed struct and leaves it zeroed. */
void multifc_free(struct multifc *m);

/* Prints the rejected, repaired and unknown-label lines on the console (log_warn, rank 0), each
 * as "path:<line>: <claimID>: ...". */
void multifc_log_notes(const struct multifc *m, const char *path);

/* The known labels of a domain ("pomt", ...): a '|'-separated list (the labels of the MultiFC
 * dev split, merged records repaired, and goop's whole scale "0".."10"), or NULL for a name
 * outside the 26 domains. */
const char *multifc_known_labels(const char *domain);

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
