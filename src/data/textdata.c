/*
 * textdata.c — a tokenized text corpus in memory, split and batched.
 *
 * Data structure: one st_malloc'd i32 array of every token id of the text;
 * the train split is its first n_train ids, the validation split the rest
 * (nanoGPT's 90/10). Batches draw row offsets from splitmix64 over
 * (seed, split, batch index, row), reduced to a range without modulo bias
 * by Lemire's multiply-shift, so batch i never depends on batch i-1: that is
 * what makes `strata train --resume` bit-exact.
 *
 * Ownership: st_textdata owns the ids. Immutable after st_textdata_new, so
 * st_textdata_batch is safe from several threads.
 */
#include "strata/data.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct st_textdata {
    int32_t *ids;
    int64_t n, n_train;
};

st_status st_text_read_file(const char *path, size_t max_bytes, char **text, size_t *n_bytes) {
    if (!path || !text) return st__fail(ST_ERR_INVALID_ARG, "st_text_read_file: NULL argument");
    *text = NULL;
    if (n_bytes) *n_bytes = 0;
    if (max_bytes == 0) max_bytes = (size_t)1 << 30;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return st__fail(ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return st__fail(ST_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > (uint64_t)max_bytes) {
        close(fd);
        return st__fail(ST_ERR_FORMAT, "%s: %lld bytes, more than the limit of %zu", path,
                        (long long)sb.st_size, max_bytes);
    }
    size_t n = (size_t)sb.st_size, got = 0;
    char *buf = st_malloc(n + 1);
    if (!buf) {
        close(fd);
        return st__fail(ST_ERR_NOMEM, "%s: no memory for %zu bytes", path, n);
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st_status s = st__fail(ST_ERR_IO, "%s: read failed: %s", path, strerror(errno));
            close(fd);
            st_free(buf);
            return s;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *text = buf;
    if (n_bytes) *n_bytes = got;
    return ST_OK;
}

st_status st_textdata_new(const st_tokenizer *tok, const char *text, size_t n_bytes,
                          double train_frac, const char *source, st_textdata **out) {
    if (!out) return st__fail(ST_ERR_INVALID_ARG, "st_textdata_new: out is NULL");
    *out = NULL;
    if (!source) source = "<text>";
    if (!tok || (!text && n_bytes))
        return st__fail(ST_ERR_INVALID_ARG, "st_textdata_new: %s: NULL tokenizer or text", source);
    if (!(train_frac > 0.0 && train_frac <= 1.0))
        return st__fail(ST_ERR_INVALID_ARG, "st_textdata_new: %s: train_frac %g outside (0, 1]",
                        source, train_frac);
    st_textdata *d = st_calloc(1, sizeof *d);
    if (!d) return st__fail(ST_ERR_NOMEM, "%s: no memory", source);
    st_encode_opts opts = {.allow_special = false, .add_bos = false};
    size_t n = 0;
    st_status s = st_tokenizer_encode(tok, text ? text : "", n_bytes, &opts, &d->ids, &n);
    if (s != ST_OK) {
        st_free(d);
        return s;
    }
    d->n = (int64_t)n;
    d->n_train = (int64_t)((double)n * train_frac);
    if (d->n_train > d->n) d->n_train = d->n;
    *out = d;
    return ST_OK;
}

void st_textdata_free(st_textdata *d) {
    if (!d) return;
    st_free(d->ids);
    st_free(d);
}

int64_t st_textdata_n_tokens(const st_textdata *d, st_split split) {
    if (!d) return 0;
    return split == ST_SPLIT_TRAIN ? d->n_train : d->n - d->n_train;
}

const int32_t *st_textdata_tokens(const st_textdata *d, st_split split) {
    if (!d) return NULL;
    return split == ST_SPLIT_TRAIN ? d->ids : d->ids + d->n_train;
}

static uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

st_status st_textdata_batch(const st_textdata *d, st_split split, uint64_t seed, uint64_t index,
                            int B, int T, int32_t *out) {
    if (!d || !out || B < 1 || T < 1)
        return st__fail(ST_ERR_INVALID_ARG, "st_textdata_batch: NULL data/out or B=%d T=%d < 1",
                        B, T);
    int64_t n = st_textdata_n_tokens(d, split);
    const int32_t *ids = st_textdata_tokens(d, split);
    if (n < (int64_t)T + 1)
        return st__fail(ST_ERR_SHAPE,
                        "st_textdata_batch: the %s split has %lld tokens, a row needs T+1 = %d",
                        split == ST_SPLIT_TRAIN ? "train" : "validation", (long long)n, T + 1);
    uint64_t range = (uint64_t)(n - T); /* starts in [0, n - T - 1] */
    uint64_t k = splitmix64(seed ^ 0x5354524154414441ULL /* "STRATADA" */);
    k = splitmix64(k ^ ((uint64_t)split + 1));
    k = splitmix64(k ^ index);
    for (int b = 0; b < B; b++) {
        uint64_t r = splitmix64(k + (uint64_t)b * 0x9e3779b97f4a7c15ULL);
        uint64_t start = (uint64_t)(((unsigned __int128)r * range) >> 64);
        memcpy(out + (size_t)b * (size_t)(T + 1), ids + start, sizeof(int32_t) * (size_t)(T + 1));
    }
    return ST_OK;
}
