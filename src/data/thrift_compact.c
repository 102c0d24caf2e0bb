/*
 * thrift_compact.c — the Thrift compact protocol, as far as Parquet needs it:
 * FileMetaData (SchemaElement, LogicalType, RowGroup, ColumnChunk,
 * ColumnMetaData, Statistics, KeyValue) and PageHeader (DataPageHeader,
 * DataPageHeaderV2, DictionaryPageHeader).
 *
 * Written by hand because Debian packages no C decoder for Thrift's compact
 * protocol (libthrift-c-glib has only the binary protocol, and a GObject
 * dependency); the field ids follow parquet-format's parquet.thrift.
 *
 * Every read is bounds-checked against the buffer end; list sizes are
 * checked against the bytes left (each element takes at least one byte)
 * before anything is allocated, so a hostile footer cannot ask for more
 * memory than its own size justifies; nesting is capped at PQ_MAX_DEPTH so
 * skipping unknown fields cannot recurse without bound. Unknown fields are
 * skipped, as Thrift requires. Stateless; safe on any thread.
 */
#include <string.h>

#include "data/parquet_impl.h"

#define PQ_MAX_DEPTH 32

enum {
    T_STOP = 0,
    T_TRUE = 1,
    T_FALSE = 2,
    T_BYTE = 3,
    T_I16 = 4,
    T_I32 = 5,
    T_I64 = 6,
    T_DOUBLE = 7,
    T_BINARY = 8,
    T_LIST = 9,
    T_SET = 10,
    T_MAP = 11,
    T_STRUCT = 12
};

typedef struct tr {
    const uint8_t *p, *end;
    const char *name; /* the file, for messages */
    const char *what; /* the structure being read */
    int depth;
} tr;

static st_status bad(tr *t, const char *fault) {
    return st__fail(ST_ERR_FORMAT, "%s: malformed Parquet metadata (%s): %s", t->name, t->what,
                    fault);
}

static st_status rd_varint(tr *t, uint64_t *v) {
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (t->p >= t->end) return bad(t, "varint runs past the end");
        uint8_t b = *t->p++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return ST_OK;
        }
    }
    return bad(t, "varint longer than 10 bytes");
}

static st_status rd_i64(tr *t, int64_t *v) {
    uint64_t u;
    ST_TRY(rd_varint(t, &u));
    *v = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
    return ST_OK;
}

static st_status rd_i32(tr *t, int32_t *v) {
    int64_t x;
    ST_TRY(rd_i64(t, &x));
    if (x < INT32_MIN || x > INT32_MAX) return bad(t, "i32 out of range");
    *v = (int32_t)x;
    return ST_OK;
}

static st_status rd_binary(tr *t, const uint8_t **p, uint32_t *n) {
    uint64_t len;
    ST_TRY(rd_varint(t, &len));
    if (len > (uint64_t)(t->end - t->p)) return bad(t, "string length past the end");
    *p = t->p;
    *n = (uint32_t)len;
    t->p += len;
    return ST_OK;
}

static st_status rd_string(tr *t, char **out) {
    const uint8_t *p = NULL;
    uint32_t n = 0;
    ST_TRY(rd_binary(t, &p, &n));
    char *s = st_malloc((size_t)n + 1);
    if (!s) return st__fail(ST_ERR_NOMEM, "%s: out of memory reading metadata", t->name);
    memcpy(s, p, n);
    s[n] = 0;
    st_free(*out);
    *out = s;
    return ST_OK;
}

/* List/set header: element type and count, count checked against the bytes
 * left (every element type takes at least one byte). */
static st_status rd_list(tr *t, int *etype, uint32_t *count) {
    if (t->p >= t->end) return bad(t, "list header past the end");
    uint8_t b = *t->p++;
    uint64_t n = b >> 4;
    if (n == 15) ST_TRY(rd_varint(t, &n));
    *etype = b & 0x0f;
    if (n > (uint64_t)(t->end - t->p)) return bad(t, "list size larger than the bytes left");
    *count = (uint32_t)n;
    return ST_OK;
}

