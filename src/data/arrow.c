/*
 * arrow.c — decoded Parquet columns out through the Arrow C Data Interface.
 *
 * Each exported ArrowArray owns a small private block: the buffers it
 * allocated (validity bitmaps, spaced or converted values, offsets) and one
 * reference to the shared decoded column (colref), whose buffers zero-copy
 * arrays point into. Children are separately allocated structs with their
 * own references, so a consumer may move a child out and release it on its
 * own, as the spec allows. The reference count is atomic: releases may come
 * from any thread. Schemas own their format and name strings and children.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "data/parquet_impl.h"
#include "strata/arrow.h"

typedef struct colref {
    st_pq_column *col;
    atomic_int refs;
} colref;

static void colref_put(colref *r) {
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
        st_pq_column_free(r->col);
        st_free(r);
    }
}

/* ---- schema ------------------------------------------------------------------------ */

typedef struct schema_priv {
    char *format, *name;
} schema_priv;

static void schema_release(struct ArrowSchema *s) {
    if (!s || !s->release) return;
    for (int64_t i = 0; i < s->n_children; i++) {
        struct ArrowSchema *c = s->children[i];
        if (c && c->release) c->release(c);
        st_free(c);
    }
    st_free(s->children);
    schema_priv *p = s->private_data;
    if (p) {
        st_free(p->format);
        st_free(p->name);
        st_free(p);
    }
    s->release = NULL;
}

static st_status schema_init(struct ArrowSchema *s, const char *format, const char *name,
                             bool nullable, int n_children) {
    memset(s, 0, sizeof *s);
    schema_priv *p = st_calloc(1, sizeof *p);
    if (!p) return st__fail(ST_ERR_NOMEM, "arrow: out of memory");
    p->format = st_strdup(format);
    p->name = st_strdup(name ? name : "");
    s->private_data = p;
    s->release = schema_release;
    if (n_children) {
        s->children = st_calloc((size_t)n_children, sizeof *s->children);
        if (!s->children) return st__fail(ST_ERR_NOMEM, "arrow: out of memory");
        s->n_children = n_children;
        for (int i = 0; i < n_children; i++) {
            s->children[i] = st_calloc(1, sizeof(struct ArrowSchema));
            if (!s->children[i]) return st__fail(ST_ERR_NOMEM, "arrow: out of memory");
        }
    }
    if (!p->format || !p->name) return st__fail(ST_ERR_NOMEM, "arrow: out of memory");
    s->format = p->format;
    s->name = p->name;
    s->flags = nullable ? ARROW_FLAG_NULLABLE : 0;
    return ST_OK;
}

/* ---- array ------------------------------------------------------------------------- */

typedef struct array_priv {
    colref *ref;
    void *owned[3];
    const void *bufs[3];
} array_priv;

static void array_release(struct ArrowArray *a) {
    if (!a || !a->release) return;
    for (int64_t i = 0; i < a->n_children; i++) {
        struct ArrowArray *c = a->children[i];
        if (c && c->release) c->release(c);
        st_free(c);
    }
    st_free(a->children);
    array_priv *p = a->private_data;
    if (p) {
        for (int i = 0; i < 3; i++)
            st_free(p->owned[i]);
        colref_put(p->ref);
        st_free(p);
    }
    a->release = NULL;
}

static st_status array_init(struct ArrowArray *a, colref *ref, int n_buffers, int n_children) {
    memset(a, 0, sizeof *a);
    array_priv *p = st_calloc(1, sizeof *p);
    if (!p) return st__fail(ST_ERR_NOMEM, "arrow: out of memory");
    a->private_data = p;
    a->release = array_release;
    if (ref) {
        atomic_fetch_add(&ref->refs, 1);
        p->ref = ref;
    }
    a->n_buffers = n_buffers;
    a->buffers = p->bufs;
    if (n_children) {
        a->children = st_calloc((size_t)n_children, sizeof *a->children);
        if (!a->children) return st__fail(ST_ERR_NOMEM, "arrow: out of memory");
        a->n_children = n_children;
        for (int i = 0; i < n_children; i++) {
            a->children[i] = st_calloc(1, sizeof(struct ArrowArray));
            if (!a->children[i]) return st__fail(ST_ERR_NOMEM, "arrow: out of memory");
        }
    }
    return ST_OK;
}

static void *own(struct ArrowArray *a, int slot, size_t bytes) {
    array_priv *p = a->private_data;
    void *m = st_calloc(1, bytes ? bytes : 1);
    p->owned[slot] = m;
    p->bufs[slot] = m;
    return m;
}

