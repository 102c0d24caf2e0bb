/*
 * parquet.c — opening a Parquet file: the footer, the schema tree and the
 * metadata accessors (names, row groups, column chunk metadata).
 *
 * A st_parquet_file owns its decoded footer (pq_filemeta, thrift_compact.c),
 * the raw footer bytes (statistics point into them), the schema tree built
 * from the flat depth-first SchemaElement list, and either a file descriptor
 * (read with pread, nothing mapped, so files larger than RAM are fine) or a
 * borrowed memory buffer. Pages are read in parquet_read.c. Not thread-safe.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/parquet_impl.h"

#define PQ_MAX_SCHEMA_DEPTH 64

st_parquet_params st_parquet_default_params(void) {
    st_parquet_params p = {0};
    p.max_page_bytes = (size_t)1 << 30;
    p.max_decoded_bytes = (size_t)1 << 31;
    p.check_crc = true;
    return p;
}

st_status st__pq_read_at(st_parquet_file *f, int64_t off, size_t n, uint8_t *dst) {
    if (off < 0 || (uint64_t)off > f->size || n > f->size - (uint64_t)off)
        return st__fail(ST_ERR_FORMAT,
                        "%s: read of %zu bytes at offset %lld is past the end (%llu bytes)",
                        f->name, n, (long long)off, (unsigned long long)f->size);
    if (f->mem) {
        memcpy(dst, f->mem + off, n);
        return ST_OK;
    }
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(f->fd, dst + done, n - done, (off_t)(off + (int64_t)done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return st__fail(ST_ERR_IO, "%s: read failed at offset %lld: %s", f->name,
                            (long long)(off + (int64_t)done),
                            r < 0 ? strerror(errno) : "end of file");
        done += (size_t)r;
    }
    return ST_OK;
}

static st_pq_logical logical_of(const pq_schema_elem *e, st_pq_node *n) {
    if (e->lt) {
        switch (e->lt) {
        case 5:
            n->scale = e->lt_scale, n->precision = e->lt_precision;
            return ST_PQ_LT_DECIMAL;
        case 7:
            n->time_unit = (st_pq_time_unit)e->lt_unit;
            n->utc = e->lt_utc;
            return ST_PQ_LT_TIME;
        case 8:
            n->time_unit = (st_pq_time_unit)e->lt_unit;
            n->utc = e->lt_utc;
            return ST_PQ_LT_TIMESTAMP;
        case 10:
            n->int_bits = e->lt_bits, n->int_signed = e->lt_signed;
            return ST_PQ_LT_INTEGER;
        case 1:
        case 2:
        case 3:
        case 4:
        case 6:
        case 12:
        case 13:
        case 14:
        case 15:
            return (st_pq_logical)e->lt;
        default:
            break;
        }
    }
    switch (e->converted_type) {
    case 0:
        return ST_PQ_LT_STRING;
    case 1:
    case 2:
        return ST_PQ_LT_MAP;
    case 3:
        return ST_PQ_LT_LIST;
    case 4:
        return ST_PQ_LT_ENUM;
    case 5:
        n->scale = e->scale, n->precision = e->precision;
        return ST_PQ_LT_DECIMAL;
    case 6:
        return ST_PQ_LT_DATE;
    case 7:
        n->time_unit = ST_PQ_MILLIS, n->utc = true;
        return ST_PQ_LT_TIME;
    case 8:
        n->time_unit = ST_PQ_MICROS, n->utc = true;
        return ST_PQ_LT_TIME;
    case 9:
        n->time_unit = ST_PQ_MILLIS, n->utc = true;
        return ST_PQ_LT_TIMESTAMP;
    case 10:
        n->time_unit = ST_PQ_MICROS, n->utc = true;
        return ST_PQ_LT_TIMESTAMP;
    case 11:
    case 12:
    case 13:
    case 14:
        n->int_bits = 8 << (e->converted_type - 11), n->int_signed = false;
        return ST_PQ_LT_INTEGER;
    case 15:
    case 16:
    case 17:
    case 18:
        n->int_bits = 8 << (e->converted_type - 15), n->int_signed = true;
        return ST_PQ_LT_INTEGER;
    case 19:
        return ST_PQ_LT_JSON;
    case 20:
        return ST_PQ_LT_BSON;
    default:
        return ST_PQ_LT_NONE;
    }
}

/* Builds node idx (and its subtree) from schema element *next; depth-first. */
static st_status build_node(st_parquet_file *f, int *next, int parent, int depth) {
    pq_filemeta *m = &f->meta;
    if (depth > PQ_MAX_SCHEMA_DEPTH)
        return st__fail(ST_ERR_FORMAT, "%s: schema nested deeper than %d levels", f->name,
                        PQ_MAX_SCHEMA_DEPTH);
    if (*next >= m->n_schema)
        return st__fail(ST_ERR_FORMAT, "%s: schema declares more children than it has elements",
                        f->name);
    int idx = (*next)++;
    const pq_schema_elem *e = &m->schema[idx];
    st_pq_node *n = &f->nodes[idx];
    n->name = e->name ? e->name : "";
    n->parent = parent;
    n->column = -1;
    n->converted_type = e->converted_type;
    if (parent < 0) {
        n->repetition = ST_PQ_REQUIRED;
    } else {
        if (e->repetition < 0 || e->repetition > 2)
            return st__fail(ST_ERR_FORMAT, "%s: schema element '%s' has repetition %d", f->name,
                            n->name, e->repetition);
        n->repetition = (st_pq_repetition)e->repetition;
    }
    if (!e->name) return st__fail(ST_ERR_FORMAT, "%s: schema element %d has no name", f->name, idx);
    int16_t pd = parent < 0 ? 0 : f->nodes[parent].max_def;
    int16_t pr = parent < 0 ? 0 : f->nodes[parent].max_rep;
    n->max_def = (int16_t)(pd + (n->repetition != ST_PQ_REQUIRED));
    n->max_rep = (int16_t)(pr + (n->repetition == ST_PQ_REPEATED));
    n->logical = logical_of(e, n);
    n->type_length = e->type_length;
    bool group = e->num_children > 0 || parent < 0;
    if (group) {
        if (e->num_children < 0 || e->num_children > m->n_schema - *next)
            return st__fail(ST_ERR_FORMAT,
                            "%s: schema group '%s' declares %d children, only %d elements follow",
                            f->name, n->name, e->num_children, m->n_schema - *next);
        n->physical = ST_PQ_GROUP;
        n->n_children = e->num_children;
        n->first_child = *next;
        int start = f->n_child_slots;
        f->child_start[idx] = start;
        f->n_child_slots += e->num_children;
        for (int k = 0; k < e->num_children; k++) {
            f->child_of[start + k] = *next;
            ST_TRY(build_node(f, next, idx, depth + 1));
        }
    } else {
        if (e->type < 0 || e->type > 7)
            return st__fail(ST_ERR_FORMAT, "%s: leaf '%s' has physical type %d", f->name, n->name,
                            e->type);
        n->physical = (st_pq_physical)e->type;
        n->first_child = -1;
        if (n->physical == ST_PQ_FIXED_LEN_BYTE_ARRAY &&
            (e->type_length <= 0 || e->type_length > (1 << 24)))
            return st__fail(ST_ERR_FORMAT, "%s: FIXED_LEN_BYTE_ARRAY '%s' has type_length %d",
                            f->name, n->name, e->type_length);
        if (n->physical == ST_PQ_INT96) n->type_length = 12;
        n->column = f->n_columns++;
    }
    return ST_OK;
}

