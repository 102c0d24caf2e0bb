/*
 * parquet_read.c — reading one column chunk: pages, codecs, levels, values.
 *
 * st_parquet_read_column reads the chunk's bytes with one pread (bounded by
 * the chunk's compressed size, checked against the file at open), walks its
 * page headers, checks CRCs, decompresses each page into a scratch buffer
 * (snappy, zlib, zstd, lz4, brotli: Debian's libraries), decodes repetition
 * and definition levels (RLE/bit-packed hybrid) and values (PLAIN,
 * dictionary, DELTA_*, BYTE_STREAM_SPLIT) into the arrays of one
 * st_pq_column. Level and fixed-width value arrays are sized once from the
 * chunk's declared value count, which is checked against
 * params.max_decoded_bytes first; string bytes grow under the same limit.
 * Memory per call: the chunk's compressed bytes, one page's uncompressed
 * bytes and the decoded column. Encodings follow parquet-format's
 * Encodings.md. Not thread-safe per file handle.
 */
#include <brotli/decode.h>
#include <lz4.h>
#include <snappy-c.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "data/parquet_impl.h"

typedef struct pq_col_owned {
    st_pq_column pub; /* first: st_pq_column_free casts back */
    int16_t *def, *rep;
    uint8_t *vals;
    int32_t *offsets;
    uint8_t *data;
    size_t data_cap;
    int64_t *vindex;
} pq_col_owned;

typedef struct rd {
    st_parquet_file *f;
    int g, c, page;
    const st_pq_node *node;
    const pq_chunk *chunk;
    pq_col_owned *out;
    size_t width;       /* fixed value width (0 for BYTE_ARRAY) */
    int64_t expected;   /* declared level entries */
    int64_t entries;    /* decoded so far */
    size_t budget_left; /* max_decoded_bytes minus what is allocated */
    /* scratch */
    uint32_t *idx;
    size_t idx_cap;
    int64_t *tmp64a, *tmp64b;
    /* dictionary */
    bool have_dict;
    int64_t dict_n;
    uint8_t *dict_page; /* owned copy of the decoded dictionary page */
    const uint8_t *dict_fixed;
    uint32_t *dict_pos, *dict_len;
} rd;

