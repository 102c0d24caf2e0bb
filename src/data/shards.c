/*
 * shards.c — token shard files and the dataset manifest (strata/data.h).
 *
 * A shard is a 64-byte little-endian header and a flat array of uint16 or
 * uint32 ids (layout in data.h). Readers mmap the file read-only and check
 * every declared size against the real one before any token is touched;
 * st_shard_open_mem does the same over borrowed memory (the fuzz target).
 * The manifest is JSON through jansson: read with type and range checks on
 * every key, written through a temp file, fsync and rename
 * (st__write_file_atomic). SHA-256 comes from OpenSSL's libcrypto (EVP).
 *
 * Ownership: an st_shard owns its mapping (or borrows the caller's memory);
 * an st_manifest owns every string in it. Both are immutable after
 * creation and safe to read from several threads.
 */
#include "strata/data.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/tokenizer_impl.h"

struct st_shard {
    st_shard_info info;
    const uint8_t *base; /* header start */
    size_t map_bytes;    /* > 0: we own a mapping of this size */
    const uint8_t *tokens;
};

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) {
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void wr64(uint8_t *p, uint64_t v) {
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

st_status st_shard_write(const char *path, const int32_t *ids, size_t n, uint32_t vocab_size,
                         const uint8_t tokenizer_sha256[32]) {
    if (!path || (!ids && n) || vocab_size == 0 || vocab_size > (uint32_t)INT32_MAX)
        return st__fail(ST_ERR_INVALID_ARG, "st_shard_write: %s: NULL ids, or vocab_size 0 or over INT32_MAX",
                        path ? path : "(null)");
    uint32_t tb = vocab_size <= 65536u ? 2 : 4;
    size_t body;
    if (st_mul_overflow_size(n, tb, &body) || body > SIZE_MAX - ST_SHARD_HEADER_BYTES)
        return st__fail(ST_ERR_INVALID_ARG, "st_shard_write: %s: %zu tokens is too many", path, n);
    uint8_t *buf = st_malloc(ST_SHARD_HEADER_BYTES + body);
    if (!buf) return st__fail(ST_ERR_NOMEM, "%s: no memory for a %zu-token shard", path, n);
    memset(buf, 0, ST_SHARD_HEADER_BYTES);
    memcpy(buf, ST_SHARD_MAGIC, 8);
    wr32(buf + 8, ST_SHARD_VERSION);
    wr32(buf + 12, tb);
    wr64(buf + 16, (uint64_t)n);
    wr32(buf + 24, vocab_size);
    if (tokenizer_sha256) memcpy(buf + 32, tokenizer_sha256, 32);
    uint8_t *t = buf + ST_SHARD_HEADER_BYTES;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (uint32_t)ids[i] >= vocab_size) {
            st_free(buf);
            return st__fail(ST_ERR_INVALID_ARG,
                            "st_shard_write: %s: token %zu is %" PRId32 ", outside [0, %" PRIu32
                            ")",
                            path, i, ids[i], vocab_size);
        }
        uint32_t v = (uint32_t)ids[i];
        t[i * tb] = (uint8_t)v;
        t[i * tb + 1] = (uint8_t)(v >> 8);
        if (tb == 4) {
            t[i * tb + 2] = (uint8_t)(v >> 16);
            t[i * tb + 3] = (uint8_t)(v >> 24);
        }
    }
    st_status s = st__write_file_atomic(path, (const char *)buf, ST_SHARD_HEADER_BYTES + body);
    st_free(buf);
    return s;
}