static st_status build_schema(st_parquet_file *f) {
    int ns = f->meta.n_schema;
    f->nodes = st_calloc((size_t)ns, sizeof(st_pq_node));
    f->child_start = st_calloc((size_t)ns, sizeof(int32_t));
    f->child_of = st_calloc((size_t)ns, sizeof(int32_t));
    if (!f->nodes || !f->child_start || !f->child_of)
        return st__fail(ST_ERR_NOMEM, "%s: out of memory for the schema", f->name);
    int next = 0;
    ST_TRY(build_node(f, &next, -1, 0));
    if (next != ns)
        return st__fail(ST_ERR_FORMAT, "%s: schema has %d elements but its tree holds %d", f->name,
                        ns, next);
    if (f->n_columns == 0) return st__fail(ST_ERR_FORMAT, "%s: schema has no columns", f->name);
    f->col_node = st_calloc((size_t)f->n_columns, sizeof(int32_t));
    f->col_path = st_calloc((size_t)f->n_columns, sizeof(char *));
    if (!f->col_node || !f->col_path) return st__fail(ST_ERR_NOMEM, "%s: out of memory", f->name);
    for (int i = 0; i < ns; i++) {
        if (f->nodes[i].column < 0) continue;
        int c = f->nodes[i].column;
        f->col_node[c] = i;
        size_t len = 0;
        int depth = 0;
        for (int j = i; j > 0; j = f->nodes[j].parent)
            len += strlen(f->nodes[j].name), depth++;
        len += (size_t)(depth - 1); /* the dots */
        char *p = st_malloc(len + 1);
        if (!p) return st__fail(ST_ERR_NOMEM, "%s: out of memory", f->name);
        p[len] = 0;
        size_t at = len;
        for (int j = i; j > 0; j = f->nodes[j].parent) {
            size_t l = strlen(f->nodes[j].name);
            at -= l;
            memcpy(p + at, f->nodes[j].name, l);
            if (at > 0) p[--at] = '.';
        }
        f->col_path[c] = p;
    }
    return ST_OK;
}