static st_status fail(rd *r, st_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static st_status fail(rd *r, st_status code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return st__fail(code, "%s: row group %d, column '%s', page %d: %s", r->f->name, r->g,
                    r->f->col_path[r->c], r->page, msg);
}

static void *grow(void *p, size_t *cap, size_t need) {
    if (need <= *cap) return p;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n *= 2;
    void *q = st_realloc(p, n);
    if (q) *cap = n;
    return q;
}

/* ---- codecs ------------------------------------------------------------------ */

static st_status decompress(rd *r, st_pq_codec codec, const uint8_t *src, size_t n, uint8_t *dst,
                            size_t dn) {
    switch (codec) {
    case ST_PQ_UNCOMPRESSED:
        if (n != dn)
            return fail(r, ST_ERR_FORMAT, "uncompressed page of %zu bytes declares %zu", n, dn);
        memcpy(dst, src, n);
        return ST_OK;
    case ST_PQ_SNAPPY: {
        size_t len;
        if (snappy_uncompressed_length((const char *)src, n, &len) != SNAPPY_OK || len != dn)
            return fail(r, ST_ERR_FORMAT, "snappy data does not hold the declared %zu bytes", dn);
        if (snappy_uncompress((const char *)src, n, (char *)dst, &len) != SNAPPY_OK || len != dn)
            return fail(r, ST_ERR_FORMAT, "snappy data is corrupt");
        return ST_OK;
    }
    case ST_PQ_GZIP: {
        z_stream z;
        memset(&z, 0, sizeof z);
        if (inflateInit2(&z, 15 + 32) != Z_OK) return fail(r, ST_ERR_INTERNAL, "zlib init failed");
        z.next_in = (Bytef *)src;
        z.avail_in = (uInt)n;
        z.next_out = dst;
        z.avail_out = (uInt)dn;
        int zr = inflate(&z, Z_FINISH);
        size_t got = dn - z.avail_out;
        inflateEnd(&z);
        if (zr != Z_STREAM_END || got != dn)
            return fail(r, ST_ERR_FORMAT,
                        "gzip data is corrupt or does not hold the declared %zu bytes", dn);
        return ST_OK;
    }
    case ST_PQ_ZSTD: {
        size_t got = ZSTD_decompress(dst, dn, src, n);
        if (ZSTD_isError(got) || got != dn)
            return fail(r, ST_ERR_FORMAT,
                        "zstd data is corrupt or does not hold the declared %zu bytes (%s)", dn,
                        ZSTD_isError(got) ? ZSTD_getErrorName(got) : "size mismatch");
        return ST_OK;
    }
    case ST_PQ_LZ4_RAW: {
        if (n > INT32_MAX || dn > INT32_MAX) return fail(r, ST_ERR_FORMAT, "lz4 page too large");
        int got = LZ4_decompress_safe((const char *)src, (char *)dst, (int)n, (int)dn);
        if (got < 0 || (size_t)got != dn)
            return fail(r, ST_ERR_FORMAT,
                        "lz4 data is corrupt or does not hold the declared %zu bytes", dn);
        return ST_OK;
    }
    case ST_PQ_BROTLI: {
        size_t got = dn;
        if (BrotliDecoderDecompress(n, src, &got, dst) != BROTLI_DECODER_RESULT_SUCCESS ||
            got != dn)
            return fail(r, ST_ERR_FORMAT,
                        "brotli data is corrupt or does not hold the declared %zu bytes", dn);
        return ST_OK;
    }
    default:
        return fail(r, ST_ERR_UNSUPPORTED,
                    "codec %s is not supported (use SNAPPY, GZIP, ZSTD, LZ4_RAW, BROTLI)",
                    st_pq_codec_name(codec));
    }
}

/* ---- bits --------------------------------------------------------------------- */

/* bw bits at bit offset bitoff of p[0..avail); the caller has checked that
 * those bits lie inside avail. */
static inline uint64_t bits_at(const uint8_t *p, size_t avail, uint64_t bitoff, int bw) {
    if (bw == 0) return 0;
    size_t b = (size_t)(bitoff >> 3);
    int s = (int)(bitoff & 7);
    if (b + 8 <= avail && s + bw <= 64) {
        uint64_t v;
        memcpy(&v, p + b, 8);
        v >>= s;
        return bw == 64 ? v : v & ((UINT64_C(1) << bw) - 1);
    }
    uint64_t v = 0;
    int nb = 0;
    while (nb < bw) {
        uint8_t x = b < avail ? p[b] : 0;
        int take = 8 - s < bw - nb ? 8 - s : bw - nb;
        v |= (uint64_t)((x >> s) & ((1u << take) - 1)) << nb;
        nb += take;
        s = 0;
        b++;
    }
    return v;
}

static int bit_width(uint32_t max) {
    int w = 0;
    while (max)
        w++, max >>= 1;
    return w;
}

static bool uvarint(const uint8_t **pp, const uint8_t *end, uint64_t *v) {
    const uint8_t *p = *pp;
    uint64_t r = 0;
    for (int s = 0; s < 64; s += 7) {
        if (p >= end) return false;
        uint8_t b = *p++;
        r |= (uint64_t)(b & 0x7f) << s;
        if (!(b & 0x80)) {
            *pp = p;
            *v = r;
            return true;
        }
    }
    return false;
}

/* RLE/bit-packed hybrid: decodes n values of width bw (<= 32) from
 * [p, end) into out. */
static st_status hybrid(rd *r, const uint8_t *p, const uint8_t *end, int bw, uint32_t *out,
                        int64_t n, const char *what) {
    int64_t k = 0;
    size_t vbytes = (size_t)(bw + 7) / 8;
    while (k < n) {
        uint64_t h;
        if (!uvarint(&p, end, &h))
            return fail(r, ST_ERR_FORMAT,
                        "%s: RLE/bit-packed run header past the end (%lld of %lld values)", what,
                        (long long)k, (long long)n);
        if (h & 1) {
            uint64_t groups = h >> 1;
            size_t avail = (size_t)(end - p);
            if (groups > avail + 1)
                return fail(r, ST_ERR_FORMAT, "%s: bit-packed run of %llu groups past the end",
                            what, (unsigned long long)groups);
            int64_t cnt = (int64_t)groups * 8;
            int64_t take = cnt < n - k ? cnt : n - k;
            if ((uint64_t)((take * bw + 7) / 8) > avail)
                return fail(r, ST_ERR_FORMAT, "%s: bit-packed run past the end", what);
            if (bw == 0) {
                memset(out + k, 0, (size_t)take * sizeof *out);
            } else {
                for (int64_t j = 0; j < take; j++)
                    out[k + j] = (uint32_t)bits_at(p, avail, (uint64_t)j * (uint64_t)bw, bw);
            }
            k += take;
            size_t adv = (size_t)groups * (size_t)bw;
            p += adv < avail ? adv : avail;
        } else {
            uint64_t cnt = h >> 1;
            if ((size_t)(end - p) < vbytes)
                return fail(r, ST_ERR_FORMAT, "%s: RLE run value past the end", what);
            uint32_t v = 0;
            for (size_t b = 0; b < vbytes; b++)
                v |= (uint32_t)p[b] << (8 * b);
            p += vbytes;
            if (bw < 32 && (v >> bw))
                return fail(r, ST_ERR_FORMAT, "%s: RLE value %u wider than %d bits", what, v, bw);
            if (cnt == 0) return fail(r, ST_ERR_FORMAT, "%s: empty RLE run", what);
            int64_t take = cnt < (uint64_t)(n - k) ? (int64_t)cnt : n - k;
            for (int64_t j = 0; j < take; j++)
                out[k + j] = v;
            k += take;
        }
    }
    return ST_OK;
}

static st_status need_idx(rd *r, int64_t n) {
    uint32_t *q = grow(r->idx, &r->idx_cap, (size_t)(n ? n : 1) * sizeof(uint32_t));
    if (!q) return fail(r, ST_ERR_NOMEM, "out of memory");
    r->idx = q;
    return ST_OK;
}

/* Levels of n entries from [p, end) into dst (checked <= max). */
static st_status levels(rd *r, const uint8_t *p, const uint8_t *end, int16_t max, int16_t *dst,
                        int64_t n, const char *what) {
    ST_TRY(need_idx(r, n));
    ST_TRY(hybrid(r, p, end, bit_width((uint32_t)max), r->idx, n, what));
    for (int64_t i = 0; i < n; i++) {
        if (r->idx[i] > (uint32_t)max)
            return fail(r, ST_ERR_FORMAT, "%s level %u above the maximum %d", what, r->idx[i], max);
        dst[i] = (int16_t)r->idx[i];
    }
    return ST_OK;
}

/* ---- DELTA_BINARY_PACKED ------------------------------------------------------------ */

/* Decodes one DELTA_BINARY_PACKED stream at *pp holding exactly n values
 * into out (st_malloc'd by the caller, n entries); advances *pp. */
static st_status delta_binary(rd *r, const uint8_t **pp, const uint8_t *end, int64_t n,
                              int64_t *out) {
    const uint8_t *p = *pp;
    uint64_t block, n_mini, total, zz;
    if (!uvarint(&p, end, &block) || !uvarint(&p, end, &n_mini) || !uvarint(&p, end, &total) ||
        !uvarint(&p, end, &zz))
        return fail(r, ST_ERR_FORMAT, "DELTA_BINARY_PACKED header past the end");
    if (block == 0 || block % 128 || n_mini == 0 || block % n_mini || (block / n_mini) % 8 ||
        block > (1u << 20))
        return fail(r, ST_ERR_FORMAT,
                    "DELTA_BINARY_PACKED block size %llu with %llu miniblocks is invalid",
                    (unsigned long long)block, (unsigned long long)n_mini);
    if (total != (uint64_t)n)
        return fail(r, ST_ERR_FORMAT, "DELTA_BINARY_PACKED holds %llu values, the page needs %lld",
                    (unsigned long long)total, (long long)n);
    uint64_t vpm = block / n_mini;
    uint64_t prev = (zz >> 1) ^ -(zz & 1);
    int64_t got = 0;
    if (n > 0) out[got++] = (int64_t)prev;
    while (got < n) {
        uint64_t mz;
        if (!uvarint(&p, end, &mz))
            return fail(r, ST_ERR_FORMAT, "DELTA_BINARY_PACKED block past the end");
        uint64_t min_delta = (mz >> 1) ^ -(mz & 1);
        if ((uint64_t)(end - p) < n_mini)
            return fail(r, ST_ERR_FORMAT, "DELTA_BINARY_PACKED bit widths past the end");
        const uint8_t *widths = p;
        p += n_mini;
        for (uint64_t m = 0; m < n_mini && got < n; m++) {
            int bw = widths[m];
            if (bw > 64) return fail(r, ST_ERR_FORMAT, "DELTA_BINARY_PACKED bit width %d", bw);
            size_t avail = (size_t)(end - p);
            int64_t take = (int64_t)vpm < n - got ? (int64_t)vpm : n - got;
            if ((uint64_t)(((uint64_t)take * (uint64_t)bw + 7) / 8) > avail)
                return fail(r, ST_ERR_FORMAT, "DELTA_BINARY_PACKED miniblock past the end");
            for (int64_t j = 0; j < take; j++) {
                prev += min_delta + bits_at(p, avail, (uint64_t)j * (uint64_t)bw, bw);
                out[got++] = (int64_t)prev;
            }
            size_t adv = (size_t)(vpm * (uint64_t)bw / 8);
            p += adv < avail ? adv : avail;
        }
    }
    *pp = p;
    return ST_OK;
}

static st_status need_tmp(rd *r, int64_t **t, int64_t n) {
    st_free(*t);
    *t = st_malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    if (!*t) return fail(r, ST_ERR_NOMEM, "out of memory");
    return ST_OK;
}

/* ---- output ------------------------------------------------------------------------ */

static st_status data_reserve(rd *r, size_t extra) {
    pq_col_owned *o = r->out;
    size_t len = (size_t)o->offsets[o->pub.n_present];
    if (extra > INT32_MAX - len)
        return fail(r, ST_ERR_UNSUPPORTED, "column chunk holds more than 2 GiB of string bytes");
    size_t need = len + extra;
    if (need > o->data_cap) {
        /* first guess: the chunk's uncompressed size (PLAIN strings fit in it) */
        size_t n = o->data_cap ? o->data_cap : 65536;
        if (!o->data_cap && (uint64_t)r->chunk->info.uncompressed_bytes > n &&
            (uint64_t)r->chunk->info.uncompressed_bytes <= r->budget_left)
            n = (size_t)r->chunk->info.uncompressed_bytes;
        while (n < need)
            n *= 2;
        if (n - o->data_cap > r->budget_left) {
            n = o->data_cap + r->budget_left;
            if (n < need)
                return fail(r, ST_ERR_FORMAT,
                            "decoded strings exceed the %zu-byte limit (max_decoded_bytes)",
                            r->f->params.max_decoded_bytes);
        }
        uint8_t *q = st_realloc(o->data, n);
        if (!q) return fail(r, ST_ERR_NOMEM, "out of memory for %zu string bytes", n);
        r->budget_left -= n - o->data_cap;
        o->data = q;
        o->data_cap = n;
    }
    return ST_OK;
}

static inline void push_bytes(pq_col_owned *o, const uint8_t *p, size_t n) {
    int64_t k = o->pub.n_present;
    int32_t at = o->offsets[k];
    memcpy(o->data + at, p, n);
    o->offsets[k + 1] = at + (int32_t)n;
    o->pub.n_present = k + 1;
}

/* ---- values --------------------------------------------------------------------------- */

static st_status plain_values(rd *r, const uint8_t *p, const uint8_t *end, int64_t n) {
    pq_col_owned *o = r->out;
    size_t avail = (size_t)(end - p);
    st_pq_physical t = r->node->physical;
    if (t == ST_PQ_BOOLEAN) {
        if ((uint64_t)(n + 7) / 8 > avail)
            return fail(r, ST_ERR_FORMAT, "PLAIN booleans past the end of the page");
        for (int64_t i = 0; i < n; i++)
            o->vals[o->pub.n_present + i] = (p[i >> 3] >> (i & 7)) & 1;
        o->pub.n_present += n;
        return ST_OK;
    }
    if (t == ST_PQ_BYTE_ARRAY) {
        /* one pass to size, one to copy */
        const uint8_t *q = p;
        size_t total = 0;
        for (int64_t i = 0; i < n; i++) {
            if ((size_t)(end - q) < 4)
                return fail(r, ST_ERR_FORMAT, "PLAIN byte array length past the end of the page");
            uint32_t len;
            memcpy(&len, q, 4);
            q += 4;
            if (len > (size_t)(end - q))
                return fail(r, ST_ERR_FORMAT,
                            "PLAIN byte array of %u bytes past the end of the page", len);
            q += len;
            total += len;
        }
        ST_TRY(data_reserve(r, total));
        q = p;
        for (int64_t i = 0; i < n; i++) {
            uint32_t len;
            memcpy(&len, q, 4);
            push_bytes(o, q + 4, len);
            q += 4 + len;
        }
        return ST_OK;
    }
    size_t w = r->width;
    if ((uint64_t)n > avail / w)
        return fail(r, ST_ERR_FORMAT,
                    "PLAIN values: %lld of %zu bytes past the end of the page (%zu bytes)",
                    (long long)n, w, avail);
    memcpy(o->vals + (size_t)o->pub.n_present * w, p, (size_t)n * w);
    o->pub.n_present += n;
    return ST_OK;
}

static st_status dict_values(rd *r, const uint8_t *p, const uint8_t *end, int64_t n) {
    pq_col_owned *o = r->out;
    if (!r->have_dict)
        return fail(r, ST_ERR_FORMAT, "dictionary-encoded page without a dictionary page");
    if (n == 0) return ST_OK;
    if (p >= end) return fail(r, ST_ERR_FORMAT, "dictionary indices: no bit width");
    int bw = *p++;
    if (bw > 32) return fail(r, ST_ERR_FORMAT, "dictionary index bit width %d", bw);
    ST_TRY(need_idx(r, n));
    ST_TRY(hybrid(r, p, end, bw, r->idx, n, "dictionary indices"));
    const uint32_t *ix = r->idx;
    for (int64_t i = 0; i < n; i++)
        if (ix[i] >= (uint64_t)r->dict_n)
            return fail(r, ST_ERR_FORMAT,
                        "dictionary index %u out of range (the dictionary has %lld values)", ix[i],
                        (long long)r->dict_n);
    if (r->node->physical == ST_PQ_BYTE_ARRAY) {
        size_t total = 0;
        for (int64_t i = 0; i < n; i++)
            total += r->dict_len[ix[i]];
        ST_TRY(data_reserve(r, total));
        for (int64_t i = 0; i < n; i++)
            push_bytes(o, r->dict_page + r->dict_pos[ix[i]], r->dict_len[ix[i]]);
        return ST_OK;
    }
    size_t w = r->width;
    uint8_t *dst = o->vals + (size_t)o->pub.n_present * w;
    if (w == 4) {
        for (int64_t i = 0; i < n; i++)
            memcpy(dst + 4 * i, r->dict_fixed + 4 * (size_t)ix[i], 4);
    } else if (w == 8) {
        for (int64_t i = 0; i < n; i++)
            memcpy(dst + 8 * i, r->dict_fixed + 8 * (size_t)ix[i], 8);
    } else {
        for (int64_t i = 0; i < n; i++)
            memcpy(dst + w * i, r->dict_fixed + w * (size_t)ix[i], w);
    }
    o->pub.n_present += n;
    return ST_OK;
}

static st_status delta_values(rd *r, const uint8_t *p, const uint8_t *end, int64_t n) {
    pq_col_owned *o = r->out;
    st_pq_physical t = r->node->physical;
    if (t != ST_PQ_INT32 && t != ST_PQ_INT64)
        return fail(r, ST_ERR_FORMAT, "DELTA_BINARY_PACKED on a %s column", st_pq_physical_name(t));
    ST_TRY(need_tmp(r, &r->tmp64a, n));
    ST_TRY(delta_binary(r, &p, end, n, r->tmp64a));
    if (t == ST_PQ_INT32) {
        int32_t *dst = (int32_t *)(void *)o->vals + o->pub.n_present;
        for (int64_t i = 0; i < n; i++)
            dst[i] = (int32_t)(uint32_t)(uint64_t)r->tmp64a[i];
    } else {
        memcpy((int64_t *)(void *)o->vals + o->pub.n_present, r->tmp64a, (size_t)n * 8);
    }
    o->pub.n_present += n;
    return ST_OK;
}

static st_status delta_length_values(rd *r, const uint8_t *p, const uint8_t *end, int64_t n) {
    if (r->node->physical != ST_PQ_BYTE_ARRAY)
        return fail(r, ST_ERR_FORMAT, "DELTA_LENGTH_BYTE_ARRAY on a non-BYTE_ARRAY column");
    ST_TRY(need_tmp(r, &r->tmp64a, n));
    ST_TRY(delta_binary(r, &p, end, n, r->tmp64a));
    uint64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        if (r->tmp64a[i] < 0)
            return fail(r, ST_ERR_FORMAT, "negative byte array length %lld",
                        (long long)r->tmp64a[i]);
        total += (uint64_t)r->tmp64a[i];
        if (total > (uint64_t)(end - p))
            return fail(r, ST_ERR_FORMAT, "byte array lengths add up past the end of the page");
    }
    ST_TRY(data_reserve(r, (size_t)total));
    for (int64_t i = 0; i < n; i++) {
        push_bytes(r->out, p, (size_t)r->tmp64a[i]);
        p += r->tmp64a[i];
    }
    return ST_OK;
}