static st_status skip(tr *t, int type);

static st_status skip_struct(tr *t) {
    if (++t->depth > PQ_MAX_DEPTH) return bad(t, "nesting deeper than 32");
    int16_t last = 0;
    for (;;) {
        if (t->p >= t->end) return bad(t, "struct runs past the end");
        uint8_t b = *t->p++;
        int type = b & 0x0f;
        if (type == T_STOP) break;
        if ((b >> 4) == 0) {
            int32_t id;
            ST_TRY(rd_i32(t, &id));
            last = (int16_t)id;
        } else {
            last = (int16_t)(last + (b >> 4));
        }
        ST_TRY(skip(t, type));
    }
    t->depth--;
    return ST_OK;
}

static st_status skip(tr *t, int type) {
    uint64_t u;
    switch (type) {
    case T_TRUE:
    case T_FALSE:
        return ST_OK; /* a struct field: the value is in the type */
    case T_BYTE:
        if (t->p >= t->end) return bad(t, "byte past the end");
        t->p++;
        return ST_OK;
    case T_I16:
    case T_I32:
    case T_I64:
        return rd_varint(t, &u);
    case T_DOUBLE:
        if (t->end - t->p < 8) return bad(t, "double past the end");
        t->p += 8;
        return ST_OK;
    case T_BINARY: {
        const uint8_t *p = NULL;
        uint32_t n = 0;
        return rd_binary(t, &p, &n);
    }
    case T_LIST:
    case T_SET: {
        int et;
        uint32_t n;
        ST_TRY(rd_list(t, &et, &n));
        if (++t->depth > PQ_MAX_DEPTH) return bad(t, "nesting deeper than 32");
        for (uint32_t i = 0; i < n; i++) {
            if (et == T_TRUE || et == T_FALSE) { /* list<bool>: one byte each */
                if (t->p >= t->end) return bad(t, "bool past the end");
                t->p++;
            } else {
                ST_TRY(skip(t, et));
            }
        }
        t->depth--;
        return ST_OK;
    }
    case T_MAP: {
        ST_TRY(rd_varint(t, &u));
        if (u == 0) return ST_OK;
        if (u > (uint64_t)(t->end - t->p)) return bad(t, "map size larger than the bytes left");
        if (t->p >= t->end) return bad(t, "map header past the end");
        uint8_t kv = *t->p++;
        if (++t->depth > PQ_MAX_DEPTH) return bad(t, "nesting deeper than 32");
        for (uint64_t i = 0; i < u; i++) {
            ST_TRY(skip(t, kv >> 4));
            ST_TRY(skip(t, kv & 0x0f));
        }
        t->depth--;
        return ST_OK;
    }
    case T_STRUCT:
        return skip_struct(t);
    default:
        return bad(t, "unknown field type");
    }
}

/* Iterates the fields of a struct: returns 1 with *id and *type set, 0 at
 * the stop byte, or sets *s on failure. */
typedef struct fld {
    int16_t last;
} fld;

static st_status next_field(tr *t, fld *f, int16_t *id, int *type, bool *stop) {
    if (t->p >= t->end) return bad(t, "struct runs past the end");
    uint8_t b = *t->p++;
    *type = b & 0x0f;
    if (*type == T_STOP) {
        *stop = true;
        return ST_OK;
    }
    *stop = false;
    if ((b >> 4) == 0) {
        int32_t v;
        ST_TRY(rd_i32(t, &v));
        f->last = (int16_t)v;
    } else {
        f->last = (int16_t)(f->last + (b >> 4));
    }
    *id = f->last;
    return ST_OK;
}

static st_status want(tr *t, int type, int expect) {
    if (type == expect) return ST_OK;
    return bad(t, "field has an unexpected type");
}

static st_status rd_bool_field(tr *t, int type, bool *v) {
    if (type == T_TRUE)
        *v = true;
    else if (type == T_FALSE)
        *v = false;
    else
        return bad(t, "bool field has an unexpected type");
    return ST_OK;
}