static st_status check_chunks(st_parquet_file *f) {
    pq_filemeta *m = &f->meta;
    if (m->num_rows < 0) return st__fail(ST_ERR_FORMAT, "%s: negative num_rows", f->name);
    int64_t total = 0;
    for (int g = 0; g < m->n_row_groups; g++) {
        pq_row_group *rg = &m->row_groups[g];
        if (rg->num_rows < 0)
            return st__fail(ST_ERR_FORMAT, "%s: row group %d has no or a negative row count",
                            f->name, g);
        if (__builtin_add_overflow(total, rg->num_rows, &total))
            return st__fail(ST_ERR_FORMAT, "%s: row counts overflow", f->name);
        if (rg->n_chunks != f->n_columns)
            return st__fail(ST_ERR_FORMAT,
                            "%s: row group %d has %d column chunks, the schema %d columns", f->name,
                            g, rg->n_chunks, f->n_columns);
        for (int c = 0; c < rg->n_chunks; c++) {
            pq_chunk *ch = &rg->chunks[c];
            const st_pq_node *n = &f->nodes[f->col_node[c]];
            if (ch->has_file_path)
                return st__fail(ST_ERR_UNSUPPORTED,
                                "%s: row group %d column '%s' lives in another file", f->name, g,
                                f->col_path[c]);
            if (!ch->has_meta)
                return st__fail(ST_ERR_UNSUPPORTED,
                                "%s: row group %d column '%s' has no plain metadata (encrypted?)",
                                f->name, g, f->col_path[c]);
            if (ch->type != (int32_t)n->physical)
                return st__fail(ST_ERR_FORMAT,
                                "%s: row group %d column '%s': chunk type %d, schema type %d",
                                f->name, g, f->col_path[c], ch->type, (int)n->physical);
            st_pq_chunk_info *in = &ch->info;
            if (in->num_values < 0 || in->compressed_bytes < 0 || in->data_page_offset < 4 ||
                (uint64_t)in->data_page_offset >= f->size)
                return st__fail(ST_ERR_FORMAT, "%s: row group %d column '%s': bad sizes or offsets",
                                f->name, g, f->col_path[c]);
            if ((int)in->codec < 0 || (int)in->codec > 7)
                return st__fail(ST_ERR_FORMAT, "%s: row group %d column '%s': unknown codec %d",
                                f->name, g, f->col_path[c], (int)in->codec);
            int64_t start = in->data_page_offset;
            if (in->dictionary_page_offset >= 4 && in->dictionary_page_offset < start)
                start = in->dictionary_page_offset;
            if ((uint64_t)in->compressed_bytes > f->size - (uint64_t)start)
                return st__fail(
                    ST_ERR_FORMAT,
                    "%s: row group %d column '%s': %lld bytes at %lld run past the end of the file",
                    f->name, g, f->col_path[c], (long long)in->compressed_bytes, (long long)start);
            ch->start = start;
            if (n->max_rep == 0 && in->num_values != rg->num_rows)
                return st__fail(
                    ST_ERR_FORMAT, "%s: row group %d column '%s' has %lld values for %lld rows",
                    f->name, g, f->col_path[c], (long long)in->num_values, (long long)rg->num_rows);
        }
    }
    if (total != m->num_rows)
        return st__fail(ST_ERR_FORMAT, "%s: row groups hold %lld rows, the footer says %lld",
                        f->name, (long long)total, (long long)m->num_rows);
    return ST_OK;
}

