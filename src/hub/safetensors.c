/*
 * safetensors.c — Hugging Face's safetensors format, read and written.
 *
 * Layout: u64 little-endian N, then N bytes of JSON header (an object mapping
 * each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} and an
 * optional "__metadata__" string map), then the data section; offsets are
 * relative to the data section's start. The writer pads the header with
 * spaces so the data starts at a multiple of 8 bytes, as the format's
 * reference implementation does.
 *
 * Reader: the file is mmap'd read-only (or a caller buffer is borrowed); the
 * header is parsed with jansson and every size, offset and product is checked
 * (overflow-safe) before any tensor pointer is handed out, so a hostile file
 * gives ST_ERR_FORMAT naming the file, the tensor and the fault, never a
 * crash (tests/fuzz/fuzz_safetensors.c fuzzes exactly this path). Names and
 * metadata are copied out of the JSON so the parse tree dies with open.
 * The tensor table is sorted by data offset, which also makes the overlap
 * check one linear pass.
 *
 * Ownership: the st_safetensors handle owns its copies and the mapping; the
 * tensor data pointers borrow the mapping. Writer: streams the header and the
 * data through an atomic temp file (fileio.c). Single-threaded.
 */
#include "hub_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct st_entry {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_SAFETENSORS_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;
} st_entry;

struct st_safetensors {
    char *source;
    void *map; /* mmap'd region (NULL for memory buffers) */
    size_t map_len;
    const uint8_t *data; /* start of the data section */
    uint64_t data_size;
    st_entry *t;
    int n_t;
    char **meta_k, **meta_v;
    int n_meta;
};

static const struct {
    const char *name;
    st_dtype dtype;
} k_dtypes[] = {
    {"F32", ST_F32}, {"F16", ST_F16}, {"BF16", ST_BF16}, {"I32", ST_I32}, {"I8", ST_I8},
};

static const char *dtype_to_st_name(st_dtype d) {
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++)
        if (k_dtypes[i].dtype == d) return k_dtypes[i].name;
    return NULL;
}

void st_safetensors_close(st_safetensors *f) {
    if (!f) return;
    for (int i = 0; i < f->n_t; i++) st_free(f->t[i].name);
    st_free(f->t);
    for (int i = 0; i < f->n_meta; i++) {
        st_free(f->meta_k[i]);
        st_free(f->meta_v[i]);
    }
    st_free(f->meta_k);
    st_free(f->meta_v);
    if (f->map) munmap(f->map, f->map_len);
    st_free(f->source);
    st_free(f);
}

static int cmp_entry(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* A non-negative JSON integer, or false. */
static bool json_u63(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v)) return false;
    json_int_t x = json_integer_value(v);
    if (x < 0) return false;
    *out = (uint64_t)x;
    return true;
}

static st_status parse_metadata(st_safetensors *f, json_t *meta) {
    const char *src = f->source;
    if (!json_is_object(meta))
        return st__fail(ST_ERR_FORMAT, "%s: __metadata__ is not a JSON object", src);
    size_t n = json_object_size(meta);
    f->meta_k = st_calloc(n ? n : 1, sizeof(char *));
    f->meta_v = st_calloc(n ? n : 1, sizeof(char *));
    if (!f->meta_k || !f->meta_v) return st__fail(ST_ERR_NOMEM, "%s: no memory", src);
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v))
            return st__fail(ST_ERR_FORMAT, "%s: __metadata__ value of \"%.64s\" is not a string",
                            src, k);
        f->meta_k[f->n_meta] = st_strdup(k);
        f->meta_v[f->n_meta] = st_strdup(json_string_value(v));
        f->n_meta++;
        if (!f->meta_k[f->n_meta - 1] || !f->meta_v[f->n_meta - 1])
            return st__fail(ST_ERR_NOMEM, "%s: no memory", src);
    }
    return ST_OK;
}