static st_status validate(st_shard *sh, const uint8_t *p, size_t n, const char *name,
                          bool check_tokens) {
    if (n < ST_SHARD_HEADER_BYTES)
        return st__fail(ST_ERR_FORMAT, "%s: %zu bytes, shorter than the %d-byte shard header", name,
                        n, ST_SHARD_HEADER_BYTES);
    if (memcmp(p, ST_SHARD_MAGIC, 8) != 0)
        return st__fail(ST_ERR_FORMAT, "%s: not a Strata token shard (bad magic)", name);
    st_shard_info *in = &sh->info;
    in->version = rd32(p + 8);
    in->token_bytes = rd32(p + 12);
    in->n_tokens = rd64(p + 16);
    in->vocab_size = rd32(p + 24);
    memcpy(in->tokenizer_sha256, p + 32, 32);
    if (in->version != ST_SHARD_VERSION)
        return st__fail(ST_ERR_FORMAT,
                        "%s: shard version %" PRIu32 ", this Strata reads version %u; "
                        "re-run `strata data ingest` with this version",
                        name, in->version, ST_SHARD_VERSION);
    if (in->token_bytes != 2 && in->token_bytes != 4)
        return st__fail(ST_ERR_FORMAT, "%s: %" PRIu32 " bytes per token, expected 2 or 4", name,
                        in->token_bytes);
    /* ids are int32 everywhere above the shard: a larger vocabulary cannot be real */
    if (in->vocab_size == 0 || in->vocab_size > (uint32_t)INT32_MAX ||
        (in->token_bytes == 2 && in->vocab_size > 65536u))
        return st__fail(ST_ERR_FORMAT,
                        "%s: vocab_size %" PRIu32 " does not fit %" PRIu32 "-byte tokens", name,
                        in->vocab_size, in->token_bytes);
    uint64_t avail = (uint64_t)(n - ST_SHARD_HEADER_BYTES);
    if (in->n_tokens > avail / in->token_bytes)
        return st__fail(ST_ERR_FORMAT,
                        "%s: header declares %" PRIu64 " tokens of %" PRIu32 " bytes but the file "
                        "holds %" PRIu64 " bytes after the header (truncated?)",
                        name, in->n_tokens, in->token_bytes, avail);
    if (in->n_tokens * in->token_bytes != avail)
        return st__fail(ST_ERR_FORMAT,
                        "%s: %" PRIu64 " trailing bytes after the %" PRIu64 " declared tokens",
                        name, avail - in->n_tokens * in->token_bytes, in->n_tokens);
    sh->tokens = p + ST_SHARD_HEADER_BYTES;
    if (check_tokens) {
        const uint8_t *t = sh->tokens;
        uint32_t mx = 0;
        uint64_t at = 0;
        for (uint64_t i = 0; i < in->n_tokens; i++) {
            uint32_t v = in->token_bytes == 2 ? (uint32_t)t[2 * i] | (uint32_t)t[2 * i + 1] << 8
                                              : rd32(t + 4 * i);
            if (v > mx) {
                mx = v;
                at = i;
            }
        }
        if (in->n_tokens && mx >= in->vocab_size)
            return st__fail(ST_ERR_FORMAT,
                            "%s: token %" PRIu64 " is %" PRIu32
                            ", outside the vocabulary of %" PRIu32,
                            name, at, mx, in->vocab_size);
    }
    return ST_OK;
}

st_status st_shard_open_mem(const void *buf, size_t n, const char *name, bool check_tokens,
                            st_shard **out) {
    if (!out) return st__fail(ST_ERR_INVALID_ARG, "st_shard_open_mem: out is NULL");
    *out = NULL;
    if (!name) name = "<shard>";
    if (!buf && n) return st__fail(ST_ERR_INVALID_ARG, "%s: NULL buffer", name);
    st_shard *sh = st_calloc(1, sizeof *sh);
    if (!sh) return st__fail(ST_ERR_NOMEM, "%s: no memory", name);
    sh->base = buf;
    st_status s = validate(sh, buf, n, name, check_tokens);
    if (s != ST_OK) {
        st_free(sh);
        return s;
    }
    *out = sh;
    return ST_OK;
}