static void set_buf(struct ArrowArray *a, int slot, const void *b) {
    ((array_priv *)a->private_data)->bufs[slot] = b;
}

/* ---- formats ------------------------------------------------------------------------- */

static const char unit_char[] = {'u', 'm', 'u', 'n'};

static st_status leaf_format(const st_pq_node *n, char *buf, size_t sz) {
    switch (n->logical) {
    case ST_PQ_LT_DECIMAL:
        if (n->precision < 1 || n->precision > 38)
            return st__fail(ST_ERR_UNSUPPORTED,
                            "arrow: DECIMAL precision %d of '%s' (1..38 exported)", n->precision,
                            n->name);
        snprintf(buf, sz, "d:%d,%d", n->precision, n->scale);
        return ST_OK;
    case ST_PQ_LT_DATE:
        if (n->physical == ST_PQ_INT32) {
            snprintf(buf, sz, "tdD");
            return ST_OK;
        }
        break;
    case ST_PQ_LT_TIMESTAMP:
        if (n->physical == ST_PQ_INT64) {
            snprintf(buf, sz, "ts%c:%s", unit_char[n->time_unit & 3], n->utc ? "UTC" : "");
            return ST_OK;
        }
        break;
    case ST_PQ_LT_TIME:
        if (n->physical == ST_PQ_INT32 || n->physical == ST_PQ_INT64) {
            snprintf(buf, sz, "tt%c", unit_char[n->time_unit & 3]);
            return ST_OK;
        }
        break;
    case ST_PQ_LT_INTEGER:
        if (n->physical == ST_PQ_INT32 || n->physical == ST_PQ_INT64) {
            const char *k = n->int_signed ? "csil" : "CSIL";
            int i = n->int_bits == 8 ? 0 : n->int_bits == 16 ? 1 : n->int_bits == 32 ? 2 : 3;
            snprintf(buf, sz, "%c", k[i]);
            return ST_OK;
        }
        break;
    case ST_PQ_LT_FLOAT16:
        if (n->physical == ST_PQ_FIXED_LEN_BYTE_ARRAY && n->type_length == 2) {
            snprintf(buf, sz, "e");
            return ST_OK;
        }
        break;
    default:
        break;
    }
    switch (n->physical) {
    case ST_PQ_BOOLEAN:
        snprintf(buf, sz, "b");
        return ST_OK;
    case ST_PQ_INT32:
        snprintf(buf, sz, "i");
        return ST_OK;
    case ST_PQ_INT64:
        snprintf(buf, sz, "l");
        return ST_OK;
    case ST_PQ_INT96:
        snprintf(buf, sz, "tsn:UTC");
        return ST_OK;
    case ST_PQ_FLOAT:
        snprintf(buf, sz, "f");
        return ST_OK;
    case ST_PQ_DOUBLE:
        snprintf(buf, sz, "g");
        return ST_OK;
    case ST_PQ_BYTE_ARRAY:
        snprintf(buf, sz,
                 (n->logical == ST_PQ_LT_STRING || n->logical == ST_PQ_LT_ENUM ||
                  n->logical == ST_PQ_LT_JSON)
                     ? "u"
                     : "z");
        return ST_OK;
    case ST_PQ_FIXED_LEN_BYTE_ARRAY:
        snprintf(buf, sz, "w:%d", n->type_length);
        return ST_OK;
    default:
        return st__fail(ST_ERR_UNSUPPORTED, "arrow: no format for '%s'", n->name);
    }
}

/* Shape of a top-level field: flat leaf, or list (rep node + leaf). */
typedef struct shape {
    int field, rep, leaf; /* node indices; rep -1 for flat */
} shape;

static st_status shape_of(const st_parquet_file *f, int field, shape *sh) {
    const st_pq_node *n = st_parquet_node(f, field);
    if (!n || n->parent != 0)
        return st__fail(ST_ERR_BOUNDS, "arrow: node %d is not a top-level field", field);
    sh->field = field, sh->rep = -1, sh->leaf = -1;
    if (n->physical != ST_PQ_GROUP) {
        sh->leaf = field;
        if (n->repetition == ST_PQ_REPEATED) sh->rep = field; /* bare repeated leaf */
        return ST_OK;
    }
    if (n->n_children == 1) {
        int r = st_pq_node_child(f, field, 0);
        const st_pq_node *rn = st_parquet_node(f, r);
        if (rn->repetition == ST_PQ_REPEATED) {
            if (rn->physical != ST_PQ_GROUP) {
                sh->rep = r, sh->leaf = r;
                return ST_OK;
            }
            if (rn->n_children == 1) {
                int l = st_pq_node_child(f, r, 0);
                const st_pq_node *ln = st_parquet_node(f, l);
                if (ln->physical != ST_PQ_GROUP && ln->repetition != ST_PQ_REPEATED) {
                    sh->rep = r, sh->leaf = l;
                    return ST_OK;
                }
            }
        }
    }
    return st__fail(ST_ERR_UNSUPPORTED,
                    "arrow: field '%s': only flat columns and lists of primitives are exported",
                    n->name);
}