static st_status field_i32(tr *t, int type, int32_t *v) {
    if (type != T_I32 && type != T_I16 && type != T_BYTE)
        return bad(t, "i32 field has an unexpected type");
    if (type == T_BYTE) {
        if (t->p >= t->end) return bad(t, "byte past the end");
        *v = (int8_t)*t->p++;
        return ST_OK;
    }
    return rd_i32(t, v);
}

static st_status field_i64(tr *t, int type, int64_t *v) {
    if (type != T_I64 && type != T_I32) return bad(t, "i64 field has an unexpected type");
    return rd_i64(t, v);
}

#define ENTER(t)                                                                                   \
    do {                                                                                           \
        if (++(t)->depth > PQ_MAX_DEPTH) return bad((t), "nesting deeper than 32");                \
    } while (0)
#define LEAVE(t) ((t)->depth--)

/* ---- LogicalType ---------------------------------------------------------- */

static st_status rd_time_unit(tr *t, int32_t *unit) {
    ENTER(t);
    fld f = {0};
    for (;;) {
        int16_t id = 0;
        int type = 0;
        bool stop = false;
        ST_TRY(next_field(t, &f, &id, &type, &stop));
        if (stop) break;
        if (type == T_STRUCT && id >= 1 && id <= 3) *unit = id;
        ST_TRY(skip(t, type));
    }
    LEAVE(t);
    return ST_OK;
}

static st_status rd_logical(tr *t, pq_schema_elem *e) {
    ENTER(t);
    fld f = {0};
    for (;;) {
        int16_t id = 0;
        int type = 0;
        bool stop = false;
        ST_TRY(next_field(t, &f, &id, &type, &stop));
        if (stop) break;
        if (type != T_STRUCT) {
            ST_TRY(skip(t, type));
            continue;
        }
        e->lt = id;
        if (id == 5 || id == 7 || id == 8 || id == 10) { /* DECIMAL, TIME, TIMESTAMP, INTEGER */
            ENTER(t);
            fld g = {0};
            for (;;) {
                int16_t gid = 0;
                int gt = 0;
                bool gs = false;
                ST_TRY(next_field(t, &g, &gid, &gt, &gs));
                if (gs) break;
                if (id == 5 && gid == 1)
                    ST_TRY(field_i32(t, gt, &e->lt_scale));
                else if (id == 5 && gid == 2)
                    ST_TRY(field_i32(t, gt, &e->lt_precision));
                else if ((id == 7 || id == 8) && gid == 1)
                    ST_TRY(rd_bool_field(t, gt, &e->lt_utc));
                else if ((id == 7 || id == 8) && gid == 2 && gt == T_STRUCT)
                    ST_TRY(rd_time_unit(t, &e->lt_unit));
                else if (id == 10 && gid == 1)
                    ST_TRY(field_i32(t, gt, &e->lt_bits));
                else if (id == 10 && gid == 2)
                    ST_TRY(rd_bool_field(t, gt, &e->lt_signed));
                else
                    ST_TRY(skip(t, gt));
            }
            LEAVE(t);
        } else {
            ST_TRY(skip(t, type));
        }
    }
    LEAVE(t);
    return ST_OK;
}

/* ---- SchemaElement -------------------------------------------------------- */

static st_status rd_schema_elem(tr *t, pq_schema_elem *e) {
    ENTER(t);
    fld f = {0};
    for (;;) {
        int16_t id = 0;
        int type = 0;
        bool stop = false;
        ST_TRY(next_field(t, &f, &id, &type, &stop));
        if (stop) break;
        switch (id) {
        case 1:
            ST_TRY(field_i32(t, type, &e->type));
            break;
        case 2:
            ST_TRY(field_i32(t, type, &e->type_length));
            break;
        case 3:
            ST_TRY(field_i32(t, type, &e->repetition));
            break;
        case 4:
            ST_TRY(want(t, type, T_BINARY));
            ST_TRY(rd_string(t, &e->name));
            break;
        case 5:
            ST_TRY(field_i32(t, type, &e->num_children));
            break;
        case 6:
            ST_TRY(field_i32(t, type, &e->converted_type));
            break;
        case 7:
            ST_TRY(field_i32(t, type, &e->scale));
            break;
        case 8:
            ST_TRY(field_i32(t, type, &e->precision));
            break;
        case 10:
            ST_TRY(want(t, type, T_STRUCT));
            ST_TRY(rd_logical(t, e));
            break;
        default:
            ST_TRY(skip(t, type));
            break;
        }
    }
    LEAVE(t);
    return ST_OK;
}

