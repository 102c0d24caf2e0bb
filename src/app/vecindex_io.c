/*
 * vecindex_io.c — vector files: the SIFT/TEXMEX .fvecs and .ivecs formats
 * and NumPy .npy (2-D, C order; float32 for vectors, int32/int64 for ids).
 *
 * Readers map the file and parse it with every size checked (the header
 * dictionary of .npy is a Python literal, not JSON, so it is parsed here
 * by a few bounded scans: 'descr', 'fortran_order' and 'shape' are all it
 * holds), then copy the rows out into one st_malloc'd array the caller
 * owns. Writers stream through layer 6's atomic file (temporary file,
 * fsync, rename). No shared state.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hub/hub_impl.h"
#include "vecindex_impl.h"

#define BAD(...) st__fail(ST_ERR_FORMAT, __VA_ARGS__)

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcasecmp(s + a - b, suf) == 0;
}

/* ---- .npy header ---------------------------------------------------------------- */

typedef struct npy_info {
    char descr[8];
    int64_t shape[2];
    int ndim;
    size_t data_off;
} npy_info;

/* Finds 'key': in hdr[0..n) and returns the index after the colon, or -1. */
static long npy_key(const char *h, size_t n, const char *key) {
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl + 2 <= n; i++)
        if ((h[i] == '\'' || h[i] == '"') && memcmp(h + i + 1, key, kl) == 0 &&
            h[i + 1 + kl] == h[i]) {
            size_t j = i + kl + 2;
            while (j < n && isspace((unsigned char)h[j])) j++;
            if (j < n && h[j] == ':') return (long)j + 1;
            return -1;
        }
    return -1;
}