st_status st_arrow_format(const st_parquet_file *f, int node, char *buf, size_t n) {
    if (!f || !buf || n < 16) return st__fail(ST_ERR_INVALID_ARG, "st_arrow_format: bad argument");
    shape sh;
    ST_TRY(shape_of(f, node, &sh));
    if (sh.rep >= 0) {
        snprintf(buf, n, "+l");
        return ST_OK;
    }
    return leaf_format(st_parquet_node(f, sh.leaf), buf, n);
}

/* ---- leaf arrays ------------------------------------------------------------------------ */

static __int128 be_int(const uint8_t *p, size_t n) {
    if (n == 0) return 0;
    __int128 v = (int8_t)p[0];
    for (size_t i = 1; i < n; i++)
        v = v * 256 + p[i];
    return v;
}

/* Fills a (already array_init'ed with the column's ref) with n_slots slots;
 * idx[s] is the dense value index of slot s or -1 for null (idx NULL:
 * identity). */
static st_status leaf_array(struct ArrowArray *a, const st_pq_node *nd, const st_pq_column *c,
                            int64_t n_slots, const int64_t *idx) {
    a->length = n_slots;
    int64_t nulls = 0;
    if (idx)
        for (int64_t s = 0; s < n_slots; s++)
            nulls += idx[s] < 0;
    a->null_count = nulls;
    if (nulls) {
        uint8_t *bm = own(a, 0, (size_t)(n_slots + 7) / 8);
        if (!bm) return st__fail(ST_ERR_NOMEM, "arrow: out of memory");
        for (int64_t s = 0; s < n_slots; s++)
            if (idx[s] >= 0) bm[s >> 3] |= (uint8_t)(1u << (s & 7));
    }
    bool ident = idx == NULL || nulls == 0; /* dense == spaced */
    if (ident && idx)                       /* no nulls: still check identity */
        for (int64_t s = 0; s < n_slots; s++)
            if (idx[s] != s) {
                ident = false;
                break;
            }
#define IX(s) (idx ? idx[s] : (s))
    char fmt[64];
    ST_TRY(leaf_format(nd, fmt, sizeof fmt));
    if (c->physical == ST_PQ_BYTE_ARRAY && fmt[0] != 'd') {
        a->n_buffers = 3;
        set_buf(a, 2, c->data);
        if (ident) {
            set_buf(a, 1, c->offsets);
        } else {
            int32_t *off = own(a, 1, (size_t)(n_slots + 1) * 4);
            if (!off) return st__fail(ST_ERR_NOMEM, "arrow: out of memory");
            /* dense values are in slot order, so a present slot starts where
             * the previous one ended; a null slot is empty there */
            off[0] = c->offsets[0];
            for (int64_t s = 0; s < n_slots; s++) {
                int64_t k = IX(s);
                off[s + 1] = k >= 0 ? c->offsets[k + 1] : off[s];
            }
        }
        return ST_OK;
    }
    a->n_buffers = 2;
    if (fmt[0] == 'b') {
        uint8_t *bits = own(a, 1, (size_t)(n_slots + 7) / 8);
        if (!bits) return st__fail(ST_ERR_NOMEM, "arrow: out of memory");
        const uint8_t *v = c->values;
        for (int64_t s = 0; s < n_slots; s++) {
            int64_t k = IX(s);
            if (k >= 0 && v[k]) bits[s >> 3] |= (uint8_t)(1u << (s & 7));
        }
        return ST_OK;
    }
    if (fmt[0] == 'd') {
        __int128 *out = own(a, 1, (size_t)n_slots * 16);
        if (!out) return st__fail(ST_ERR_NOMEM, "arrow: out of memory");
        for (int64_t s = 0; s < n_slots; s++) {
            int64_t k = IX(s);
            if (k < 0) continue;
            switch (c->physical) {
            case ST_PQ_INT32:
                out[s] = ((const int32_t *)c->values)[k];
                break;
            case ST_PQ_INT64:
                out[s] = ((const int64_t *)c->values)[k];
                break;
            case ST_PQ_FIXED_LEN_BYTE_ARRAY:
                out[s] = be_int((const uint8_t *)c->values + (size_t)k * (size_t)c->type_length,
                                c->type_length > 16 ? 16 : (size_t)c->type_length);
                break;
            case ST_PQ_BYTE_ARRAY: {
                int32_t o0 = c->offsets[k], o1 = c->offsets[k + 1];
                size_t len = (size_t)(o1 - o0);
                out[s] = be_int(c->data + o0, len > 16 ? 16 : len);
                break;
            }
            default:
                return st__fail(ST_ERR_UNSUPPORTED, "arrow: DECIMAL on %s",
                                st_pq_physical_name(c->physical));
            }
        }
        return ST_OK;
    }
    if (c->physical == ST_PQ_INT96) {
        int64_t *out = own(a, 1, (size_t)n_slots * 8);
        if (!out) return st__fail(ST_ERR_NOMEM, "arrow: out of memory");
        for (int64_t s = 0; s < n_slots; s++) {
            int64_t k = IX(s);
            if (k < 0) continue;
            const uint8_t *p = (const uint8_t *)c->values + 12 * (size_t)k;
            int64_t nanos;
            int32_t jd;
            memcpy(&nanos, p, 8);
            memcpy(&jd, p + 8, 4);
            out[s] = ((int64_t)jd - 2440588) * 86400LL * 1000000000LL + nanos;
        }
        return ST_OK;
    }
    if ((fmt[0] == 'c' || fmt[0] == 'C' || fmt[0] == 's' || fmt[0] == 'S') ||
        (c->physical == ST_PQ_INT32 && (fmt[0] == 'l' || fmt[0] == 'L'))) {
        size_t w = (fmt[0] == 'c' || fmt[0] == 'C') ? 1 : (fmt[0] == 's' || fmt[0] == 'S') ? 2 : 8;
        uint8_t *out = own(a, 1, (size_t)n_slots * w);
        if (!out) return st__fail(ST_ERR_NOMEM, "arrow: out of memory");
        for (int64_t s = 0; s < n_slots; s++) {
            int64_t k = IX(s);
            if (k < 0) continue;
            int64_t v = c->physical == ST_PQ_INT32 ? ((const int32_t *)c->values)[k]
                                                   : ((const int64_t *)c->values)[k];
            memcpy(out + (size_t)s * w, &v, w); /* little-endian truncation */
        }
        return ST_OK;
    }
    /* fixed width, same layout */
    size_t w = (size_t)c->type_length;
    if (ident) {
        set_buf(a, 1, c->values);
        return ST_OK;
    }
    uint8_t *out = own(a, 1, (size_t)n_slots * w);
    if (!out) return st__fail(ST_ERR_NOMEM, "arrow: out of memory");
    for (int64_t s = 0; s < n_slots; s++) {
        int64_t k = IX(s);
        if (k >= 0) memcpy(out + (size_t)s * w, (const uint8_t *)c->values + (size_t)k * w, w);
    }
#undef IX
    return ST_OK;
}