/* ---- Statistics ----------------------------------------------------------- */

static st_status rd_stats(tr *t, st_pq_stats *s) {
    ENTER(t);
    fld f = {0};
    const uint8_t *omin = NULL, *omax = NULL, *nmin = NULL, *nmax = NULL;
    uint32_t lomin = 0, lomax = 0, lnmin = 0, lnmax = 0;
    for (;;) {
        int16_t id = 0;
        int type = 0;
        bool stop = false;
        ST_TRY(next_field(t, &f, &id, &type, &stop));
        if (stop) break;
        switch (id) {
        case 1:
            ST_TRY(want(t, type, T_BINARY));
            ST_TRY(rd_binary(t, &omax, &lomax));
            break;
        case 2:
            ST_TRY(want(t, type, T_BINARY));
            ST_TRY(rd_binary(t, &omin, &lomin));
            break;
        case 3:
            ST_TRY(field_i64(t, type, &s->null_count));
            s->has_null_count = true;
            break;
        case 4:
            ST_TRY(field_i64(t, type, &s->distinct_count));
            s->has_distinct_count = true;
            break;
        case 5:
            ST_TRY(want(t, type, T_BINARY));
            ST_TRY(rd_binary(t, &nmax, &lnmax));
            break;
        case 6:
            ST_TRY(want(t, type, T_BINARY));
            ST_TRY(rd_binary(t, &nmin, &lnmin));
            break;
        default:
            ST_TRY(skip(t, type));
            break;
        }
    }
    /* min_value/max_value (sort-order aware) win over the deprecated min/max */
    if (nmin && nmax) {
        s->has_min_max = true;
        s->min = nmin, s->min_len = lnmin, s->max = nmax, s->max_len = lnmax;
    } else if (omin && omax) {
        s->has_min_max = true;
        s->min = omin, s->min_len = lomin, s->max = omax, s->max_len = lomax;
    }
    LEAVE(t);
    return ST_OK;
}

/* ---- ColumnMetaData / ColumnChunk / RowGroup ------------------------------- */

static st_status rd_col_meta(tr *t, pq_chunk *c) {
    ENTER(t);
    fld f = {0};
    for (;;) {
        int16_t id = 0;
        int type = 0;
        bool stop = false;
        ST_TRY(next_field(t, &f, &id, &type, &stop));
        if (stop) break;
        switch (id) {
        case 1:
            ST_TRY(field_i32(t, type, &c->type));
            break;
        case 2: {
            ST_TRY(want(t, type, T_LIST));
            int et;
            uint32_t n;
            ST_TRY(rd_list(t, &et, &n));
            if (et != T_I32) return bad(t, "encodings is not a list of i32");
            st_free(c->enc);
            c->enc = st_malloc((size_t)n * sizeof(int32_t) + 1);
            if (!c->enc) return st__fail(ST_ERR_NOMEM, "%s: out of memory", t->name);
            c->info.n_encodings = 0;
            for (uint32_t i = 0; i < n; i++) {
                ST_TRY(rd_i32(t, &c->enc[i]));
                c->info.n_encodings++;
            }
            break;
        }
        case 4: {
            int32_t v;
            ST_TRY(field_i32(t, type, &v));
            c->info.codec = (st_pq_codec)v;
            break;
        }
        case 5:
            ST_TRY(field_i64(t, type, &c->info.num_values));
            break;
        case 6:
            ST_TRY(field_i64(t, type, &c->info.uncompressed_bytes));
            break;
        case 7:
            ST_TRY(field_i64(t, type, &c->info.compressed_bytes));
            break;
        case 9:
            ST_TRY(field_i64(t, type, &c->info.data_page_offset));
            break;
        case 11:
            ST_TRY(field_i64(t, type, &c->info.dictionary_page_offset));
            break;
        case 12:
            ST_TRY(want(t, type, T_STRUCT));
            ST_TRY(rd_stats(t, &c->info.stats));
            break;
        default:
            ST_TRY(skip(t, type));
            break;
        }
    }
    c->info.encodings = c->enc;
    LEAVE(t);
    return ST_OK;
}