st_status st_shard_open(const char *path, bool check_tokens, st_shard **out) {
    if (!out || !path) return st__fail(ST_ERR_INVALID_ARG, "st_shard_open: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return st__fail(ST_ERR_IO, "%s: cannot open shard: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return st__fail(ST_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)sb.st_size;
    if (n < ST_SHARD_HEADER_BYTES) {
        close(fd);
        return st__fail(ST_ERR_FORMAT, "%s: %zu bytes, shorter than the %d-byte shard header", path,
                        n, ST_SHARD_HEADER_BYTES);
    }
    void *m = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return st__fail(ST_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    st_shard *sh = st_calloc(1, sizeof *sh);
    if (!sh) {
        munmap(m, n);
        return st__fail(ST_ERR_NOMEM, "%s: no memory", path);
    }
    sh->base = m;
    sh->map_bytes = n;
    st_status s = validate(sh, m, n, path, check_tokens);
    if (s != ST_OK) {
        st_shard_free(sh);
        return s;
    }
    madvise(m, n, MADV_WILLNEED);
    *out = sh;
    return ST_OK;
}

void st_shard_free(st_shard *sh) {
    if (!sh) return;
    if (sh->map_bytes) munmap((void *)sh->base, sh->map_bytes);
    st_free(sh);
}

const st_shard_info *st_shard_get_info(const st_shard *sh) {
    return sh ? &sh->info : NULL;
}

st_status st_shard_read(const st_shard *sh, uint64_t offset, size_t n, int32_t *out) {
    if (!sh || (!out && n)) return st__fail(ST_ERR_INVALID_ARG, "st_shard_read: NULL argument");
    if (offset > sh->info.n_tokens || n > sh->info.n_tokens - offset)
        return st__fail(ST_ERR_BOUNDS,
                        "st_shard_read: tokens [%" PRIu64 ", +%zu) past the end (%" PRIu64 ")",
                        offset, n, sh->info.n_tokens);
    if (sh->info.token_bytes == 2) {
        const uint8_t *t = sh->tokens + offset * 2;
        for (size_t i = 0; i < n; i++)
            out[i] = (int32_t)((uint32_t)t[2 * i] | (uint32_t)t[2 * i + 1] << 8);
    } else {
        const uint8_t *t = sh->tokens + offset * 4;
        for (size_t i = 0; i < n; i++)
            out[i] = (int32_t)rd32(t + 4 * i);
    }
    return ST_OK;
}

/* ---- SHA-256 ------------------------------------------------------------------ */

st_status st_sha256_file(const char *path, char hex[65], uint64_t *n_bytes) {
    if (!path || !hex) return st__fail(ST_ERR_INVALID_ARG, "st_sha256_file: NULL argument");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return st__fail(ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(c);
        close(fd);
        return st__fail(ST_ERR_INTERNAL, "%s: OpenSSL SHA-256 init failed", path);
    }
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = st_malloc(CHUNK);
    uint64_t total = 0;
    st_status s = buf ? ST_OK : st__fail(ST_ERR_NOMEM, "%s: no memory", path);
    while (s == ST_OK) {
        ssize_t r = read(fd, buf, CHUNK);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) s = st__fail(ST_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        if (r <= 0) break;
        EVP_DigestUpdate(c, buf, (size_t)r);
        total += (uint64_t)r;
    }
    uint8_t md[32];
    unsigned mdn = 0;
    if (s == ST_OK && EVP_DigestFinal_ex(c, md, &mdn) != 1)
        s = st__fail(ST_ERR_INTERNAL, "%s: OpenSSL SHA-256 failed", path);
    EVP_MD_CTX_free(c);
    st_free(buf);
    close(fd);
    if (s != ST_OK) return s;
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (n_bytes) *n_bytes = total;
    return ST_OK;
}

/* ---- manifest --------------------------------------------------------------------- */

void st_manifest_free(st_manifest *m) {
    if (!m) return;
    st_free(m->tokenizer_name);
    st_free(m->tokenizer_file);
    st_free(m->column);
    for (int i = 0; i < m->n_shards; i++)
        st_free(m->shards[i].file);
    st_free(m->shards);
    for (int i = 0; i < m->n_sources; i++)
        st_free(m->sources[i].path);
    st_free(m->sources);
    st_free(m);
}

static bool is_hex64(const char *s) {
    if (strlen(s) != 64) return false;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

/* Reads a non-negative integer key. */
static st_status get_u64(json_t *o, const char *key, const char *name, const char *where,
                         uint64_t *out) {
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return st__fail(ST_ERR_FORMAT, "%s: %s\"%s\" is missing or not a non-negative integer",
                        name, where, key);
    *out = (uint64_t)json_integer_value(v);
    return ST_OK;
}

static st_status get_str(json_t *o, const char *key, const char *name, const char *where,
                         size_t max_len, char **out) {
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) > max_len ||
        strlen(json_string_value(v)) != json_string_length(v))
        return st__fail(ST_ERR_FORMAT, "%s: %s\"%s\" is missing, not a string or too long", name,
                        where, key);
    *out = st_strdup(json_string_value(v));
    if (!*out) return st__fail(ST_ERR_NOMEM, "%s: no memory", name);
    return ST_OK;
}

static st_status parse_manifest(json_t *root, const char *name, st_manifest *m) {
    if (!json_is_object(root)) return st__fail(ST_ERR_FORMAT, "%s: not a JSON object", name);
    json_t *fmt = json_object_get(root, "format");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "strata-token-shards") != 0)
        return st__fail(ST_ERR_FORMAT, "%s: \"format\" is not \"strata-token-shards\"", name);
    uint64_t u;
    ST_TRY(get_u64(root, "version", name, "", &u));
    if (u != 1)
        return st__fail(ST_ERR_FORMAT,
                        "%s: manifest version %" PRIu64 ", this Strata reads 1; "
                        "re-run `strata data ingest`",
                        name, u);
    m->version = 1;
    json_t *tk = json_object_get(root, "tokenizer");
    if (!json_is_object(tk))
        return st__fail(ST_ERR_FORMAT, "%s: \"tokenizer\" is not an object", name);
    ST_TRY(get_str(tk, "name", name, "tokenizer.", 4096, &m->tokenizer_name));
    ST_TRY(get_str(tk, "file", name, "tokenizer.", 4096, &m->tokenizer_file));
    char *sha = NULL;
    ST_TRY(get_str(tk, "sha256", name, "tokenizer.", 64, &sha));
    bool ok = is_hex64(sha);
    if (ok) memcpy(m->tokenizer_sha256, sha, 65);
    st_free(sha);
    if (!ok) return st__fail(ST_ERR_FORMAT, "%s: tokenizer.sha256 is not 64 hex digits", name);
    ST_TRY(get_u64(tk, "vocab_size", name, "tokenizer.", &u));
    if (u == 0 || u > INT32_MAX)
        return st__fail(ST_ERR_FORMAT, "%s: tokenizer.vocab_size %" PRIu64 " out of range", name,
                        u);
    m->vocab_size = (uint32_t)u;
    json_t *sep = json_object_get(tk, "separator_id");
    if (!json_is_integer(sep) || json_integer_value(sep) < -1 ||
        json_integer_value(sep) >= (json_int_t)m->vocab_size)
        return st__fail(ST_ERR_FORMAT, "%s: tokenizer.separator_id missing or out of range", name);
    m->separator_id = (int32_t)json_integer_value(sep);
    json_t *dt = json_object_get(root, "dtype");
    if (!json_is_string(dt)) return st__fail(ST_ERR_FORMAT, "%s: \"dtype\" is not a string", name);
    if (!strcmp(json_string_value(dt), "uint16"))
        m->token_bytes = 2;
    else if (!strcmp(json_string_value(dt), "uint32"))
        m->token_bytes = 4;
    else
        return st__fail(ST_ERR_FORMAT, "%s: \"dtype\" must be \"uint16\" or \"uint32\"", name);
    if (m->token_bytes == 2 && m->vocab_size > 65536)
        return st__fail(ST_ERR_FORMAT, "%s: dtype uint16 with vocab_size %" PRIu32, name,
                        m->vocab_size);

    json_t *pr = json_object_get(root, "params");
    if (!json_is_object(pr))
        return st__fail(ST_ERR_FORMAT, "%s: \"params\" is not an object", name);
    ST_TRY(get_str(pr, "column", name, "params.", 4096, &m->column));
    json_t *vf = json_object_get(pr, "val_fraction");
    if (!json_is_number(vf) || !(json_number_value(vf) >= 0 && json_number_value(vf) < 1))
        return st__fail(ST_ERR_FORMAT, "%s: params.val_fraction missing or outside [0, 1)", name);
    m->val_fraction = json_number_value(vf);
    ST_TRY(get_u64(pr, "shard_tokens", name, "params.", &m->shard_tokens));
    if (m->shard_tokens == 0) return st__fail(ST_ERR_FORMAT, "%s: params.shard_tokens is 0", name);
    char *seed = NULL;
    ST_TRY(get_str(pr, "seed", name, "params.", 24, &seed));
    char *end = NULL;
    errno = 0;
    m->seed = strtoull(seed, &end, 10);
    ok = *seed && !*end && errno == 0 && seed[0] != '-';
    st_free(seed);
    if (!ok) return st__fail(ST_ERR_FORMAT, "%s: params.seed is not a decimal uint64 string", name);

    json_t *sh = json_object_get(root, "shards");
    if (!json_is_array(sh) || json_array_size(sh) > 10000000)
        return st__fail(ST_ERR_FORMAT, "%s: \"shards\" is not an array", name);
    size_t ns = json_array_size(sh);
    m->shards = st_calloc(ns ? ns : 1, sizeof *m->shards);
    if (!m->shards) return st__fail(ST_ERR_NOMEM, "%s: no memory", name);
    uint64_t sum[2] = {0, 0};
    for (size_t i = 0; i < ns; i++) {
        json_t *e = json_array_get(sh, i);
        char where[48];
        snprintf(where, sizeof where, "shards[%zu].", i);
        if (!json_is_object(e))
            return st__fail(ST_ERR_FORMAT, "%s: shards[%zu] is not an object", name, i);
        st_manifest_shard *d = &m->shards[i];
        m->n_shards = (int)i + 1;
        ST_TRY(get_str(e, "file", name, where, 255, &d->file));
        if (!d->file[0] || strchr(d->file, '/') || !strcmp(d->file, ".") || !strcmp(d->file, ".."))
            return st__fail(ST_ERR_FORMAT, "%s: %sfile \"%s\" is not a plain file name", name,
                            where, d->file);
        json_t *sp = json_object_get(e, "split");
        if (!json_is_string(sp))
            return st__fail(ST_ERR_FORMAT, "%s: %ssplit is not a string", name, where);
        if (!strcmp(json_string_value(sp), "train"))
            d->split = ST_SPLIT_TRAIN;
        else if (!strcmp(json_string_value(sp), "val"))
            d->split = ST_SPLIT_VAL;
        else
            return st__fail(ST_ERR_FORMAT, "%s: %ssplit must be \"train\" or \"val\"", name, where);
        ST_TRY(get_u64(e, "tokens", name, where, &d->n_tokens));
        if (__builtin_add_overflow(sum[d->split], d->n_tokens, &sum[d->split]))
            return st__fail(ST_ERR_FORMAT, "%s: token counts overflow", name);
    }
    json_t *so = json_object_get(root, "sources");
    if (!json_is_array(so) || json_array_size(so) > 100000000)
        return st__fail(ST_ERR_FORMAT, "%s: \"sources\" is not an array", name);
    size_t nsrc = json_array_size(so);
    m->sources = st_calloc(nsrc ? nsrc : 1, sizeof *m->sources);
    if (!m->sources) return st__fail(ST_ERR_NOMEM, "%s: no memory", name);
    for (size_t i = 0; i < nsrc; i++) {
        json_t *e = json_array_get(so, i);
        char where[48];
        snprintf(where, sizeof where, "sources[%zu].", i);
        if (!json_is_object(e))
            return st__fail(ST_ERR_FORMAT, "%s: sources[%zu] is not an object", name, i);
        st_manifest_source *d = &m->sources[i];
        m->n_sources = (int)i + 1;
        ST_TRY(get_str(e, "path", name, where, 4096, &d->path));
        ST_TRY(get_u64(e, "bytes", name, where, &d->n_bytes));
        ST_TRY(get_u64(e, "documents", name, where, &d->n_docs));
        ST_TRY(get_u64(e, "tokens", name, where, &d->n_tokens));
        char *h = NULL;
        ST_TRY(get_str(e, "sha256", name, where, 64, &h));
        ok = is_hex64(h);
        if (ok) memcpy(d->sha256, h, 65);
        st_free(h);
        if (!ok) return st__fail(ST_ERR_FORMAT, "%s: %ssha256 is not 64 hex digits", name, where);
    }
    json_t *tot = json_object_get(root, "totals");
    if (!json_is_object(tot))
        return st__fail(ST_ERR_FORMAT, "%s: \"totals\" is not an object", name);
    ST_TRY(get_u64(tot, "documents", name, "totals.", &m->n_docs));
    ST_TRY(get_u64(tot, "train_tokens", name, "totals.", &m->n_tokens[0]));
    ST_TRY(get_u64(tot, "val_tokens", name, "totals.", &m->n_tokens[1]));
    if (m->n_tokens[0] != sum[0] || m->n_tokens[1] != sum[1])
        return st__fail(ST_ERR_FORMAT,
                        "%s: totals (train %" PRIu64 ", val %" PRIu64 ") disagree with the shards "
                        "(train %" PRIu64 ", val %" PRIu64 ")",
                        name, m->n_tokens[0], m->n_tokens[1], sum[0], sum[1]);
    return ST_OK;
}