static st_status npy_header(const uint8_t *b, size_t size, const char *name, npy_info *o) {
    if (size < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
        return BAD("%s: not a .npy file (no \\x93NUMPY magic)", name);
    int major = b[6];
    size_t hl, start;
    if (major == 1) {
        hl = (size_t)b[8] | (size_t)b[9] << 8, start = 10;
    } else if (major == 2 || major == 3) {
        if (size < 12) return BAD("%s: truncated .npy header", name);
        hl = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        start = 12;
    } else
        return BAD("%s: .npy format version %d.%d not supported (1, 2 or 3)", name, major, b[7]);
    if (hl > size - start) return BAD("%s: .npy header of %zu bytes runs past the file", name, hl);
    const char *h = (const char *)b + start;
    o->data_off = start + hl;
    long p = npy_key(h, hl, "descr");
    if (p < 0) return BAD("%s: .npy header has no 'descr'", name);
    while ((size_t)p < hl && isspace((unsigned char)h[p])) p++;
    if ((size_t)p >= hl || (h[p] != '\'' && h[p] != '"'))
        return BAD("%s: .npy 'descr' is not a string", name);
    char qc = h[p++];
    size_t dl = 0;
    while ((size_t)p < hl && h[p] != qc && dl < sizeof o->descr - 1) o->descr[dl++] = h[p++];
    o->descr[dl] = 0;
    if ((size_t)p >= hl || h[p] != qc) return BAD("%s: .npy 'descr' too long or unterminated", name);
    p = npy_key(h, hl, "fortran_order");
    if (p < 0) return BAD("%s: .npy header has no 'fortran_order'", name);
    while ((size_t)p < hl && isspace((unsigned char)h[p])) p++;
    if ((size_t)p + 4 <= hl && memcmp(h + p, "True", 4) == 0)
        return BAD("%s: Fortran-order .npy arrays are not supported (save C order)", name);
    if ((size_t)p + 5 > hl || memcmp(h + p, "False", 5) != 0)
        return BAD("%s: .npy 'fortran_order' is not False", name);
    p = npy_key(h, hl, "shape");
    if (p < 0) return BAD("%s: .npy header has no 'shape'", name);
    while ((size_t)p < hl && isspace((unsigned char)h[p])) p++;
    if ((size_t)p >= hl || h[p] != '(') return BAD("%s: .npy 'shape' is not a tuple", name);
    p++;
    o->ndim = 0;
    for (;;) {
        while ((size_t)p < hl && isspace((unsigned char)h[p])) p++;
        if ((size_t)p >= hl) return BAD("%s: .npy 'shape' unterminated", name);
        if (h[p] == ')') break;
        if (!isdigit((unsigned char)h[p])) return BAD("%s: .npy 'shape' holds a non-number", name);
        int64_t v = 0;
        while ((size_t)p < hl && isdigit((unsigned char)h[p])) {
            if (v > (INT64_MAX - 9) / 10) return BAD("%s: .npy dimension overflows", name);
            v = v * 10 + (h[p++] - '0');
        }
        if (o->ndim == 2) return BAD("%s: .npy array has more than 2 dimensions", name);
        o->shape[o->ndim++] = v;
        while ((size_t)p < hl && isspace((unsigned char)h[p])) p++;
        if ((size_t)p < hl && h[p] == ',') p++;
    }
    if (o->ndim != 2)
        return BAD("%s: .npy array has %d dimension(s); a 2-D [n, dim] array is needed", name,
                   o->ndim);
    return ST_OK;
}

/* Checks a [n, dim] matrix of elem-byte cells fits exactly in avail bytes. */
static st_status check_matrix(const char *name, int64_t n, int64_t dim, size_t elem,
                              size_t avail) {
    if (dim < 1 || dim > ST__VEC_MAX_DIM)
        return BAD("%s: dimension %lld outside 1..%d", name, (long long)dim, ST__VEC_MAX_DIM);
    size_t bytes;
    if (n < 0 || st_mul_overflow_size((size_t)n, (size_t)dim * elem, &bytes))
        return BAD("%s: %lld rows overflow", name, (long long)n);
    if (bytes != avail)
        return BAD("%s: %lld x %lld values need %zu bytes of data, the file holds %zu", name,
                   (long long)n, (long long)dim, bytes, avail);
    return ST_OK;
}

/* ---- parsing ------------------------------------------------------------------------ */

/* .fvecs / .ivecs rows: int32 d, then d 4-byte values. Returns the rows
 * and the dimension; values stay where they are (every row checked). */
static st_status xvecs_shape(const uint8_t *b, size_t size, const char *name, int64_t *n,
                             int *dim) {
    if (size < 4) return BAD("%s: %zu bytes is too short for a vecs row", name, size);
    int32_t d;
    memcpy(&d, b, 4);
    if (d < 1 || d > ST__VEC_MAX_DIM)
        return BAD("%s: first row's dimension %d outside 1..%d", name, d, ST__VEC_MAX_DIM);
    size_t row = 4 + 4 * (size_t)d;
    if (size % row)
        return BAD("%s: %zu bytes is not a whole number of %zu-byte rows (dim %d): truncated?",
                   name, size, row, d);
    int64_t rows = (int64_t)(size / row);
    for (int64_t i = 1; i < rows; i++) {
        int32_t di;
        memcpy(&di, b + (size_t)i * row, 4);
        if (di != d)
            return BAD("%s: row %lld has dimension %d, row 0 has %d", name, (long long)i, di, d);
    }
    *n = rows, *dim = d;
    return ST_OK;
}

static bool is_npy(const void *data, size_t size) {
    return size >= 6 && memcmp(data, "\x93NUMPY", 6) == 0;
}

st_status st_vec_parse(const void *data, size_t size, const char *name, int kind, float **out,
                       int64_t *n, int *dim) {
    if ((!data && size) || !out || !n || !dim)
        return st__fail(ST_ERR_INVALID_ARG, "vec_parse: NULL argument");
    *out = NULL, *n = 0, *dim = 0;
    if (!name) name = "<memory>";
    const uint8_t *b = data;
    if (kind == 0) kind = is_npy(data, size) ? 'n' : 'f';
    int64_t rows;
    int d;
    float *x;
    if (kind == 'n') {
        npy_info h;
        ST_TRY(npy_header(b, size, name, &h));
        if (strcmp(h.descr, "<f4") != 0 && strcmp(h.descr, "=f4") != 0)
            return BAD("%s: .npy dtype '%s'; vectors must be float32 ('<f4')", name, h.descr);
        ST_TRY(check_matrix(name, h.shape[0], h.shape[1], 4, size - h.data_off));
        rows = h.shape[0], d = (int)h.shape[1];
        x = st_malloc((size_t)rows * d * 4);
        if (!x) return st__fail(ST_ERR_NOMEM, "%s: no memory for %lld vectors", name, (long long)rows);
        if (rows) memcpy(x, b + h.data_off, (size_t)rows * d * 4);
    } else if (kind == 'f') {
        ST_TRY(xvecs_shape(b, size, name, &rows, &d));
        x = st_malloc((size_t)rows * d * 4);
        if (!x) return st__fail(ST_ERR_NOMEM, "%s: no memory for %lld vectors", name, (long long)rows);
        for (int64_t i = 0; i < rows; i++)
            memcpy(x + i * d, b + (size_t)i * (4 + 4 * (size_t)d) + 4, (size_t)d * 4);
    } else
        return st__fail(ST_ERR_INVALID_ARG, "vec_parse: kind '%c' is not 'f' or 'n'", kind);
    *out = x, *n = rows, *dim = d;
    return ST_OK;
}

static st_status parse_ids(const uint8_t *b, size_t size, const char *name, int kind,
                           int64_t **out, int64_t *n, int *dim) {
    int64_t rows;
    int d;
    int64_t *x;
    if (kind == 0) kind = is_npy(b, size) ? 'n' : 'i';
    if (kind == 'n') {
        npy_info h;
        ST_TRY(npy_header(b, size, name, &h));
        size_t elem = strcmp(h.descr, "<i4") == 0 ? 4 : strcmp(h.descr, "<i8") == 0 ? 8 : 0;
        if (!elem) return BAD("%s: .npy dtype '%s'; ids must be '<i4' or '<i8'", name, h.descr);
        ST_TRY(check_matrix(name, h.shape[0], h.shape[1], elem, size - h.data_off));
        rows = h.shape[0], d = (int)h.shape[1];
        x = st_malloc((size_t)rows * d * 8);
        if (!x) return st__fail(ST_ERR_NOMEM, "%s: no memory", name);
        for (int64_t i = 0; i < rows * d; i++) {
            if (elem == 4) {
                int32_t v;
                memcpy(&v, b + h.data_off + (size_t)i * 4, 4);
                x[i] = v;
            } else
                memcpy(&x[i], b + h.data_off + (size_t)i * 8, 8);
        }
    } else {
        ST_TRY(xvecs_shape(b, size, name, &rows, &d));
        x = st_malloc((size_t)rows * d * 8);
        if (!x) return st__fail(ST_ERR_NOMEM, "%s: no memory", name);
        for (int64_t i = 0; i < rows; i++)
            for (int j = 0; j < d; j++) {
                int32_t v;
                memcpy(&v, b + (size_t)i * (4 + 4 * (size_t)d) + 4 + 4 * (size_t)j, 4);
                x[i * d + j] = v;
            }
    }
    *out = x, *n = rows, *dim = d;
    return ST_OK;
}

/* Maps path read-only; *size 0 maps nothing. */
static st_status map_file(const char *path, void **map, size_t *size) {
    *map = NULL, *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return st__fail(ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return st__fail(ST_ERR_IO, "%s: not a regular file", path);
    }
    *size = (size_t)sb.st_size;
    if (*size) {
        void *m = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            return st__fail(ST_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
        }
        *map = m;
    }
    close(fd);
    return ST_OK;
}

st_status st_vec_read(const char *path, float **out, int64_t *n, int *dim) {
    if (!path || !out || !n || !dim) return st__fail(ST_ERR_INVALID_ARG, "vec_read: NULL argument");
    *out = NULL;
    void *m;
    size_t size;
    ST_TRY(map_file(path, &m, &size));
    int kind = ends_with(path, ".npy") ? 'n' : ends_with(path, ".fvecs") ? 'f' : 0;
    if (ends_with(path, ".ivecs") || ends_with(path, ".bvecs")) {
        if (m) munmap(m, size);
        return BAD("%s: a vector file must be .fvecs or .npy of float32", path);
    }
    st_status st = st_vec_parse(m, size, path, kind, out, n, dim);
    if (m) munmap(m, size);
    return st;
}

st_status st_vec_read_ids(const char *path, int64_t **out, int64_t *n, int *dim) {
    if (!path || !out || !n || !dim)
        return st__fail(ST_ERR_INVALID_ARG, "vec_read_ids: NULL argument");
    *out = NULL;
    void *m;
    size_t size;
    ST_TRY(map_file(path, &m, &size));
    int kind = ends_with(path, ".npy") ? 'n' : ends_with(path, ".ivecs") ? 'i' : 0;
    st_status st = parse_ids(m, size, path, kind, out, n, dim);
    if (m) munmap(m, size);
    return st;
}

/* ---- writers ------------------------------------------------------------------------- */

static st_status write_npy_header(st__atomic_file *af, const char *descr, int64_t n, int dim) {
    char dict[128];
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%lld, %d), }",
                       descr, (long long)n, dim);
    char hdr[192];
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    memcpy(hdr, "\x93NUMPY\x01\x00", 8);
    int hl = len + pad + 1;
    hdr[8] = (char)(hl & 0xff), hdr[9] = (char)(hl >> 8);
    memcpy(hdr + 10, dict, (size_t)len);
    memset(hdr + 10 + len, ' ', (size_t)pad);
    hdr[10 + len + pad] = '\n';
    return st__atomic_write(af, hdr, (size_t)(10 + hl));
}