static st_status parse_entry(st_safetensors *f, const char *name, json_t *v, st_entry *e) {
    const char *src = f->source;
    if (!*name) return st__fail(ST_ERR_FORMAT, "%s: a tensor has an empty name", src);
    if (!json_is_object(v))
        return st__fail(ST_ERR_FORMAT, "%s: tensor \"%.64s\": entry is not a JSON object", src,
                        name);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd))
        return st__fail(ST_ERR_FORMAT, "%s: tensor \"%.64s\": dtype missing or not a string",
                        src, name);
    const char *dn = json_string_value(jd);
    bool known = false;
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++)
        if (strcmp(dn, k_dtypes[i].name) == 0) {
            e->dtype = k_dtypes[i].dtype;
            known = true;
        }
    if (!known)
        return st__fail(ST_ERR_FORMAT,
                        "%s: tensor \"%.64s\": unknown or unsupported dtype \"%.16s\" (Strata "
                        "reads F32, F16, BF16, I32, I8)",
                        src, name, dn);
    if (!json_is_array(js))
        return st__fail(ST_ERR_FORMAT, "%s: tensor \"%.64s\": shape missing or not an array",
                        src, name);
    size_t nd = json_array_size(js);
    if (nd > ST_SAFETENSORS_MAX_DIMS)
        return st__fail(ST_ERR_FORMAT, "%s: tensor \"%.64s\": %zu dimensions (at most %d)", src,
                        name, nd, ST_SAFETENSORS_MAX_DIMS);
    e->ndim = (int)nd;
    uint64_t numel = 1;
    for (size_t d = 0; d < nd; d++) {
        uint64_t x;
        if (!json_u63(json_array_get(js, d), &x))
            return st__fail(ST_ERR_FORMAT,
                            "%s: tensor \"%.64s\": shape[%zu] is not a non-negative integer",
                            src, name, d);
        e->shape[d] = (int64_t)x;
        if (__builtin_mul_overflow(numel, x, &numel) || numel > (uint64_t)INT64_MAX)
            return st__fail(ST_ERR_FORMAT, "%s: tensor \"%.64s\": shape's element count overflows",
                            src, name);
    }
    e->numel = (int64_t)numel;
    uint64_t bytes;
    if (__builtin_mul_overflow(numel, (uint64_t)st_dtype_size(e->dtype), &bytes))
        return st__fail(ST_ERR_FORMAT, "%s: tensor \"%.64s\": byte size overflows", src, name);
    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        !json_u63(json_array_get(jo, 0), &e->begin) || !json_u63(json_array_get(jo, 1), &e->end))
        return st__fail(ST_ERR_FORMAT,
                        "%s: tensor \"%.64s\": data_offsets is not [begin, end] of non-negative "
                        "integers",
                        src, name);
    if (e->begin > e->end || e->end > f->data_size)
        return st__fail(ST_ERR_FORMAT,
                        "%s: tensor \"%.64s\": data_offsets [%llu, %llu] outside the data section "
                        "of %llu bytes",
                        src, name, (unsigned long long)e->begin, (unsigned long long)e->end,
                        (unsigned long long)f->data_size);
    if (e->end - e->begin != bytes)
        return st__fail(ST_ERR_FORMAT,
                        "%s: tensor \"%.64s\": data_offsets span %llu bytes but dtype %s and its "
                        "shape need %llu",
                        src, name, (unsigned long long)(e->end - e->begin), dn,
                        (unsigned long long)bytes);
    e->name = st_strdup(name);
    if (!e->name) return st__fail(ST_ERR_NOMEM, "%s: no memory", src);
    return ST_OK;
}