static st_status delta_byte_array_values(rd *r, const uint8_t *p, const uint8_t *end, int64_t n) {
    pq_col_owned *o = r->out;
    st_pq_physical t = r->node->physical;
    if (t != ST_PQ_BYTE_ARRAY && t != ST_PQ_FIXED_LEN_BYTE_ARRAY)
        return fail(r, ST_ERR_FORMAT, "DELTA_BYTE_ARRAY on a %s column", st_pq_physical_name(t));
    ST_TRY(need_tmp(r, &r->tmp64a, n));
    ST_TRY(need_tmp(r, &r->tmp64b, n));
    ST_TRY(delta_binary(r, &p, end, n, r->tmp64a)); /* prefix lengths */
    ST_TRY(delta_binary(r, &p, end, n, r->tmp64b)); /* suffix lengths */
    uint64_t total = 0, suffix_total = 0, prev_len = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t pl = r->tmp64a[i], sl = r->tmp64b[i];
        if (pl < 0 || sl < 0) return fail(r, ST_ERR_FORMAT, "negative prefix or suffix length");
        if ((uint64_t)pl > prev_len)
            return fail(r, ST_ERR_FORMAT,
                        "prefix length %lld longer than the previous value (%llu)", (long long)pl,
                        (unsigned long long)prev_len);
        suffix_total += (uint64_t)sl;
        if (suffix_total > (uint64_t)(end - p))
            return fail(r, ST_ERR_FORMAT, "suffixes add up past the end of the page");
        prev_len = (uint64_t)pl + (uint64_t)sl;
        if (t == ST_PQ_FIXED_LEN_BYTE_ARRAY && prev_len != (uint64_t)r->width)
            return fail(r, ST_ERR_FORMAT,
                        "DELTA_BYTE_ARRAY value of %llu bytes in a %zu-byte column",
                        (unsigned long long)prev_len, r->width);
        total += prev_len;
        if (total > INT32_MAX) return fail(r, ST_ERR_UNSUPPORTED, "page expands past 2 GiB");
    }
    if (t == ST_PQ_FIXED_LEN_BYTE_ARRAY) {
        uint8_t *dst = o->vals + (size_t)o->pub.n_present * r->width;
        const uint8_t *prevv = NULL;
        for (int64_t i = 0; i < n; i++) {
            size_t pl = (size_t)r->tmp64a[i], sl = (size_t)r->tmp64b[i];
            uint8_t *v = dst + (size_t)i * r->width;
            if (pl) memcpy(v, prevv, pl);
            memcpy(v + pl, p, sl);
            p += sl;
            prevv = v;
        }
        o->pub.n_present += n;
        return ST_OK;
    }
    ST_TRY(data_reserve(r, (size_t)total));
    int32_t prev_at = -1;
    for (int64_t i = 0; i < n; i++) {
        size_t pl = (size_t)r->tmp64a[i], sl = (size_t)r->tmp64b[i];
        int64_t k = o->pub.n_present;
        int32_t at = o->offsets[k];
        if (pl) memmove(o->data + at, o->data + prev_at, pl);
        memcpy(o->data + at + pl, p, sl);
        p += sl;
        o->offsets[k + 1] = at + (int32_t)(pl + sl);
        o->pub.n_present = k + 1;
        prev_at = at;
    }
    return ST_OK;
}

