/* Real libraries run translated (codegen/tests/dbi_libraries.rs): each
 * `long NAME(void)` gives the same result natively and translated. */
#define _GNU_SOURCE
#include <iconv.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static unsigned char input[1 << 18];

static void fill(void) {
    unsigned x = 12345;
    for (size_t i = 0; i < sizeof input; i++) {
        x = x * 1103515245 + 12345;
        input[i] = "the quick brown fox jumps over a lazy dog "[(x >> 16) % 42];
    }
}

long zlib_roundtrip(void) {
    fill();
    uLongf packed_len = compressBound(sizeof input);
    unsigned char *packed = malloc(packed_len);
    unsigned char *back = malloc(sizeof input);
    if (compress2(packed, &packed_len, input, sizeof input, 6) != Z_OK) return -1;
    uLongf back_len = sizeof input;
    if (uncompress(back, &back_len, packed, packed_len) != Z_OK) return -2;
    long same = back_len == sizeof input && memcmp(back, input, back_len) == 0;
    long crc = crc32(0, packed, packed_len);
    free(packed);
    free(back);
    return (long)packed_len * 1000003 + crc * 2 + same;
}

long sha256_digest(void) {
    fill();
    unsigned char digest[SHA256_DIGEST_LENGTH];
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (int i = 0; i < 4; i++) EVP_DigestUpdate(ctx, input, sizeof input);
    EVP_DigestFinal_ex(ctx, digest, &len);
    EVP_MD_CTX_free(ctx);
    long out = 0;
    memcpy(&out, digest, sizeof out);
    return out ^ len;
}

static int add_row(void *sum, int n, char **values, char **names) {
    (void)names;
    for (int i = 0; i < n; i++) *(long *)sum += values[i] ? atol(values[i]) : 0;
    return 0;
}

long sqlite_inserts(void) {
    sqlite3 *db;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK) return -1;
    sqlite3_exec(db, "create table t(k integer primary key, v text, n integer);", 0, 0, 0);
    sqlite3_exec(db, "begin;", 0, 0, 0);
    sqlite3_stmt *insert;
    sqlite3_prepare_v2(db, "insert into t(v, n) values(?, ?);", -1, &insert, 0);
    for (int i = 0; i < 2000; i++) {
        char text[32];
        int len = snprintf(text, sizeof text, "row %d", i * 7919 % 2003);
        sqlite3_bind_text(insert, 1, text, len, SQLITE_TRANSIENT);
        sqlite3_bind_int(insert, 2, i * 31 % 977);
        sqlite3_step(insert);
        sqlite3_reset(insert);
    }
    sqlite3_finalize(insert);
    sqlite3_exec(db, "commit;", 0, 0, 0);
    long sum = 0;
    sqlite3_exec(db, "select sum(n), count(*), max(length(v)) from t where v like 'row 1%';",
                 add_row, &sum, 0);
    sqlite3_close(db);
    return sum;
}

long iconv_latin1(void) {
    iconv_t cd = iconv_open("UTF-8", "ISO-8859-1");
    if (cd == (iconv_t)-1) return -1;
    char in[256], out[512];
    for (int i = 0; i < 256; i++) in[i] = (char)(i ? i : 1);
    char *ip = in, *op = out;
    size_t il = sizeof in, ol = sizeof out;
    size_t r = iconv(cd, &ip, &il, &op, &ol);
    iconv_close(cd);
    long h = 0;
    for (char *p = out; p < op; p++) h = h * 131 + (unsigned char)*p;
    return h ^ (long)(sizeof out - ol) ^ (long)r;
}