st_status st_manifest_read_mem(const char *buf, size_t n, const char *name, st_manifest **out) {
    if (!out) return st__fail(ST_ERR_INVALID_ARG, "st_manifest_read_mem: out is NULL");
    *out = NULL;
    if (!name) name = "<manifest>";
    if (!buf && n) return st__fail(ST_ERR_INVALID_ARG, "%s: NULL buffer", name);
    json_error_t je;
    json_t *root = json_loadb(buf ? buf : "", n, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return st__fail(ST_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", name, je.line,
                        je.column, je.text);
    st_manifest *m = st_calloc(1, sizeof *m);
    st_status s = m ? parse_manifest(root, name, m) : st__fail(ST_ERR_NOMEM, "%s: no memory", name);
    json_decref(root);
    if (s != ST_OK) {
        st_manifest_free(m);
        return s;
    }
    *out = m;
    return ST_OK;
}

st_status st_manifest_read(const char *path, st_manifest **out) {
    if (!out || !path) return st__fail(ST_ERR_INVALID_ARG, "st_manifest_read: NULL argument");
    *out = NULL;
    size_t pl = strlen(path);
    char *file = st_malloc(pl + 32);
    if (!file) return st__fail(ST_ERR_NOMEM, "%s: no memory", path);
    if (pl >= 5 && !strcmp(path + pl - 5, ".json"))
        snprintf(file, pl + 32, "%s", path);
    else
        snprintf(file, pl + 32, "%s/manifest.json", path);
    char *buf = NULL;
    size_t n = 0;
    st_status s = st_text_read_file(file, (size_t)1 << 30, &buf, &n);
    if (s == ST_OK) s = st_manifest_read_mem(buf, n, file, out);
    st_free(buf);
    st_free(file);
    return s;
}

st_status st_manifest_write(const char *path, const st_manifest *m) {
    if (!path || !m) return st__fail(ST_ERR_INVALID_ARG, "st_manifest_write: NULL argument");
    json_t *root = json_object();
    json_object_set_new(root, "format", json_string("strata-token-shards"));
    json_object_set_new(root, "version", json_integer(1));
    json_t *tk = json_object();
    json_object_set_new(tk, "name", json_string(m->tokenizer_name ? m->tokenizer_name : ""));
    json_object_set_new(tk, "file",
                        json_string(m->tokenizer_file ? m->tokenizer_file : "tokenizer.json"));
    json_object_set_new(tk, "sha256", json_string(m->tokenizer_sha256));
    json_object_set_new(tk, "vocab_size", json_integer(m->vocab_size));
    json_object_set_new(tk, "separator_id", json_integer(m->separator_id));
    json_object_set_new(root, "tokenizer", tk);
    json_object_set_new(root, "dtype", json_string(m->token_bytes == 2 ? "uint16" : "uint32"));
    json_t *pr = json_object();
    json_object_set_new(pr, "column", json_string(m->column ? m->column : "text"));
    json_object_set_new(pr, "val_fraction", json_real(m->val_fraction));
    json_object_set_new(pr, "shard_tokens", json_integer((json_int_t)m->shard_tokens));
    char seed[24];
    snprintf(seed, sizeof seed, "%" PRIu64, m->seed);
    json_object_set_new(pr, "seed", json_string(seed));
    json_object_set_new(root, "params", pr);
    json_t *tot = json_object();
    json_object_set_new(tot, "documents", json_integer((json_int_t)m->n_docs));
    json_object_set_new(tot, "train_tokens", json_integer((json_int_t)m->n_tokens[0]));
    json_object_set_new(tot, "val_tokens", json_integer((json_int_t)m->n_tokens[1]));
    json_object_set_new(root, "totals", tot);
    json_t *sh = json_array();
    for (int i = 0; i < m->n_shards; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "file", json_string(m->shards[i].file));
        json_object_set_new(e, "split",
                            json_string(m->shards[i].split == ST_SPLIT_VAL ? "val" : "train"));
        json_object_set_new(e, "tokens", json_integer((json_int_t)m->shards[i].n_tokens));
        json_array_append_new(sh, e);
    }
    json_object_set_new(root, "shards", sh);
    json_t *so = json_array();
    for (int i = 0; i < m->n_sources; i++) {
        const st_manifest_source *d = &m->sources[i];
        json_t *e = json_object();
        json_object_set_new(e, "path", json_string(d->path));
        json_object_set_new(e, "bytes", json_integer((json_int_t)d->n_bytes));
        json_object_set_new(e, "sha256", json_string(d->sha256));
        json_object_set_new(e, "documents", json_integer((json_int_t)d->n_docs));
        json_object_set_new(e, "tokens", json_integer((json_int_t)d->n_tokens));
        json_array_append_new(so, e);
    }
    json_object_set_new(root, "sources", so);
    char *text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text) return st__fail(ST_ERR_NOMEM, "%s: cannot serialize the manifest", path);
    size_t tl = strlen(text);
    char *withnl = st_malloc(tl + 2);
    st_status s;
    if (!withnl) {
        s = st__fail(ST_ERR_NOMEM, "%s: no memory", path);
    } else {
        memcpy(withnl, text, tl);
        withnl[tl] = '\n';
        s = st__write_file_atomic(path, withnl, tl + 1);
    }
    st_free(withnl);
    free(text);
    return s;
}