static st_status split_values(rd *r, const uint8_t *p, const uint8_t *end, int64_t n) {
    pq_col_owned *o = r->out;
    st_pq_physical t = r->node->physical;
    if (t == ST_PQ_BOOLEAN || t == ST_PQ_BYTE_ARRAY || t == ST_PQ_INT96)
        return fail(r, ST_ERR_FORMAT, "BYTE_STREAM_SPLIT on a %s column", st_pq_physical_name(t));
    size_t w = r->width, avail = (size_t)(end - p);
    if ((uint64_t)n > avail / w)
        return fail(r, ST_ERR_FORMAT, "BYTE_STREAM_SPLIT values past the end of the page");
    uint8_t *dst = o->vals + (size_t)o->pub.n_present * w;
    for (size_t k = 0; k < w; k++) {
        const uint8_t *s = p + k * (size_t)n;
        for (int64_t i = 0; i < n; i++)
            dst[(size_t)i * w + k] = s[i];
    }
    o->pub.n_present += n;
    return ST_OK;
}

static st_status rle_bool_values(rd *r, const uint8_t *p, const uint8_t *end, int64_t n) {
    if (r->node->physical != ST_PQ_BOOLEAN)
        return fail(r, ST_ERR_FORMAT, "RLE values on a %s column",
                    st_pq_physical_name(r->node->physical));
    if (end - p < 4) return fail(r, ST_ERR_FORMAT, "RLE booleans: length past the end");
    uint32_t len;
    memcpy(&len, p, 4);
    p += 4;
    if (len > (size_t)(end - p))
        return fail(r, ST_ERR_FORMAT, "RLE booleans: %u bytes past the end", len);
    ST_TRY(need_idx(r, n));
    ST_TRY(hybrid(r, p, p + len, 1, r->idx, n, "RLE booleans"));
    pq_col_owned *o = r->out;
    for (int64_t i = 0; i < n; i++)
        o->vals[o->pub.n_present + i] = (uint8_t)r->idx[i];
    o->pub.n_present += n;
    return ST_OK;
}