static st_status rd_chunk(tr *t, pq_chunk *c) {
    ENTER(t);
    fld f = {0};
    c->info.data_page_offset = -1;
    c->info.dictionary_page_offset = -1;
    c->type = -1;
    c->info.codec = (st_pq_codec)-1;
    c->info.num_values = -1;
    c->info.compressed_bytes = -1;
    for (;;) {
        int16_t id = 0;
        int type = 0;
        bool stop = false;
        ST_TRY(next_field(t, &f, &id, &type, &stop));
        if (stop) break;
        if (id == 1 && type == T_BINARY) c->has_file_path = true;
        if (id == 3) {
            ST_TRY(want(t, type, T_STRUCT));
            ST_TRY(rd_col_meta(t, c));
            c->has_meta = true;
        } else {
            ST_TRY(skip(t, type));
        }
    }
    LEAVE(t);
    return ST_OK;
}

static st_status rd_row_group(tr *t, pq_row_group *g) {
    ENTER(t);
    fld f = {0};
    g->num_rows = -1;
    for (;;) {
        int16_t id = 0;
        int type = 0;
        bool stop = false;
        ST_TRY(next_field(t, &f, &id, &type, &stop));
        if (stop) break;
        switch (id) {
        case 1: {
            ST_TRY(want(t, type, T_LIST));
            if (g->chunks) return bad(t, "row group lists its columns twice");
            int et;
            uint32_t n;
            ST_TRY(rd_list(t, &et, &n));
            if (et != T_STRUCT) return bad(t, "columns is not a list of structs");
            g->chunks = st_calloc(n ? n : 1, sizeof(pq_chunk));
            if (!g->chunks) return st__fail(ST_ERR_NOMEM, "%s: out of memory", t->name);
            for (uint32_t i = 0; i < n; i++) {
                g->n_chunks++;
                ST_TRY(rd_chunk(t, &g->chunks[i]));
            }
            break;
        }
        case 2:
            ST_TRY(field_i64(t, type, &g->total_byte_size));
            break;
        case 3:
            ST_TRY(field_i64(t, type, &g->num_rows));
            break;
        default:
            ST_TRY(skip(t, type));
            break;
        }
    }
    LEAVE(t);
    return ST_OK;
}

static st_status rd_kv(tr *t, char **key, char **value) {
    ENTER(t);
    fld f = {0};
    for (;;) {
        int16_t id = 0;
        int type = 0;
        bool stop = false;
        ST_TRY(next_field(t, &f, &id, &type, &stop));
        if (stop) break;
        if (id == 1) {
            ST_TRY(want(t, type, T_BINARY));
            ST_TRY(rd_string(t, key));
        } else if (id == 2) {
            ST_TRY(want(t, type, T_BINARY));
            ST_TRY(rd_string(t, value));
        } else {
            ST_TRY(skip(t, type));
        }
    }
    LEAVE(t);
    if (!*key) return bad(t, "key-value pair without a key");
    return ST_OK;
}

/* ---- FileMetaData ----------------------------------------------------------- */