static st_status parse(st_safetensors *f, const uint8_t *buf, size_t n) {
    const char *src = f->source;
    if (n < 8)
        return st__fail(ST_ERR_FORMAT, "%s: %zu bytes, shorter than the 8-byte header length",
                        src, n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > n - 8)
        return st__fail(ST_ERR_FORMAT,
                        "%s: header length %llu runs past the end of the file (%zu bytes): "
                        "truncated or not a safetensors file",
                        src, (unsigned long long)hlen, n);
    if (hlen > ST_SAFETENSORS_MAX_HEADER_BYTES)
        return st__fail(ST_ERR_FORMAT, "%s: header of %llu bytes exceeds the limit of %u", src,
                        (unsigned long long)hlen, ST_SAFETENSORS_MAX_HEADER_BYTES);
    if (hlen < 2 || buf[8] != '{')
        return st__fail(ST_ERR_FORMAT, "%s: header does not start with a JSON object", src);
    f->data = buf + 8 + hlen;
    f->data_size = n - 8 - hlen;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return st__fail(ST_ERR_FORMAT, "%s: header is not valid JSON: %s (line %d, column %d)",
                        src, jerr.text, jerr.line, jerr.column);
    st_status s = ST_OK;
    if (!json_is_object(root)) {
        s = st__fail(ST_ERR_FORMAT, "%s: header is not a JSON object", src);
        goto done;
    }
    size_t nt = json_object_size(root);
    f->t = st_calloc(nt ? nt : 1, sizeof(st_entry));
    if (!f->t) {
        s = st__fail(ST_ERR_NOMEM, "%s: no memory for %zu tensors", src, nt);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            s = parse_metadata(f, val);
        } else {
            s = parse_entry(f, key, val, &f->t[f->n_t]);
            if (s == ST_OK) f->n_t++;
        }
        if (s != ST_OK) goto done;
    }
    qsort(f->t, (size_t)f->n_t, sizeof(st_entry), cmp_entry);
    /* Overlap check over the sorted ranges (empty tensors take no bytes). */
    uint64_t end = 0;
    const char *prev = NULL;
    for (int i = 0; i < f->n_t; i++) {
        const st_entry *e = &f->t[i];
        if (e->begin == e->end) continue;
        if (prev && e->begin < end) {
            s = st__fail(ST_ERR_FORMAT, "%s: tensors \"%.64s\" and \"%.64s\" overlap in the data",
                         src, prev, e->name);
            goto done;
        }
        end = e->end;
        prev = e->name;
    }
done:
    json_decref(root);
    return s;
}

static st_status new_handle(const char *source, st_safetensors **out) {
    st_safetensors *f = st_calloc(1, sizeof *f);
    if (!f) return st__fail(ST_ERR_NOMEM, "%s: no memory", source);
    f->source = st_strdup(source);
    if (!f->source) {
        st_free(f);
        return st__fail(ST_ERR_NOMEM, "%s: no memory", source);
    }
    *out = f;
    return ST_OK;
}

st_status st_safetensors_open_memory(const void *buf, size_t n, const char *source,
                                     st_safetensors **out) {
    if (!out) return st__fail(ST_ERR_INVALID_ARG, "st_safetensors_open_memory: out is NULL");
    *out = NULL;
    if (!buf && n) return st__fail(ST_ERR_INVALID_ARG, "st_safetensors_open_memory: buf is NULL");
    st_safetensors *f;
    ST_TRY(new_handle(source ? source : "<memory>", &f));
    st_status s = parse(f, buf, n);
    if (s != ST_OK) {
        st_safetensors_close(f);
        return s;
    }
    *out = f;
    return ST_OK;
}

st_status st_safetensors_open(const char *path, st_safetensors **out) {
    if (!out || !path) return st__fail(ST_ERR_INVALID_ARG, "st_safetensors_open: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return st__fail(ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return st__fail(ST_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)sb.st_size;
    void *map = NULL;
    if (n > 0) {
        map = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            st_status s = st__fail(ST_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
            close(fd);
            return s;
        }
    }
    close(fd);
    st_safetensors *f;
    st_status s = new_handle(path, &f);
    if (s != ST_OK) {
        if (map) munmap(map, n);
        return s;
    }
    f->map = map;
    f->map_len = n;
    static const uint8_t empty[1] = {0};
    s = parse(f, map ? map : empty, n);
    if (s != ST_OK) {
        st_safetensors_close(f);
        return s;
    }
    *out = f;
    return ST_OK;
}

int st_safetensors_n_tensors(const st_safetensors *f) { return f ? f->n_t : 0; }

const char *st_safetensors_source(const st_safetensors *f) { return f ? f->source : ""; }

st_status st_safetensors_get(const st_safetensors *f, int i, st_safetensors_tensor *out) {
    if (!f || !out) return st__fail(ST_ERR_INVALID_ARG, "st_safetensors_get: NULL argument");
    if (i < 0 || i >= f->n_t)
        return st__fail(ST_ERR_BOUNDS, "%s: tensor index %d outside [0, %d)", f->source, i,
                        f->n_t);
    const st_entry *e = &f->t[i];
    memset(out, 0, sizeof *out);
    out->name = e->name;
    out->dtype = e->dtype;
    out->ndim = e->ndim;
    memcpy(out->shape, e->shape, sizeof e->shape);
    out->numel = e->numel;
    out->data = f->data + e->begin;
    out->n_bytes = (size_t)(e->end - e->begin);
    return ST_OK;
}

int st_safetensors_find(const st_safetensors *f, const char *name) {
    if (!f || !name) return -1;
    for (int i = 0; i < f->n_t; i++)
        if (strcmp(f->t[i].name, name) == 0) return i;
    return -1;
}

int st_safetensors_n_metadata(const st_safetensors *f) { return f ? f->n_meta : 0; }

void st_safetensors_metadata_at(const st_safetensors *f, int i, const char **key,
                                const char **value) {
    bool ok = f && i >= 0 && i < f->n_meta;
    if (key) *key = ok ? f->meta_k[i] : NULL;
    if (value) *value = ok ? f->meta_v[i] : NULL;
}

const char *st_safetensors_metadata(const st_safetensors *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_k[i], key) == 0) return f->meta_v[i];
    return NULL;
}