static st_status values(rd *r, int32_t enc, const uint8_t *p, const uint8_t *end, int64_t n) {
    switch (enc) {
    case ST_PQ_PLAIN:
        return plain_values(r, p, end, n);
    case ST_PQ_PLAIN_DICTIONARY:
    case ST_PQ_RLE_DICTIONARY:
        return dict_values(r, p, end, n);
    case ST_PQ_RLE:
        return rle_bool_values(r, p, end, n);
    case ST_PQ_DELTA_BINARY_PACKED:
        return delta_values(r, p, end, n);
    case ST_PQ_DELTA_LENGTH_BYTE_ARRAY:
        return delta_length_values(r, p, end, n);
    case ST_PQ_DELTA_BYTE_ARRAY:
        return delta_byte_array_values(r, p, end, n);
    case ST_PQ_BYTE_STREAM_SPLIT:
        return split_values(r, p, end, n);
    default:
        return fail(r, ST_ERR_UNSUPPORTED, "value encoding %s (%d) is not supported",
                    st_pq_encoding_name(enc), enc);
    }
}

/* ---- pages ------------------------------------------------------------------------------ */

static st_status page_scratch(rd *r, size_t n) {
    uint8_t *q = grow(r->f->page_buf, &r->f->page_cap, n ? n : 1);
    if (!q) return fail(r, ST_ERR_NOMEM, "out of memory for a %zu-byte page", n);
    r->f->page_buf = q;
    return ST_OK;
}