/* ---- export ------------------------------------------------------------------------------ */

static int field_of_column(const st_parquet_file *f, int column) {
    int node = st_parquet_column_node(f, column);
    while (node > 0 && st_parquet_node(f, node)->parent != 0)
        node = st_parquet_node(f, node)->parent;
    return node;
}

static st_status export_into(const st_parquet_file *f, colref *ref, struct ArrowSchema *schema,
                             struct ArrowArray *array) {
    st_pq_column *c = ref->col;
    int field = field_of_column(f, c->column);
    shape sh;
    ST_TRY(shape_of(f, field, &sh));
    const st_pq_node *fn = st_parquet_node(f, field), *leaf = st_parquet_node(f, sh.leaf);
    char fmt[64];
    if (sh.rep < 0) {
        ST_TRY(leaf_format(leaf, fmt, sizeof fmt));
        ST_TRY(schema_init(schema, fmt, fn->name, fn->repetition == ST_PQ_OPTIONAL, 0));
        ST_TRY(array_init(array, ref, 2, 0));
        return leaf_array(array, leaf, c, c->n_values, c->value_index);
    }
    if (c->max_rep != 1)
        return st__fail(ST_ERR_UNSUPPORTED, "arrow: '%s' is nested deeper than one list", fn->name);
    const st_pq_node *rn = st_parquet_node(f, sh.rep);
    /* list slots = rows; element slots = entries with def >= rn->max_def */
    int16_t list_def =
        sh.rep == sh.field ? 0 : fn->max_def; /* bare repeated leaf: the list is never null */
    int64_t n_rows = c->n_rows, n_elems = 0;
    for (int64_t i = 0; i < c->n_values; i++)
        n_elems += (c->def_levels ? c->def_levels[i] : c->max_def) >= rn->max_def;
    ST_TRY(leaf_format(leaf, fmt, sizeof fmt));
    ST_TRY(schema_init(schema, "+l", fn->name, fn->repetition == ST_PQ_OPTIONAL, 1));
    ST_TRY(
        schema_init(schema->children[0], fmt, leaf->name, leaf->repetition == ST_PQ_OPTIONAL, 0));
    ST_TRY(array_init(array, ref, 2, 1));
    array->length = n_rows;
    int32_t *off = own(array, 1, (size_t)(n_rows + 1) * 4);
    int64_t *eidx = st_malloc((size_t)(n_elems ? n_elems : 1) * sizeof(int64_t));
    if (!off || !eidx) {
        st_free(eidx);
        return st__fail(ST_ERR_NOMEM, "arrow: out of memory");
    }
    uint8_t *valid = NULL;
    int64_t row = -1, e = 0, k = 0, list_nulls = 0;
    for (int64_t i = 0; i < c->n_values; i++) {
        int16_t d = c->def_levels ? c->def_levels[i] : c->max_def;
        if (c->rep_levels[i] == 0) {
            row++;
            off[row] = (int32_t)e;
            if (d < list_def) {
                if (!valid) {
                    valid = own(array, 0, (size_t)(n_rows + 7) / 8);
                    if (!valid) {
                        st_free(eidx);
                        return st__fail(ST_ERR_NOMEM, "arrow: out of memory");
                    }
                    memset(valid, 0xff, (size_t)(n_rows + 7) / 8);
                }
                valid[row >> 3] &= (uint8_t) ~(1u << (row & 7));
                list_nulls++;
            }
        }
        if (d >= rn->max_def) eidx[e++] = d == c->max_def ? k++ : -1;
    }
    off[n_rows] = (int32_t)e;
    array->null_count = list_nulls;
    st_status s = array_init(array->children[0], ref, 2, 0);
    if (s == ST_OK) s = leaf_array(array->children[0], leaf, c, n_elems, eidx);
    st_free(eidx);
    return s;
}