static st_status rd_filemeta(tr *t, pq_filemeta *m) {
    fld f = {0};
    bool have_schema = false, have_rows = false, have_rgs = false;
    for (;;) {
        int16_t id = 0;
        int type = 0;
        bool stop = false;
        t->what = "FileMetaData";
        ST_TRY(next_field(t, &f, &id, &type, &stop));
        if (stop) break;
        switch (id) {
        case 1:
            ST_TRY(field_i32(t, type, &m->version));
            break;
        case 2: {
            ST_TRY(want(t, type, T_LIST));
            if (have_schema) return bad(t, "schema given twice");
            int et;
            uint32_t n;
            ST_TRY(rd_list(t, &et, &n));
            if (et != T_STRUCT) return bad(t, "schema is not a list of structs");
            m->schema = st_calloc(n ? n : 1, sizeof(pq_schema_elem));
            if (!m->schema) return st__fail(ST_ERR_NOMEM, "%s: out of memory", t->name);
            t->what = "SchemaElement";
            for (uint32_t i = 0; i < n; i++) {
                pq_schema_elem *e = &m->schema[i];
                e->type = e->type_length = e->repetition = e->num_children = -1;
                e->converted_type = -1;
                m->n_schema++;
                ST_TRY(rd_schema_elem(t, e));
            }
            have_schema = true;
            break;
        }
        case 3:
            ST_TRY(field_i64(t, type, &m->num_rows));
            have_rows = true;
            break;
        case 4: {
            ST_TRY(want(t, type, T_LIST));
            if (have_rgs) return bad(t, "row groups given twice");
            int et;
            uint32_t n;
            ST_TRY(rd_list(t, &et, &n));
            if (et != T_STRUCT) return bad(t, "row_groups is not a list of structs");
            m->row_groups = st_calloc(n ? n : 1, sizeof(pq_row_group));
            if (!m->row_groups) return st__fail(ST_ERR_NOMEM, "%s: out of memory", t->name);
            t->what = "RowGroup";
            for (uint32_t i = 0; i < n; i++) {
                m->n_row_groups++;
                ST_TRY(rd_row_group(t, &m->row_groups[i]));
            }
            have_rgs = true;
            break;
        }
        case 5: {
            ST_TRY(want(t, type, T_LIST));
            if (m->kv_keys) return bad(t, "key-value metadata given twice");
            int et;
            uint32_t n;
            ST_TRY(rd_list(t, &et, &n));
            if (et != T_STRUCT) return bad(t, "key_value_metadata is not a list of structs");
            m->kv_keys = st_calloc(n ? n : 1, sizeof(char *));
            m->kv_values = st_calloc(n ? n : 1, sizeof(char *));
            if (!m->kv_keys || !m->kv_values)
                return st__fail(ST_ERR_NOMEM, "%s: out of memory", t->name);
            t->what = "KeyValue";
            for (uint32_t i = 0; i < n; i++) {
                m->n_kv++;
                ST_TRY(rd_kv(t, &m->kv_keys[i], &m->kv_values[i]));
            }
            break;
        }
        case 6:
            ST_TRY(want(t, type, T_BINARY));
            ST_TRY(rd_string(t, &m->created_by));
            break;
        default:
            ST_TRY(skip(t, type));
            break;
        }
    }
    t->what = "FileMetaData";
    if (!have_schema || m->n_schema < 1) return bad(t, "no schema");
    if (!have_rows) return bad(t, "no num_rows");
    if (!have_rgs) return bad(t, "no row_groups");
    return ST_OK;
}

void st__pq_filemeta_clear(pq_filemeta *m) {
    if (!m) return;
    for (int i = 0; i < m->n_schema; i++)
        st_free(m->schema[i].name);
    st_free(m->schema);
    for (int i = 0; i < m->n_row_groups; i++) {
        for (int j = 0; j < m->row_groups[i].n_chunks; j++)
            st_free(m->row_groups[i].chunks[j].enc);
        st_free(m->row_groups[i].chunks);
    }
    st_free(m->row_groups);
    for (int i = 0; i < m->n_kv; i++) {
        st_free(m->kv_keys[i]);
        st_free(m->kv_values[i]);
    }
    st_free(m->kv_keys);
    st_free(m->kv_values);
    st_free(m->created_by);
    memset(m, 0, sizeof *m);
}

st_status st__pq_read_filemeta(const uint8_t *buf, size_t n, const char *name, pq_filemeta *meta) {
    memset(meta, 0, sizeof *meta);
    tr t = {buf, buf + n, name, "FileMetaData", 0};
    st_status s = rd_filemeta(&t, meta);
    if (s != ST_OK) st__pq_filemeta_clear(meta);
    return s;
}