static st_status open_common(st_parquet_file *f, const st_parquet_params *params) {
    f->params = params ? *params : st_parquet_default_params();
    if (!f->params.max_page_bytes) f->params.max_page_bytes = (size_t)1 << 30;
    if (!f->params.max_decoded_bytes) f->params.max_decoded_bytes = (size_t)1 << 31;
    uint8_t tail[8], head[4];
    if (f->size < 12)
        return st__fail(ST_ERR_FORMAT, "%s: %llu bytes is too short for a Parquet file", f->name,
                        (unsigned long long)f->size);
    ST_TRY(st__pq_read_at(f, 0, 4, head));
    ST_TRY(st__pq_read_at(f, (int64_t)f->size - 8, 8, tail));
    if (memcmp(tail + 4, "PARE", 4) == 0)
        return st__fail(ST_ERR_UNSUPPORTED, "%s: encrypted Parquet footers are not supported",
                        f->name);
    if (memcmp(head, "PAR1", 4) != 0 || memcmp(tail + 4, "PAR1", 4) != 0)
        return st__fail(ST_ERR_FORMAT, "%s: not a Parquet file (no PAR1 magic at start and end)",
                        f->name);
    uint32_t flen = (uint32_t)tail[0] | (uint32_t)tail[1] << 8 | (uint32_t)tail[2] << 16 |
                    (uint32_t)tail[3] << 24;
    if ((uint64_t)flen > f->size - 12)
        return st__fail(ST_ERR_FORMAT,
                        "%s: footer length %u is past the start of the file (%llu bytes)", f->name,
                        flen, (unsigned long long)f->size);
    f->footer = st_malloc(flen ? flen : 1);
    if (!f->footer)
        return st__fail(ST_ERR_NOMEM, "%s: out of memory for a %u-byte footer", f->name, flen);
    ST_TRY(st__pq_read_at(f, (int64_t)(f->size - 8 - flen), flen, f->footer));
    ST_TRY(st__pq_read_filemeta(f->footer, flen, f->name, &f->meta));
    f->have_meta = true;
    ST_TRY(build_schema(f));
    ST_TRY(check_chunks(f));
    return ST_OK;
}

