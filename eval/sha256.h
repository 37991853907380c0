/* eval/sha256.h -- SHA-256 (FIPS 180-4) for the provenance fields of evaluation results: the
 * hash of every data file and of every prompt template. Small and dependency-free (OpenSSL is
 * not linked); tests/test_metrics.c checks it against the FIPS 180-2 test vectors. */
#ifndef HW_SHA256_H
#define HW_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct sha256 {
    uint32_t h[8];
    uint64_t len; /* bytes hashed so far */
    unsigned char buf[64];
    size_t n_buf;
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t n);
/* The digest as 64 lowercase hex digits and a NUL into hex[65]. */
void sha256_final_hex(struct sha256 *s, char hex[65]);
/* One call: the digest of data[0..n). */
void sha256_hex(const void *data, size_t n, char hex[65]);
/* The digest of a file's bytes. Returns 0, or HW_EIO with err "path: cannot read: <why>". */
int sha256_file(const char *path, char hex[65], char *err);

#endif /* HW_SHA256_H */