st_status st_vec_write(const char *path, const float *x, int64_t n, int dim) {
    if (!path || (!x && n) || n < 0 || dim < 1 || dim > ST__VEC_MAX_DIM)
        return st__fail(ST_ERR_INVALID_ARG, "vec_write: NULL argument or bad shape");
    st__atomic_file af;
    ST_TRY(st__atomic_open(&af, path));
    st_status st;
    if (ends_with(path, ".fvecs")) {
        st = ST_OK;
        int32_t d = dim;
        for (int64_t i = 0; i < n && st == ST_OK; i++) {
            st = st__atomic_write(&af, &d, 4);
            if (st == ST_OK) st = st__atomic_write(&af, x + i * dim, (size_t)dim * 4);
        }
    } else {
        st = write_npy_header(&af, "<f4", n, dim);
        if (st == ST_OK && n) st = st__atomic_write(&af, x, (size_t)n * dim * 4);
    }
    if (st != ST_OK) {
        st__atomic_abort(&af);
        return st;
    }
    return st__atomic_commit(&af);
}

st_status st_vec_write_ids(const char *path, const int64_t *ids, int64_t n, int dim) {
    if (!path || (!ids && n) || n < 0 || dim < 1 || dim > ST__VEC_MAX_DIM)
        return st__fail(ST_ERR_INVALID_ARG, "vec_write_ids: NULL argument or bad shape");
    bool npy = ends_with(path, ".npy");
    if (!npy)
        for (int64_t i = 0; i < n * dim; i++)
            if (ids[i] < INT32_MIN || ids[i] > INT32_MAX)
                return st__fail(ST_ERR_INVALID_ARG, "%s: id %lld does not fit .ivecs (int32)",
                                path, (long long)ids[i]);
    st__atomic_file af;
    ST_TRY(st__atomic_open(&af, path));
    st_status st = ST_OK;
    if (npy) {
        st = write_npy_header(&af, "<i8", n, dim);
        if (st == ST_OK && n) st = st__atomic_write(&af, ids, (size_t)n * dim * 8);
    } else {
        int32_t *row = st_malloc((size_t)(dim + 1) * 4);
        if (!row) st = st__fail(ST_ERR_NOMEM, "%s: no memory", path);
        for (int64_t i = 0; i < n && st == ST_OK; i++) {
            row[0] = dim;
            for (int j = 0; j < dim; j++) row[1 + j] = (int32_t)ids[i * dim + j];
            st = st__atomic_write(&af, row, (size_t)(dim + 1) * 4);
        }
        st_free(row);
    }
    if (st != ST_OK) {
        st__atomic_abort(&af);
        return st;
    }
    return st__atomic_commit(&af);
}