static st_status dictionary_page(rd *r, const pq_page_header *h, const uint8_t *raw) {
    if (r->have_dict) return fail(r, ST_ERR_FORMAT, "second dictionary page in a column chunk");
    if (r->entries) return fail(r, ST_ERR_FORMAT, "dictionary page after data pages");
    if (!h->has_dict)
        return fail(r, ST_ERR_FORMAT, "dictionary page without a dictionary page header");
    if (h->encoding != ST_PQ_PLAIN && h->encoding != ST_PQ_PLAIN_DICTIONARY)
        return fail(r, ST_ERR_UNSUPPORTED, "dictionary page encoding %s",
                    st_pq_encoding_name(h->encoding));
    if (h->num_values < 0) return fail(r, ST_ERR_FORMAT, "negative dictionary size");
    size_t un = (size_t)h->uncompressed_size;
    r->dict_page = st_malloc(un ? un : 1);
    if (!r->dict_page) return fail(r, ST_ERR_NOMEM, "out of memory for the dictionary");
    ST_TRY(decompress(r, r->chunk->info.codec, raw, (size_t)h->compressed_size, r->dict_page, un));
    int64_t n = h->num_values;
    st_pq_physical t = r->node->physical;
    if (t == ST_PQ_BOOLEAN) return fail(r, ST_ERR_UNSUPPORTED, "dictionary of booleans");
    if (t == ST_PQ_BYTE_ARRAY) {
        if ((uint64_t)n > un / 4)
            return fail(r, ST_ERR_FORMAT, "dictionary of %lld values in %zu bytes", (long long)n,
                        un);
        r->dict_pos = st_malloc((size_t)(n ? n : 1) * 4);
        r->dict_len = st_malloc((size_t)(n ? n : 1) * 4);
        if (!r->dict_pos || !r->dict_len)
            return fail(r, ST_ERR_NOMEM, "out of memory for the dictionary");
        size_t at = 0;
        for (int64_t i = 0; i < n; i++) {
            if (un - at < 4)
                return fail(r, ST_ERR_FORMAT, "dictionary value %lld past the end", (long long)i);
            uint32_t len;
            memcpy(&len, r->dict_page + at, 4);
            at += 4;
            if (len > un - at)
                return fail(r, ST_ERR_FORMAT, "dictionary value %lld of %u bytes past the end",
                            (long long)i, len);
            r->dict_pos[i] = (uint32_t)at;
            r->dict_len[i] = len;
            at += len;
        }
    } else {
        if ((uint64_t)n > un / r->width)
            return fail(r, ST_ERR_FORMAT, "dictionary of %lld values in %zu bytes", (long long)n,
                        un);
        r->dict_fixed = r->dict_page;
    }
    r->dict_n = n;
    r->have_dict = true;
    return ST_OK;
}

static st_status data_page(rd *r, const pq_page_header *h, const uint8_t *raw) {
    const st_pq_node *nd = r->node;
    pq_col_owned *o = r->out;
    bool v2 = h->type == PQ_PAGE_DATA_V2;
    if (v2 ? !h->has_data_v2 : !h->has_data)
        return fail(r, ST_ERR_FORMAT, "data page without its data page header");
    int64_t n = h->num_values;
    if (n < 0 || n > r->expected - r->entries)
        return fail(r, ST_ERR_FORMAT, "page holds %lld values; the chunk has %lld left",
                    (long long)n, (long long)(r->expected - r->entries));
    int16_t *def = o->def ? o->def + r->entries : NULL;
    int16_t *rep = o->rep ? o->rep + r->entries : NULL;
    const uint8_t *p, *end;
    size_t csize = (size_t)h->compressed_size, usize = (size_t)h->uncompressed_size;
    if (v2) {
        if (h->rep_bytes < 0 || h->def_bytes < 0 ||
            (uint64_t)h->rep_bytes + (uint64_t)h->def_bytes > csize ||
            (uint64_t)h->rep_bytes + (uint64_t)h->def_bytes > usize)
            return fail(r, ST_ERR_FORMAT, "level byte lengths %d + %d larger than the page",
                        h->rep_bytes, h->def_bytes);
        const uint8_t *lv = raw;
        if (rep) ST_TRY(levels(r, lv, lv + h->rep_bytes, nd->max_rep, rep, n, "repetition"));
        lv += h->rep_bytes;
        if (def) ST_TRY(levels(r, lv, lv + h->def_bytes, nd->max_def, def, n, "definition"));
        lv += h->def_bytes;
        size_t lvb = (size_t)(h->rep_bytes + h->def_bytes);
        if (h->is_compressed && r->chunk->info.codec != ST_PQ_UNCOMPRESSED) {
            ST_TRY(page_scratch(r, usize - lvb));
            ST_TRY(
                decompress(r, r->chunk->info.codec, lv, csize - lvb, r->f->page_buf, usize - lvb));
            p = r->f->page_buf;
            end = p + (usize - lvb);
        } else {
            if (csize != usize)
                return fail(r, ST_ERR_FORMAT, "uncompressed page sizes differ (%zu, %zu)", csize,
                            usize);
            p = lv;
            end = raw + csize;
        }
    } else {
        ST_TRY(page_scratch(r, usize));
        ST_TRY(decompress(r, r->chunk->info.codec, raw, csize, r->f->page_buf, usize));
        p = r->f->page_buf;
        end = p + usize;
        if (rep || def) {
            for (int k = 0; k < 2; k++) {
                int16_t *dst = k == 0 ? rep : def;
                if (!dst) continue;
                int32_t enc = k == 0 ? h->rep_encoding : h->def_encoding;
                if (enc != ST_PQ_RLE)
                    return fail(r, ST_ERR_UNSUPPORTED,
                                "%s levels in encoding %s (only RLE is supported)",
                                k == 0 ? "repetition" : "definition", st_pq_encoding_name(enc));
                if (end - p < 4)
                    return fail(r, ST_ERR_FORMAT, "level length past the end of the page");
                uint32_t len;
                memcpy(&len, p, 4);
                p += 4;
                if (len > (size_t)(end - p))
                    return fail(r, ST_ERR_FORMAT, "levels of %u bytes past the end of the page",
                                len);
                ST_TRY(levels(r, p, p + len, k == 0 ? nd->max_rep : nd->max_def, dst, n,
                              k == 0 ? "repetition" : "definition"));
                p += len;
            }
        }
    }
    int64_t present = n;
    if (def) {
        present = 0;
        for (int64_t i = 0; i < n; i++)
            present += def[i] == nd->max_def;
    }
    if (rep && r->entries == 0 && n > 0 && rep[0] != 0)
        return fail(r, ST_ERR_FORMAT, "the first repetition level of a chunk is %d, not 0", rep[0]);
    ST_TRY(values(r, h->encoding, p, end, present));
    r->entries += n;
    return ST_OK;
}