st_status st_parquet_open(const char *path, const st_parquet_params *params,
                          st_parquet_file **out) {
    if (!path || !out) return st__fail(ST_ERR_INVALID_ARG, "st_parquet_open: NULL argument");
    *out = NULL;
    st_parquet_file *f = st_calloc(1, sizeof *f);
    if (!f) return st__fail(ST_ERR_NOMEM, "%s: out of memory", path);
    f->fd = -1;
    f->name = st_strdup(path);
    if (!f->name) {
        st_free(f);
        return st__fail(ST_ERR_NOMEM, "%s: out of memory", path);
    }
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat stt;
    if (f->fd < 0 || fstat(f->fd, &stt) != 0) {
        st_status s = st__fail(ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        st_parquet_close(f);
        return s;
    }
    if (!S_ISREG(stt.st_mode)) {
        st_parquet_close(f);
        return st__fail(ST_ERR_IO, "%s: not a regular file", path);
    }
    f->size = (uint64_t)stt.st_size;
    st_status s = open_common(f, params);
    if (s != ST_OK) {
        st_parquet_close(f);
        return s;
    }
    *out = f;
    return ST_OK;
}

st_status st_parquet_open_memory(const void *data, size_t n_bytes, const char *name,
                                 const st_parquet_params *params, st_parquet_file **out) {
    if ((!data && n_bytes) || !out)
        return st__fail(ST_ERR_INVALID_ARG, "st_parquet_open_memory: NULL argument");
    *out = NULL;
    st_parquet_file *f = st_calloc(1, sizeof *f);
    if (!f) return st__fail(ST_ERR_NOMEM, "out of memory");
    f->fd = -1;
    f->name = st_strdup(name ? name : "<memory>");
    f->mem = data ? data : (const uint8_t *)"";
    f->size = n_bytes;
    st_status s = f->name ? open_common(f, params) : st__fail(ST_ERR_NOMEM, "out of memory");
    if (s != ST_OK) {
        st_parquet_close(f);
        return s;
    }
    *out = f;
    return ST_OK;
}

void st_parquet_close(st_parquet_file *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    if (f->col_path)
        for (int i = 0; i < f->n_columns; i++)
            st_free(f->col_path[i]);
    st_free(f->col_path);
    st_free(f->col_node);
    st_free(f->nodes);
    st_free(f->child_start);
    st_free(f->child_of);
    st__pq_filemeta_clear(&f->meta);
    st_free(f->footer);
    st_free(f->chunk_buf);
    st_free(f->page_buf);
    st_free(f->name);
    st_free(f);
}

int64_t st_parquet_n_rows(const st_parquet_file *f) {
    return f->meta.num_rows;
}
int st_parquet_n_row_groups(const st_parquet_file *f) {
    return f->meta.n_row_groups;
}
int64_t st_parquet_row_group_rows(const st_parquet_file *f, int g) {
    return g >= 0 && g < f->meta.n_row_groups ? f->meta.row_groups[g].num_rows : -1;
}
int64_t st_parquet_row_group_bytes(const st_parquet_file *f, int g) {
    return g >= 0 && g < f->meta.n_row_groups ? f->meta.row_groups[g].total_byte_size : -1;
}
int st_parquet_version(const st_parquet_file *f) {
    return f->meta.version;
}
const char *st_parquet_created_by(const st_parquet_file *f) {
    return f->meta.created_by ? f->meta.created_by : "";
}
int st_parquet_n_kv(const st_parquet_file *f) {
    return f->meta.n_kv;
}
void st_parquet_kv(const st_parquet_file *f, int i, const char **key, const char **value) {
    *key = i >= 0 && i < f->meta.n_kv ? f->meta.kv_keys[i] : NULL;
    *value = i >= 0 && i < f->meta.n_kv ? f->meta.kv_values[i] : NULL;
}
int st_parquet_n_nodes(const st_parquet_file *f) {
    return f->meta.n_schema;
}
const st_pq_node *st_parquet_node(const st_parquet_file *f, int node) {
    return node >= 0 && node < f->meta.n_schema ? &f->nodes[node] : NULL;
}
int st_pq_node_child(const st_parquet_file *f, int node, int k) {
    if (node < 0 || node >= f->meta.n_schema) return -1;
    const st_pq_node *n = &f->nodes[node];
    if (k < 0 || k >= n->n_children) return -1;
    return f->child_of[f->child_start[node] + k];
}
int st_parquet_n_columns(const st_parquet_file *f) {
    return f->n_columns;
}
int st_parquet_column_node(const st_parquet_file *f, int c) {
    return c >= 0 && c < f->n_columns ? f->col_node[c] : -1;
}
const char *st_parquet_column_path(const st_parquet_file *f, int c) {
    return c >= 0 && c < f->n_columns ? f->col_path[c] : NULL;
}

int st_parquet_find_column(const st_parquet_file *f, const char *name) {
    if (!name) return -1;
    for (int c = 0; c < f->n_columns; c++)
        if (strcmp(f->col_path[c], name) == 0) return c;
    int found = -1;
    size_t l = strlen(name);
    for (int c = 0; c < f->n_columns; c++) {
        const char *p = f->col_path[c];
        if (strncmp(p, name, l) == 0 && p[l] == '.') {
            if (found >= 0) return -1; /* ambiguous */
            found = c;
        }
    }
    return found;
}

st_status st_parquet_chunk_info(const st_parquet_file *f, int g, int c, st_pq_chunk_info *out) {
    if (!f || !out || g < 0 || g >= f->meta.n_row_groups || c < 0 || c >= f->n_columns)
        return st__fail(ST_ERR_BOUNDS, "st_parquet_chunk_info: row group %d column %d out of range",
                        g, c);
    *out = f->meta.row_groups[g].chunks[c].info;
    return ST_OK;
}

const char *st_pq_physical_name(st_pq_physical t) {
    static const char *k[] = {"BOOLEAN", "INT32",  "INT64",      "INT96",
                              "FLOAT",   "DOUBLE", "BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY"};
    if (t == ST_PQ_GROUP) return "GROUP";
    return (int)t >= 0 && (int)t < 8 ? k[t] : "UNKNOWN";
}

const char *st_pq_logical_name(st_pq_logical t) {
    switch (t) {
    case ST_PQ_LT_NONE:
        return "NONE";
    case ST_PQ_LT_STRING:
        return "STRING";
    case ST_PQ_LT_MAP:
        return "MAP";
    case ST_PQ_LT_LIST:
        return "LIST";
    case ST_PQ_LT_ENUM:
        return "ENUM";
    case ST_PQ_LT_DECIMAL:
        return "DECIMAL";
    case ST_PQ_LT_DATE:
        return "DATE";
    case ST_PQ_LT_TIME:
        return "TIME";
    case ST_PQ_LT_TIMESTAMP:
        return "TIMESTAMP";
    case ST_PQ_LT_INTEGER:
        return "INTEGER";
    case ST_PQ_LT_JSON:
        return "JSON";
    case ST_PQ_LT_BSON:
        return "BSON";
    case ST_PQ_LT_UUID:
        return "UUID";
    case ST_PQ_LT_FLOAT16:
        return "FLOAT16";
    }
    return "UNKNOWN";
}

const char *st_pq_codec_name(st_pq_codec c) {
    static const char *k[] = {"UNCOMPRESSED", "SNAPPY", "GZIP", "LZO",
                              "BROTLI",       "LZ4",    "ZSTD", "LZ4_RAW"};
    return (int)c >= 0 && (int)c < 8 ? k[c] : "UNKNOWN";
}

const char *st_pq_encoding_name(int32_t e) {
    static const char *k[] = {
        "PLAIN",          "GROUP_VAR_INT",       "PLAIN_DICTIONARY",        "RLE",
        "BIT_PACKED",     "DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY",
        "RLE_DICTIONARY", "BYTE_STREAM_SPLIT"};
    return e >= 0 && e < 10 ? k[e] : "UNKNOWN";
}

const char *st_pq_repetition_name(st_pq_repetition r) {
    static const char *k[] = {"REQUIRED", "OPTIONAL", "REPEATED"};
    return (int)r >= 0 && (int)r < 3 ? k[r] : "UNKNOWN";
}