st_status st_arrow_export_column(const st_parquet_file *f, st_pq_column *col,
                                 struct ArrowSchema *schema, struct ArrowArray *array) {
    if (!f || !col || !schema || !array) {
        st_pq_column_free(col);
        return st__fail(ST_ERR_INVALID_ARG, "st_arrow_export_column: NULL argument");
    }
    colref *ref = st_calloc(1, sizeof *ref);
    if (!ref) {
        st_pq_column_free(col);
        return st__fail(ST_ERR_NOMEM, "arrow: out of memory");
    }
    ref->col = col;
    atomic_init(&ref->refs, 1);
    memset(schema, 0, sizeof *schema);
    memset(array, 0, sizeof *array);
    st_status s = export_into(f, ref, schema, array);
    if (s != ST_OK) {
        if (schema->release) schema->release(schema);
        if (array->release) array->release(array);
    }
    colref_put(ref); /* the arrays hold their own references */
    return s;
}

st_status st_arrow_export_row_group(st_parquet_file *f, int g, const int *fields, int n_fields,
                                    struct ArrowSchema *schema, struct ArrowArray *array) {
    if (!f || !schema || !array)
        return st__fail(ST_ERR_INVALID_ARG, "st_arrow_export_row_group: NULL argument");
    if (g < 0 || g >= st_parquet_n_row_groups(f))
        return st__fail(ST_ERR_BOUNDS, "%s: row group %d out of range", f->name, g);
    const st_pq_node *root = st_parquet_node(f, 0);
    int nf = fields ? n_fields : root->n_children;
    memset(schema, 0, sizeof *schema);
    memset(array, 0, sizeof *array);
    st_status s = schema_init(schema, "+s", "", false, nf);
    if (s == ST_OK) s = array_init(array, NULL, 1, nf);
    if (s == ST_OK) array->length = st_parquet_row_group_rows(f, g);
    for (int i = 0; i < nf && s == ST_OK; i++) {
        int node = fields ? fields[i] : st_pq_node_child(f, 0, i);
        shape sh;
        s = shape_of(f, node, &sh);
        if (s != ST_OK) break;
        st_pq_column *c;
        s = st_parquet_read_column(f, g, st_parquet_node(f, sh.leaf)->column, &c);
        if (s != ST_OK) break;
        s = st_arrow_export_column(f, c, schema->children[i], array->children[i]);
    }
    if (s != ST_OK) {
        if (schema->release) schema->release(schema);
        if (array->release) array->release(array);
    }
    return s;
}