static void shape_str(const int64_t *shape, int ndim, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? "," : "", (long long)shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

st_status st_safetensors_read_into(const st_safetensors *f, const char *name, st_tensor *dst) {
    if (!f || !name || !dst)
        return st__fail(ST_ERR_INVALID_ARG, "st_safetensors_read_into: NULL argument");
    int i = st_safetensors_find(f, name);
    if (i < 0) return st__fail(ST_ERR_FORMAT, "%s: tensor \"%s\" is missing", f->source, name);
    st_safetensors_tensor t;
    ST_TRY(st_safetensors_get(f, i, &t));
    bool same = t.numel == st_tensor_numel(dst);
    if (same && !(t.ndim == 0 && dst->ndim == 1)) {
        same = t.ndim == dst->ndim;
        for (int d = 0; same && d < t.ndim; d++) same = t.shape[d] == dst->ne[d];
    }
    if (!same) {
        char a[128], b[128];
        shape_str(t.shape, t.ndim, a, sizeof a);
        shape_str(dst->ne, dst->ndim, b, sizeof b);
        return st__fail(ST_ERR_FORMAT, "%s: tensor \"%s\" has shape %s, the model expects %s",
                        f->source, name, a, b);
    }
    bool float_src = t.dtype == ST_F32 || t.dtype == ST_F16 || t.dtype == ST_BF16;
    bool float_dst = dst->dtype == ST_F32 || dst->dtype == ST_F16 || dst->dtype == ST_BF16;
    if (!(t.dtype == dst->dtype || (float_src && float_dst)))
        return st__fail(ST_ERR_FORMAT, "%s: tensor \"%s\" is %s, the model expects %s", f->source,
                        name, dtype_to_st_name(t.dtype), st_dtype_name(dst->dtype));
    if (t.dtype == dst->dtype && st_tensor_is_contiguous(dst)) {
        if (t.n_bytes) memcpy(dst->data, t.data, t.n_bytes);
        return ST_OK;
    }
    /* Convert through an aligned copy wrapped as a tensor. */
    void *tmp = st_malloc(t.n_bytes);
    if (!tmp) return st__fail(ST_ERR_NOMEM, "%s: no memory for \"%s\"", f->source, name);
    memcpy(tmp, t.data, t.n_bytes);
    st_tensor *w = NULL;
    st_status s = st_tensor_wrap(dst->ctx, t.dtype, dst->ndim, dst->ne, tmp, &w);
    if (s == ST_OK) s = st_copy_(dst, w);
    st_tensor_free(w);
    st_free(tmp);
    return s;
}

/* ---- writer ------------------------------------------------------------------------- */

/* Streams t's elements in row-major order (gathering strided views). */
static st_status write_tensor(st__atomic_file *af, const st_tensor *t) {
    size_t es = st_dtype_size(t->dtype);
    if (st_tensor_is_contiguous(t)) return st__atomic_write(af, t->data, st_tensor_nbytes(t));
    int64_t ne[4] = {1, 1, 1, 1}, nb[4] = {0, 0, 0, 0};
    int off = 4 - t->ndim;
    for (int d = 0; d < t->ndim; d++) {
        ne[off + d] = t->ne[d];
        nb[off + d] = t->nb[d];
    }
    uint8_t buf[4096];
    size_t k = 0;
    for (int64_t i0 = 0; i0 < ne[0]; i0++)
        for (int64_t i1 = 0; i1 < ne[1]; i1++)
            for (int64_t i2 = 0; i2 < ne[2]; i2++)
                for (int64_t i3 = 0; i3 < ne[3]; i3++) {
                    const uint8_t *p = (const uint8_t *)t->data + i0 * nb[0] + i1 * nb[1] +
                                       i2 * nb[2] + i3 * nb[3];
                    memcpy(buf + k, p, es);
                    k += es;
                    if (k + 8 > sizeof buf) {
                        ST_TRY(st__atomic_write(af, buf, k));
                        k = 0;
                    }
                }
    return st__atomic_write(af, buf, k);
}

static st_status build_header(const char *path, const st_safetensors_entry *entries, int n,
                              const char *const *meta, int n_meta, char **out, size_t *out_len) {
    json_t *root = json_object();
    if (!root) return st__fail(ST_ERR_NOMEM, "%s: no memory", path);
    st_status s = ST_OK;
    if (n_meta > 0) {
        json_t *m = json_object();
        if (!m || json_object_set_new(root, "__metadata__", m) != 0) {
            s = st__fail(ST_ERR_NOMEM, "%s: no memory", path);
            goto done;
        }
        for (int i = 0; i < n_meta; i++) {
            if (!meta[2 * i] || !meta[2 * i + 1]) {
                s = st__fail(ST_ERR_INVALID_ARG, "%s: metadata pair %d has a NULL string", path, i);
                goto done;
            }
            json_object_set_new(m, meta[2 * i], json_string(meta[2 * i + 1]));
        }
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const st_safetensors_entry *e = &entries[i];
        if (!e->name || !*e->name || !e->tensor) {
            s = st__fail(ST_ERR_INVALID_ARG, "%s: entry %d has no name or no tensor", path, i);
            goto done;
        }
        if (strcmp(e->name, "__metadata__") == 0 || json_object_get(root, e->name)) {
            s = st__fail(ST_ERR_INVALID_ARG, "%s: tensor name \"%s\" is reserved or repeated",
                         path, e->name);
            goto done;
        }
        const char *dn = dtype_to_st_name(e->tensor->dtype);
        if (!dn) {
            s = st__fail(ST_ERR_INVALID_ARG, "%s: tensor \"%s\" has dtype %s", path, e->name,
                         st_dtype_name(e->tensor->dtype));
            goto done;
        }
        json_t *shape = json_array();
        for (int d = 0; d < e->tensor->ndim; d++)
            json_array_append_new(shape, json_integer(e->tensor->ne[d]));
        uint64_t nbytes = st_tensor_nbytes(e->tensor);
        json_t *o = json_pack("{s:s, s:o, s:[I,I]}", "dtype", dn, "shape", shape, "data_offsets",
                              (json_int_t)off, (json_int_t)(off + nbytes));
        if (!o || json_object_set_new(root, e->name, o) != 0) {
            s = st__fail(ST_ERR_NOMEM, "%s: no memory", path);
            goto done;
        }
        off += nbytes;
    }
    char *txt = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!txt) {
        s = st__fail(ST_ERR_NOMEM, "%s: no memory", path);
        goto done;
    }
    size_t len = strlen(txt), padded = (len + 8 + 7) / 8 * 8 - 8;
    char *h = st_malloc(padded);
    if (!h) {
        free(txt);
        s = st__fail(ST_ERR_NOMEM, "%s: no memory", path);
        goto done;
    }
    memcpy(h, txt, len);
    memset(h + len, ' ', padded - len);
    free(txt);
    *out = h;
    *out_len = padded;
done:
    json_decref(root);
    return s;
}

st_status st_safetensors_save(const char *path, const st_safetensors_entry *entries, int n,
                              const char *const *meta, int n_meta) {
    if (!path || n < 0 || (n > 0 && !entries) || n_meta < 0 || (n_meta > 0 && !meta))
        return st__fail(ST_ERR_INVALID_ARG, "st_safetensors_save: bad arguments");
    char *header = NULL;
    size_t hlen = 0;
    ST_TRY(build_header(path, entries, n, meta, n_meta, &header, &hlen));
    st__atomic_file af;
    st_status s = st__atomic_open(&af, path);
    if (s != ST_OK) {
        st_free(header);
        return s;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    s = st__atomic_write(&af, len8, 8);
    if (s == ST_OK) s = st__atomic_write(&af, header, hlen);
    for (int i = 0; s == ST_OK && i < n; i++) s = write_tensor(&af, entries[i].tensor);
    st_free(header);
    if (s != ST_OK) {
        st__atomic_abort(&af);
        return s;
    }
    return st__atomic_commit(&af);
}