static st_status read_pages(rd *r, const uint8_t *buf, size_t len) {
    size_t pos = 0;
    size_t maxp = r->f->params.max_page_bytes;
    while (r->entries < r->expected) {
        if (pos >= len)
            return fail(r, ST_ERR_FORMAT, "column chunk ends after %lld of %lld values",
                        (long long)r->entries, (long long)r->expected);
        pq_page_header h;
        size_t used;
        ST_TRY(st__pq_read_page_header(buf + pos, len - pos, r->f->name, &h, &used));
        pos += used;
        if ((size_t)h.compressed_size > len - pos)
            return fail(r, ST_ERR_FORMAT, "page of %d bytes runs past the end of the column chunk",
                        h.compressed_size);
        if ((size_t)h.compressed_size > maxp || (size_t)h.uncompressed_size > maxp)
            return fail(r, ST_ERR_FORMAT, "page of %d/%d bytes is over the %zu-byte limit",
                        h.compressed_size, h.uncompressed_size, maxp);
        const uint8_t *raw = buf + pos;
        pos += (size_t)h.compressed_size;
        if (h.has_crc && r->f->params.check_crc) {
            uint32_t crc = (uint32_t)crc32(0L, raw, (uInt)h.compressed_size);
            if (crc != h.crc)
                return fail(r, ST_ERR_FORMAT, "page CRC32 mismatch (stored %08x, computed %08x)",
                            h.crc, crc);
        }
        switch (h.type) {
        case PQ_PAGE_DICTIONARY:
            ST_TRY(dictionary_page(r, &h, raw));
            break;
        case PQ_PAGE_DATA:
        case PQ_PAGE_DATA_V2:
            ST_TRY(data_page(r, &h, raw));
            break;
        case PQ_PAGE_INDEX:
            break;
        default:
            return fail(r, ST_ERR_FORMAT, "unknown page type %d", h.type);
        }
        r->page++;
    }
    return ST_OK;
}

void st_pq_column_free(st_pq_column *c) {
    if (!c) return;
    pq_col_owned *o = (pq_col_owned *)c;
    st_free(o->def);
    st_free(o->rep);
    st_free(o->vals);
    st_free(o->offsets);
    st_free(o->data);
    st_free(o->vindex);
    st_free(o);
}

static size_t width_of(const st_pq_node *n) {
    switch (n->physical) {
    case ST_PQ_BOOLEAN:
        return 1;
    case ST_PQ_INT32:
    case ST_PQ_FLOAT:
        return 4;
    case ST_PQ_INT64:
    case ST_PQ_DOUBLE:
        return 8;
    case ST_PQ_INT96:
        return 12;
    case ST_PQ_FIXED_LEN_BYTE_ARRAY:
        return (size_t)n->type_length;
    default:
        return 0;
    }
}