/* ---- PageHeader --------------------------------------------------------------- */

static st_status rd_page_sub(tr *t, pq_page_header *h, int which) {
    ENTER(t);
    fld f = {0};
    for (;;) {
        int16_t id = 0;
        int type = 0;
        bool stop = false;
        ST_TRY(next_field(t, &f, &id, &type, &stop));
        if (stop) break;
        if (which == 1) { /* DataPageHeader */
            switch (id) {
            case 1:
                ST_TRY(field_i32(t, type, &h->num_values));
                break;
            case 2:
                ST_TRY(field_i32(t, type, &h->encoding));
                break;
            case 3:
                ST_TRY(field_i32(t, type, &h->def_encoding));
                break;
            case 4:
                ST_TRY(field_i32(t, type, &h->rep_encoding));
                break;
            default:
                ST_TRY(skip(t, type));
                break;
            }
        } else if (which == 2) { /* DictionaryPageHeader */
            switch (id) {
            case 1:
                ST_TRY(field_i32(t, type, &h->num_values));
                break;
            case 2:
                ST_TRY(field_i32(t, type, &h->encoding));
                break;
            default:
                ST_TRY(skip(t, type));
                break;
            }
        } else { /* DataPageHeaderV2 */
            switch (id) {
            case 1:
                ST_TRY(field_i32(t, type, &h->num_values));
                break;
            case 2:
                ST_TRY(field_i32(t, type, &h->num_nulls));
                break;
            case 3:
                ST_TRY(field_i32(t, type, &h->num_rows));
                break;
            case 4:
                ST_TRY(field_i32(t, type, &h->encoding));
                break;
            case 5:
                ST_TRY(field_i32(t, type, &h->def_bytes));
                break;
            case 6:
                ST_TRY(field_i32(t, type, &h->rep_bytes));
                break;
            case 7:
                ST_TRY(rd_bool_field(t, type, &h->is_compressed));
                break;
            default:
                ST_TRY(skip(t, type));
                break;
            }
        }
    }
    LEAVE(t);
    return ST_OK;
}

st_status st__pq_read_page_header(const uint8_t *buf, size_t n, const char *name, pq_page_header *h,
                                  size_t *used) {
    memset(h, 0, sizeof *h);
    h->type = h->uncompressed_size = h->compressed_size = -1;
    h->num_values = -1;
    h->encoding = h->def_encoding = h->rep_encoding = -1;
    h->is_compressed = true;
    tr t = {buf, buf + n, name, "PageHeader", 0};
    fld f = {0};
    for (;;) {
        int16_t id = 0;
        int type = 0;
        bool stop = false;
        ST_TRY(next_field(&t, &f, &id, &type, &stop));
        if (stop) break;
        switch (id) {
        case 1:
            ST_TRY(field_i32(&t, type, &h->type));
            break;
        case 2:
            ST_TRY(field_i32(&t, type, &h->uncompressed_size));
            break;
        case 3:
            ST_TRY(field_i32(&t, type, &h->compressed_size));
            break;
        case 4: {
            int32_t c;
            ST_TRY(field_i32(&t, type, &c));
            h->crc = (uint32_t)c;
            h->has_crc = true;
            break;
        }
        case 5:
            ST_TRY(want(&t, type, T_STRUCT));
            ST_TRY(rd_page_sub(&t, h, 1));
            h->has_data = true;
            break;
        case 7:
            ST_TRY(want(&t, type, T_STRUCT));
            ST_TRY(rd_page_sub(&t, h, 2));
            h->has_dict = true;
            break;
        case 8:
            ST_TRY(want(&t, type, T_STRUCT));
            ST_TRY(rd_page_sub(&t, h, 3));
            h->has_data_v2 = true;
            break;
        default:
            ST_TRY(skip(&t, type));
            break;
        }
    }
    if (h->type < 0 || h->uncompressed_size < 0 || h->compressed_size < 0)
        return bad(&t, "page header without type or sizes, or with negative sizes");
    *used = (size_t)(t.p - buf);
    return ST_OK;
}