st_status st_parquet_read_column(st_parquet_file *f, int g, int c, st_pq_column **out) {
    if (!f || !out) return st__fail(ST_ERR_INVALID_ARG, "st_parquet_read_column: NULL argument");
    *out = NULL;
    if (g < 0 || g >= f->meta.n_row_groups || c < 0 || c >= f->n_columns)
        return st__fail(ST_ERR_BOUNDS,
                        "%s: row group %d column %d out of range (%d row groups, %d columns)",
                        f->name, g, c, f->meta.n_row_groups, f->n_columns);
    rd r;
    memset(&r, 0, sizeof r);
    r.f = f, r.g = g, r.c = c;
    r.node = &f->nodes[f->col_node[c]];
    r.chunk = &f->meta.row_groups[g].chunks[c];
    r.width = width_of(r.node);
    r.expected = r.chunk->info.num_values;
    r.budget_left = f->params.max_decoded_bytes;
    int64_t nrows = f->meta.row_groups[g].num_rows;

    /* what the declared count costs before a byte is decoded */
    uint64_t per = (r.node->max_def ? 2 : 0) + (r.node->max_rep ? 2 : 0) + (r.width ? r.width : 4) +
                   ((r.node->max_rep == 0 && r.node->max_def) ? 8 : 0);
    if ((uint64_t)r.expected > (uint64_t)r.budget_left / per)
        return st__fail(
            ST_ERR_FORMAT,
            "%s: row group %d, column '%s' declares %lld values, over the %zu-byte decode limit",
            f->name, g, f->col_path[c], (long long)r.expected, f->params.max_decoded_bytes);
    r.budget_left -= (size_t)((uint64_t)r.expected * per);

    pq_col_owned *o = st_calloc(1, sizeof *o);
    if (!o) return st__fail(ST_ERR_NOMEM, "%s: out of memory", f->name);
    r.out = o;
    st_status s = ST_OK;
    size_t ne = (size_t)(r.expected ? r.expected : 1);
    if (r.node->max_def) o->def = st_malloc(ne * 2);
    if (r.node->max_rep) o->rep = st_malloc(ne * 2);
    if (r.width)
        o->vals = st_malloc(ne * r.width);
    else
        o->offsets = st_calloc(ne + 1, 4);
    if ((r.node->max_def && !o->def) || (r.node->max_rep && !o->rep) || (r.width && !o->vals) ||
        (!r.width && !o->offsets)) {
        s = st__fail(ST_ERR_NOMEM, "%s: out of memory for column '%s'", f->name, f->col_path[c]);
        goto done;
    }
    size_t clen = (size_t)r.chunk->info.compressed_bytes;
    uint8_t *buf = grow(f->chunk_buf, &f->chunk_cap, clen ? clen : 1);
    if (!buf) {
        s = st__fail(ST_ERR_NOMEM, "%s: out of memory for a %zu-byte column chunk", f->name, clen);
        goto done;
    }
    f->chunk_buf = buf;
    s = st__pq_read_at(f, r.chunk->start, clen, buf);
    if (s == ST_OK) s = read_pages(&r, buf, clen);
    if (s != ST_OK) goto done;

    st_pq_column *pc = &o->pub;
    pc->column = c;
    pc->physical = r.node->physical;
    pc->type_length = (int32_t)r.width;
    pc->max_def = r.node->max_def;
    pc->max_rep = r.node->max_rep;
    pc->n_values = r.entries;
    int64_t rows = r.entries;
    if (o->rep) {
        rows = 0;
        for (int64_t i = 0; i < r.entries; i++)
            rows += o->rep[i] == 0;
    }
    if (rows != nrows) {
        s = st__fail(ST_ERR_FORMAT,
                     "%s: row group %d, column '%s' holds %lld rows, the row group %lld", f->name,
                     g, f->col_path[c], (long long)rows, (long long)nrows);
        goto done;
    }
    pc->n_rows = rows;
    if (!o->rep && o->def) {
        o->vindex = st_malloc(ne * sizeof(int64_t));
        if (!o->vindex) {
            s = st__fail(ST_ERR_NOMEM, "%s: out of memory", f->name);
            goto done;
        }
        int64_t k = 0;
        for (int64_t i = 0; i < r.entries; i++)
            o->vindex[i] = o->def[i] == pc->max_def ? k++ : -1;
    }
    pc->def_levels = o->def;
    pc->rep_levels = o->rep;
    pc->values = o->vals;
    pc->offsets = o->offsets;
    pc->data = o->data ? o->data : (const uint8_t *)"";
    pc->value_index = o->vindex;
done:
    st_free(r.idx);
    st_free(r.tmp64a);
    st_free(r.tmp64b);
    st_free(r.dict_page);
    st_free(r.dict_pos);
    st_free(r.dict_len);
    if (s != ST_OK) {
        st_pq_column_free(&o->pub);
        return s;
    }
    *out = &o->pub;
    return ST_OK;
}

bool st_pq_column_string(const st_pq_column *c, int64_t i, const uint8_t **p, size_t *n) {
    if (!c || i < 0 || i >= c->n_values || c->max_rep) return false;
    int64_t k = c->value_index ? c->value_index[i] : i;
    if (k < 0) return false;
    if (c->physical == ST_PQ_BYTE_ARRAY) {
        *p = c->data + c->offsets[k];
        *n = (size_t)(c->offsets[k + 1] - c->offsets[k]);
        return true;
    }
    if (c->physical == ST_PQ_FIXED_LEN_BYTE_ARRAY) {
        *p = (const uint8_t *)c->values + (size_t)k * (size_t)c->type_length;
        *n = (size_t)c->type_length;
        return true;
    }
    return false;
}

st_status st_parquet_scan_strings(st_parquet_file *f, int column, st_pq_string_fn fn, void *user) {
    if (!f || !fn) return st__fail(ST_ERR_INVALID_ARG, "st_parquet_scan_strings: NULL argument");
    if (column < 0 || column >= f->n_columns)
        return st__fail(ST_ERR_INVALID_ARG, "%s: column %d out of range", f->name, column);
    const st_pq_node *n = &f->nodes[f->col_node[column]];
    if (n->max_rep ||
        (n->physical != ST_PQ_BYTE_ARRAY && n->physical != ST_PQ_FIXED_LEN_BYTE_ARRAY))
        return st__fail(ST_ERR_INVALID_ARG, "%s: column '%s' is not a flat string column (%s%s)",
                        f->name, f->col_path[column], st_pq_physical_name(n->physical),
                        n->max_rep ? ", repeated" : "");
    int64_t row = 0;
    for (int g = 0; g < f->meta.n_row_groups; g++) {
        st_pq_column *c;
        ST_TRY(st_parquet_read_column(f, g, column, &c));
        st_status s = ST_OK;
        for (int64_t i = 0; i < c->n_values && s == ST_OK; i++) {
            const uint8_t *p = NULL;
            size_t len = 0;
            if (!st_pq_column_string(c, i, &p, &len)) p = NULL, len = 0;
            s = fn(user, row++, p, len);
        }
        st_pq_column_free(c);
        if (s != ST_OK) return s;
    }
    return ST_OK;
}
