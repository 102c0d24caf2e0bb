/*
 * data.c — `strata data inspect|cat|ingest`: look into Parquet files and
 * print their rows as JSON Lines; `ingest` is dispatched to
 * st_cli_data_ingest (cli/data_ingest.c, another file's job; declared weak
 * here so the command links before that file exists).
 *
 * cat reads one row group at a time (only the projected columns), turns each
 * row into a jansson object and prints it, so memory stays bounded by a row
 * group. Value mapping (docs/L5-data.md): nulls null; lists arrays; groups
 * objects; DATE "YYYY-MM-DD"; TIMESTAMP and INT96 ISO-8601 ("Z" when
 * adjusted to UTC); TIME "HH:MM:SS.fff…"; DECIMAL a string with the scale
 * ("-12.34"); unsigned INTEGER as unsigned; FLOAT/DOUBLE numbers (NaN and
 * infinities as the strings "NaN", "Infinity", "-Infinity"); STRING/ENUM/JSON
 * strings; other BYTE_ARRAY and FIXED_LEN_BYTE_ARRAY, and strings that are
 * not valid UTF-8, as base64 strings (RFC 4648, with padding); UUID in
 * 8-4-4-4-12 hex. Single-threaded.
 */
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "strata/parquet.h"

#pragma weak st_cli_data_ingest

/* ---- values -> JSON ------------------------------------------------------------ */

static json_t *b64(const uint8_t *p, size_t n) {
    size_t out = 4 * ((n + 2) / 3) + 1;
    char *buf = malloc(out);
    if (!buf) return json_null();
    EVP_EncodeBlock((unsigned char *)buf, p, (int)n);
    json_t *j = json_string(buf);
    free(buf);
    return j ? j : json_null();
}

static json_t *real(double v) {
    if (isnan(v)) return json_string("NaN");
    if (isinf(v)) return json_string(v > 0 ? "Infinity" : "-Infinity");
    return json_real(v);
}

/* days since 1970-01-01 -> y, m, d (proleptic Gregorian; Howard Hinnant's algorithm) */
static void civil(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

static json_t *date_json(int64_t days) {
    int64_t y;
    unsigned m, d;
    civil(days, &y, &m, &d);
    char buf[32];
    snprintf(buf, sizeof buf, "%04lld-%02u-%02u", (long long)y, m, d);
    return json_string(buf);
}

/* t in units of 10^-digits seconds */
static json_t *timestamp_json(int64_t t, int digits, bool utc) {
    int64_t per = 1;
    for (int i = 0; i < digits; i++)
        per *= 10;
    int64_t secs = t / per, frac = t % per;
    if (frac < 0) frac += per, secs -= 1;
    int64_t days = secs / 86400, sod = secs % 86400;
    if (sod < 0) sod += 86400, days -= 1;
    int64_t y;
    unsigned m, d;
    civil(days, &y, &m, &d);
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02d:%02d:%02d", (long long)y, m, d,
                     (int)(sod / 3600), (int)(sod / 60 % 60), (int)(sod % 60));
    if (digits) n += snprintf(buf + n, sizeof buf - (size_t)n, ".%0*lld", digits, (long long)frac);
    if (utc) snprintf(buf + n, sizeof buf - (size_t)n, "Z");
    return json_string(buf);
}

static json_t *time_json(int64_t t, int digits) {
    int64_t per = 1;
    for (int i = 0; i < digits; i++)
        per *= 10;
    int64_t secs = t / per, frac = t % per;
    char buf[48];
    int n = snprintf(buf, sizeof buf, "%02d:%02d:%02d", (int)(secs / 3600), (int)(secs / 60 % 60),
                     (int)(secs % 60));
    if (digits) snprintf(buf + n, sizeof buf - (size_t)n, ".%0*lld", digits, (long long)frac);
    return json_string(buf);
}

static json_t *decimal_json(__int128 v, int scale) {
    char digits[64];
    int n = 0;
    bool neg = v < 0;
    unsigned __int128 u = neg ? (unsigned __int128)(-(v + 1)) + 1 : (unsigned __int128)v;
    do {
        digits[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    while (n <= scale)
        digits[n++] = '0';
    char buf[96];
    int k = 0;
    if (neg) buf[k++] = '-';
    for (int i = n - 1; i >= 0; i--) {
        buf[k++] = digits[i];
        if (i == scale && scale > 0) buf[k++] = '.';
    }
    buf[k] = 0;
    return json_string(buf);
}

static int unit_digits(st_pq_time_unit u) {
    return u == ST_PQ_MILLIS ? 3 : u == ST_PQ_NANOS ? 9 : 6;
}

/* value k (index into the column's dense values) of a leaf */
static json_t *leaf_json(const st_pq_node *nd, const st_pq_column *c, int64_t k) {
    switch (c->physical) {
    case ST_PQ_BOOLEAN:
        return json_boolean(((const uint8_t *)c->values)[k]);
    case ST_PQ_INT32: {
        int32_t v = ((const int32_t *)c->values)[k];
        if (nd->logical == ST_PQ_LT_DATE) return date_json(v);
        if (nd->logical == ST_PQ_LT_DECIMAL) return decimal_json(v, nd->scale);
        if (nd->logical == ST_PQ_LT_TIME) return time_json(v, unit_digits(nd->time_unit));
        if (nd->logical == ST_PQ_LT_INTEGER && !nd->int_signed) return json_integer((uint32_t)v);
        return json_integer(v);
    }
    case ST_PQ_INT64: {
        int64_t v = ((const int64_t *)c->values)[k];
        if (nd->logical == ST_PQ_LT_TIMESTAMP)
            return timestamp_json(v, unit_digits(nd->time_unit), nd->utc);
        if (nd->logical == ST_PQ_LT_DECIMAL) return decimal_json(v, nd->scale);
        if (nd->logical == ST_PQ_LT_TIME) return time_json(v, unit_digits(nd->time_unit));
        if (nd->logical == ST_PQ_LT_INTEGER && !nd->int_signed && v < 0) {
            char buf[32];
            snprintf(buf, sizeof buf, "%llu", (unsigned long long)(uint64_t)v);
            return json_string(buf);
        }
        return json_integer(v);
    }
    case ST_PQ_INT96: {
        const uint8_t *p = (const uint8_t *)c->values + 12 * k;
        int64_t nanos;
        int32_t jd;
        memcpy(&nanos, p, 8);
        memcpy(&jd, p + 8, 4);
        int64_t days = (int64_t)jd - 2440588;
        return timestamp_json(days * 86400LL * 1000000000LL + nanos, 9, true);
    }
    case ST_PQ_FLOAT:
        return real(((const float *)c->values)[k]);
    case ST_PQ_DOUBLE:
        return real(((const double *)c->values)[k]);
    case ST_PQ_BYTE_ARRAY:
    case ST_PQ_FIXED_LEN_BYTE_ARRAY: {
        const uint8_t *p;
        size_t n;
        if (c->physical == ST_PQ_BYTE_ARRAY) {
            p = c->data + c->offsets[k];
            n = (size_t)(c->offsets[k + 1] - c->offsets[k]);
        } else {
            n = (size_t)c->type_length;
            p = (const uint8_t *)c->values + n * (size_t)k;
        }
        if (nd->logical == ST_PQ_LT_DECIMAL && n >= 1 && n <= 16) {
            __int128 v = (int8_t)p[0];
            for (size_t i = 1; i < n; i++)
                v = v * 256 + p[i];
            return decimal_json(v, nd->scale);
        }
        if (nd->logical == ST_PQ_LT_UUID && n == 16) {
            char buf[40];
            int o = 0;
            for (int i = 0; i < 16; i++) {
                o += snprintf(buf + o, sizeof buf - (size_t)o, "%02x", p[i]);
                if (i == 3 || i == 5 || i == 7 || i == 9) buf[o++] = '-';
            }
            buf[o] = 0;
            return json_string(buf);
        }
        if (nd->logical == ST_PQ_LT_STRING || nd->logical == ST_PQ_LT_ENUM ||
            nd->logical == ST_PQ_LT_JSON) {
            json_t *s = json_stringn((const char *)p, n);
            if (s) return s; /* NULL: not valid UTF-8 */
        }
        return b64(p, n);
    }
    default:
        return json_null();
    }
}

/* ---- record assembly ------------------------------------------------------------- */

typedef struct field {
    int node; /* top-level node */
    int n_cols;
    int *cols;           /* leaf columns under it */
    st_pq_column **data; /* per leaf, for the current row group */
    int64_t *cursor;     /* per leaf: next level entry */
} field;

static int first_leaf(const st_parquet_file *f, int node) {
    const st_pq_node *n = st_parquet_node(f, node);
    while (n->physical == ST_PQ_GROUP) {
        node = st_pq_node_child(f, node, 0);
        if (node < 0) return -1;
        n = st_parquet_node(f, node);
    }
    return n->column;
}

static bool under(const st_parquet_file *f, int node, int anc) {
    for (; node >= 0; node = st_parquet_node(f, node)->parent)
        if (node == anc) return true;
    return false;
}

/* The value of node for one row: flat parts use entry == row; a list reads
 * entries from its leaf's cursor. Supports any nesting of groups without
 * repetition, and one level of lists (LIST-annotated 3-level or 2-level
 * lists, or a bare repeated leaf) whose elements are leaves. */
static int value_json(const st_parquet_file *f, field *fl, int node, int64_t row, json_t **out);

static int leaf_index(field *fl, int column) {
    for (int i = 0; i < fl->n_cols; i++)
        if (fl->cols[i] == column) return i;
    return -1;
}

static int list_json(const st_parquet_file *f, field *fl, int node, int rep_node, json_t **out) {
    int col = first_leaf(f, rep_node);
    int li = leaf_index(fl, col);
    const st_pq_node *leaf = st_parquet_node(f, st_parquet_column_node(f, col));
    if (li < 0 || leaf->max_rep != 1) return -1;
    if (st_parquet_column_node(f, col) != rep_node && leaf->parent != rep_node)
        return -1; /* list of groups */
    const st_pq_node *nd = st_parquet_node(f, node), *rn = st_parquet_node(f, rep_node);
    const st_pq_column *c = fl->data[li];
    int64_t i = fl->cursor[li];
    if (i >= c->n_values) return -1;
    int16_t d0 = c->def_levels ? c->def_levels[i] : leaf->max_def;
    if (d0 < nd->max_def) { /* the list itself is null */
        fl->cursor[li] = i + 1;
        *out = json_null();
        return 0;
    }
    json_t *arr = json_array();
    if (d0 < rn->max_def) { /* empty list */
        fl->cursor[li] = i + 1;
        *out = arr;
        return 0;
    }
    /* dense value index: count present values before i (kept in cursor[n_cols + li]) */
    int64_t k = fl->cursor[fl->n_cols + li];
    do {
        int16_t d = c->def_levels ? c->def_levels[i] : leaf->max_def;
        if (d == leaf->max_def)
            json_array_append_new(arr, leaf_json(leaf, c, k++));
        else
            json_array_append_new(arr, json_null());
        i++;
    } while (i < c->n_values && c->rep_levels[i] != 0);
    fl->cursor[li] = i;
    fl->cursor[fl->n_cols + li] = k;
    *out = arr;
    return 0;
}

static int value_json(const st_parquet_file *f, field *fl, int node, int64_t row, json_t **out) {
    const st_pq_node *nd = st_parquet_node(f, node);
    if (nd->repetition == ST_PQ_REPEATED)
        return list_json(f, fl, nd->parent, node, out); /* 2-level, bare */
    if (nd->physical != ST_PQ_GROUP) {
        int li = leaf_index(fl, nd->column);
        if (li < 0 || nd->max_rep) return -1;
        const st_pq_column *c = fl->data[li];
        int64_t k = c->value_index ? c->value_index[row] : row;
        *out = k < 0 ? json_null() : leaf_json(nd, c, k);
        return 0;
    }
    if (nd->n_children == 1) {
        int ch = st_pq_node_child(f, node, 0);
        const st_pq_node *cn = st_parquet_node(f, ch);
        if (cn->repetition == ST_PQ_REPEATED) {
            /* LIST: group (LIST) { repeated group list { element } } or { repeated leaf } */
            return list_json(f, fl, node, ch, out);
        }
    }
    /* a struct: null when its definition level says so */
    int col = first_leaf(f, node);
    int li = leaf_index(fl, col);
    if (li < 0) return -1;
    const st_pq_column *c = fl->data[li];
    if (c->max_rep) return -1;
    if (nd->repetition == ST_PQ_OPTIONAL && c->def_levels && c->def_levels[row] < nd->max_def) {
        *out = json_null();
        return 0;
    }
    json_t *obj = json_object();
    for (int k = 0; k < nd->n_children; k++) {
        int ch = st_pq_node_child(f, node, k);
        json_t *v;
        if (value_json(f, fl, ch, row, &v) != 0) {
            json_decref(obj);
            return -1;
        }
        json_object_set_new(obj, st_parquet_node(f, ch)->name, v);
    }
    *out = obj;
    return 0;
}

static int cat_usage(FILE *o) {
    fprintf(o, "usage: strata data cat FILE [--columns a,b] [--limit N]\n\n"
               "Prints the rows of a Parquet file as JSON Lines, one object per row with\n"
               "the top-level fields in schema order. Reads one row group at a time.\n\n"
               "options:\n"
               "  --columns a,b   top-level fields to print (default: all)\n"
               "  --limit N       stop after N rows (default: all)\n\n"
               "values: nulls null, lists arrays, groups objects, DATE \"YYYY-MM-DD\",\n"
               "TIMESTAMP and INT96 ISO-8601 (\"Z\" when UTC), DECIMAL a string with the scale,\n"
               "NaN/Infinity as strings, binary that is not a UTF-8 string as base64.\n");
    return o == stdout ? 0 : 2;
}

static int cmd_cat(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) return cat_usage(stdout);
    const char *path = NULL, *cols = NULL;
    long limit = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--columns") == 0 && i + 1 < argc)
            cols = argv[++i];
        else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) {
            if (!cli_parse_long(argv[++i], &limit) || limit < 0)
                return cli_usage_error("data cat", "--limit takes a count >= 0, not '%s'", argv[i]);
        } else if (argv[i][0] == '-' && argv[i][1])
            return cli_usage_error("data cat", "unknown option '%s'", argv[i]);
        else if (!path)
            path = argv[i];
        else
            return cli_usage_error("data cat", "one FILE only");
    }
    if (!path) return cli_usage_error("data cat", "missing FILE");
    st_parquet_file *f;
    st_status s = st_parquet_open(path, NULL, &f);
    if (s != ST_OK) return cli_fail("data cat", s);
    int n_top = st_parquet_node(f, 0)->n_children;
    field *fields = calloc((size_t)n_top + 1, sizeof *fields);
    int nf = 0, rc = 0;
    if (cols) {
        char *copy = strdup(cols), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int found = -1;
            for (int k = 0; k < n_top; k++)
                if (strcmp(st_parquet_node(f, st_pq_node_child(f, 0, k))->name, t) == 0)
                    found = st_pq_node_child(f, 0, k);
            if (found < 0) {
                rc = cli_usage_error("data cat", "%s has no top-level column '%s'", path, t);
                break;
            }
            if (nf < n_top) fields[nf++].node = found;
        }
        free(copy);
    } else {
        for (int k = 0; k < n_top; k++)
            fields[nf++].node = st_pq_node_child(f, 0, k);
    }
    for (int i = 0; i < nf && rc == 0; i++) {
        field *fl = &fields[i];
        fl->cols = calloc((size_t)st_parquet_n_columns(f), sizeof(int));
        for (int c = 0; c < st_parquet_n_columns(f); c++)
            if (under(f, st_parquet_column_node(f, c), fl->node)) fl->cols[fl->n_cols++] = c;
        fl->data = calloc((size_t)fl->n_cols + 1, sizeof *fl->data);
        fl->cursor = calloc(2 * (size_t)fl->n_cols + 1, sizeof(int64_t));
    }
    int64_t printed = 0;
    for (int g = 0; rc == 0 && g < st_parquet_n_row_groups(f) && (limit < 0 || printed < limit);
         g++) {
        for (int i = 0; i < nf && rc == 0; i++) {
            for (int j = 0; j < fields[i].n_cols; j++) {
                st_pq_column_free(fields[i].data[j]);
                fields[i].data[j] = NULL;
                s = st_parquet_read_column(f, g, fields[i].cols[j], &fields[i].data[j]);
                if (s != ST_OK) {
                    rc = cli_fail("data cat", s);
                    break;
                }
            }
            memset(fields[i].cursor, 0, (2 * (size_t)fields[i].n_cols + 1) * sizeof(int64_t));
        }
        int64_t rows = st_parquet_row_group_rows(f, g);
        for (int64_t r = 0; rc == 0 && r < rows && (limit < 0 || printed < limit); r++) {
            json_t *obj = json_object();
            for (int i = 0; i < nf; i++) {
                json_t *v;
                if (value_json(f, &fields[i], fields[i].node, r, &v) != 0) {
                    fprintf(stderr,
                            "strata data cat: %s: column '%s' has a nesting cat does not print "
                            "(lists of lists or of groups)\n",
                            path, st_parquet_node(f, fields[i].node)->name);
                    rc = 1;
                    break;
                }
                json_object_set_new(obj, st_parquet_node(f, fields[i].node)->name, v);
            }
            if (rc == 0) {
                char *line = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
                if (line) {
                    fputs(line, stdout);
                    fputc('\n', stdout);
                    free(line);
                }
                printed++;
            }
            json_decref(obj);
        }
    }
    for (int i = 0; i < nf; i++) {
        for (int j = 0; j < fields[i].n_cols; j++)
            st_pq_column_free(fields[i].data ? fields[i].data[j] : NULL);
        free(fields[i].cols);
        free(fields[i].data);
        free(fields[i].cursor);
    }
    free(fields);
    st_parquet_close(f);
    if (fflush(stdout) != 0) return 1;
    return rc;
}

/* ---- inspect ------------------------------------------------------------------------ */

static json_t *stat_json(const st_pq_node *nd, const uint8_t *p, uint32_t n) {
    switch (nd->physical) {
    case ST_PQ_BOOLEAN:
        return n >= 1 ? json_boolean(p[0]) : json_null();
    case ST_PQ_INT32: {
        if (n != 4) return json_null();
        int32_t v;
        memcpy(&v, p, 4);
        return json_integer(v);
    }
    case ST_PQ_INT64: {
        if (n != 8) return json_null();
        int64_t v;
        memcpy(&v, p, 8);
        return json_integer(v);
    }
    case ST_PQ_FLOAT: {
        if (n != 4) return json_null();
        float v;
        memcpy(&v, p, 4);
        return real(v);
    }
    case ST_PQ_DOUBLE: {
        if (n != 8) return json_null();
        double v;
        memcpy(&v, p, 8);
        return real(v);
    }
    default: {
        if (nd->logical == ST_PQ_LT_STRING || nd->logical == ST_PQ_LT_ENUM ||
            nd->logical == ST_PQ_LT_JSON) {
            json_t *s = json_stringn((const char *)p, n);
            if (s) return s;
        }
        return b64(p, n);
    }
    }
}

static json_t *node_json(const st_parquet_file *f, int node) {
    const st_pq_node *n = st_parquet_node(f, node);
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(n->name));
    json_object_set_new(o, "repetition", json_string(st_pq_repetition_name(n->repetition)));
    json_object_set_new(o, "physical", json_string(st_pq_physical_name(n->physical)));
    if (n->logical != ST_PQ_LT_NONE)
        json_object_set_new(o, "logical", json_string(st_pq_logical_name(n->logical)));
    if (n->logical == ST_PQ_LT_DECIMAL) {
        json_object_set_new(o, "precision", json_integer(n->precision));
        json_object_set_new(o, "scale", json_integer(n->scale));
    }
    if (n->logical == ST_PQ_LT_TIMESTAMP || n->logical == ST_PQ_LT_TIME) {
        json_object_set_new(o, "unit",
                            json_string(n->time_unit == ST_PQ_MILLIS  ? "ms"
                                        : n->time_unit == ST_PQ_NANOS ? "ns"
                                                                      : "us"));
        json_object_set_new(o, "utc", json_boolean(n->utc));
    }
    if (n->logical == ST_PQ_LT_INTEGER) {
        json_object_set_new(o, "bits", json_integer(n->int_bits));
        json_object_set_new(o, "signed", json_boolean(n->int_signed));
    }
    if (n->physical == ST_PQ_FIXED_LEN_BYTE_ARRAY)
        json_object_set_new(o, "type_length", json_integer(n->type_length));
    json_object_set_new(o, "max_def", json_integer(n->max_def));
    json_object_set_new(o, "max_rep", json_integer(n->max_rep));
    if (n->physical == ST_PQ_GROUP) {
        json_t *ch = json_array();
        for (int k = 0; k < n->n_children; k++)
            json_array_append_new(ch, node_json(f, st_pq_node_child(f, node, k)));
        json_object_set_new(o, "children", ch);
    } else {
        json_object_set_new(o, "column", json_integer(n->column));
    }
    return o;
}

static json_t *inspect_json(const st_parquet_file *f, const char *path) {
    json_t *o = json_object();
    struct stat stt;
    json_object_set_new(o, "file", json_string(path));
    if (stat(path, &stt) == 0)
        json_object_set_new(o, "bytes", json_integer((json_int_t)stt.st_size));
    json_object_set_new(o, "created_by", json_string(st_parquet_created_by(f)));
    json_object_set_new(o, "version", json_integer(st_parquet_version(f)));
    json_object_set_new(o, "rows", json_integer(st_parquet_n_rows(f)));
    json_object_set_new(o, "n_row_groups", json_integer(st_parquet_n_row_groups(f)));
    json_object_set_new(o, "schema", node_json(f, 0));
    json_t *kv = json_object();
    for (int i = 0; i < st_parquet_n_kv(f); i++) {
        const char *k, *v;
        st_parquet_kv(f, i, &k, &v);
        json_t *js = v ? json_string(v) : json_null();
        json_object_set_new(kv, k, js ? js : json_null());
    }
    json_object_set_new(o, "key_value_metadata", kv);
    json_t *rgs = json_array();
    for (int g = 0; g < st_parquet_n_row_groups(f); g++) {
        json_t *rg = json_object();
        json_object_set_new(rg, "rows", json_integer(st_parquet_row_group_rows(f, g)));
        json_object_set_new(rg, "bytes", json_integer(st_parquet_row_group_bytes(f, g)));
        json_t *cols = json_array();
        for (int c = 0; c < st_parquet_n_columns(f); c++) {
            st_pq_chunk_info ci;
            if (st_parquet_chunk_info(f, g, c, &ci) != ST_OK) continue;
            const st_pq_node *nd = st_parquet_node(f, st_parquet_column_node(f, c));
            json_t *cj = json_object();
            json_object_set_new(cj, "path", json_string(st_parquet_column_path(f, c)));
            json_object_set_new(cj, "physical", json_string(st_pq_physical_name(nd->physical)));
            json_object_set_new(cj, "codec", json_string(st_pq_codec_name(ci.codec)));
            json_t *enc = json_array();
            for (int e = 0; e < ci.n_encodings; e++)
                json_array_append_new(enc, json_string(st_pq_encoding_name(ci.encodings[e])));
            json_object_set_new(cj, "encodings", enc);
            json_object_set_new(cj, "num_values", json_integer(ci.num_values));
            json_object_set_new(cj, "compressed_bytes", json_integer(ci.compressed_bytes));
            json_object_set_new(cj, "uncompressed_bytes", json_integer(ci.uncompressed_bytes));
            json_t *st = json_object();
            if (ci.stats.has_min_max) {
                json_object_set_new(st, "min", stat_json(nd, ci.stats.min, ci.stats.min_len));
                json_object_set_new(st, "max", stat_json(nd, ci.stats.max, ci.stats.max_len));
            }
            if (ci.stats.has_null_count)
                json_object_set_new(st, "null_count", json_integer(ci.stats.null_count));
            if (ci.stats.has_distinct_count)
                json_object_set_new(st, "distinct_count", json_integer(ci.stats.distinct_count));
            json_object_set_new(cj, "statistics", st);
            json_array_append_new(cols, cj);
        }
        json_object_set_new(rg, "columns", cols);
        json_array_append_new(rgs, rg);
    }
    json_object_set_new(o, "row_groups", rgs);
    return o;
}

static void print_node(const json_t *n, int depth) {
    const char *phys = json_string_value(json_object_get(n, "physical"));
    const char *lt = json_string_value(json_object_get(n, "logical"));
    printf("%*s%s %s %s", 2 * depth + 2, "", json_string_value(json_object_get(n, "repetition")),
           strcmp(phys, "GROUP") == 0 ? "group" : phys,
           json_string_value(json_object_get(n, "name")));
    if (lt) {
        printf(" (%s", lt);
        if (json_object_get(n, "scale"))
            printf("(%lld,%lld)", (long long)json_integer_value(json_object_get(n, "precision")),
                   (long long)json_integer_value(json_object_get(n, "scale")));
        if (json_object_get(n, "unit"))
            printf("(%s%s)", json_string_value(json_object_get(n, "unit")),
                   json_is_true(json_object_get(n, "utc")) ? ", UTC" : "");
        if (json_object_get(n, "bits"))
            printf("(%lld, %s)", (long long)json_integer_value(json_object_get(n, "bits")),
                   json_is_true(json_object_get(n, "signed")) ? "signed" : "unsigned");
        printf(")");
    }
    printf("  [def %lld, rep %lld]\n", (long long)json_integer_value(json_object_get(n, "max_def")),
           (long long)json_integer_value(json_object_get(n, "max_rep")));
    const json_t *ch = json_object_get(n, "children");
    for (size_t i = 0; ch && i < json_array_size(ch); i++)
        print_node(json_array_get(ch, i), depth + 1);
}

static void print_stat(const json_t *v) {
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = strlen(s);
        printf("\"");
        for (size_t i = 0; i < n && i < 24; i++)
            putchar(s[i] == '\n' ? ' ' : s[i]);
        printf(n > 24 ? "...\"" : "\"");
    } else {
        char *t = json_dumps(v, JSON_ENCODE_ANY);
        if (t) printf("%s", t);
        free(t);
    }
}

static int inspect_usage(FILE *o) {
    fprintf(o, "usage: strata data inspect FILE [--json]\n\n"
               "Describes a Parquet file: writer, schema tree (repetition, physical and\n"
               "logical types, definition/repetition levels), key-value metadata, row\n"
               "groups, and per column chunk the codec, encodings, compressed and\n"
               "uncompressed sizes and statistics. Reads only the footer.\n\n"
               "options:\n"
               "  --json   one JSON object instead of the text report\n");
    return o == stdout ? 0 : 2;
}

static int cmd_inspect(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) return inspect_usage(stdout);
    const char *path = NULL;
    bool js = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            js = true;
        else if (argv[i][0] == '-' && argv[i][1])
            return cli_usage_error("data inspect", "unknown option '%s'", argv[i]);
        else if (!path)
            path = argv[i];
        else
            return cli_usage_error("data inspect", "one FILE only");
    }
    if (!path) return cli_usage_error("data inspect", "missing FILE");
    st_parquet_file *f;
    st_status s = st_parquet_open(path, NULL, &f);
    if (s != ST_OK) return cli_fail("data inspect", s);
    json_t *o = inspect_json(f, path);
    st_parquet_close(f);
    if (js) {
        json_dumpf(o, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
        printf("\n");
        json_decref(o);
        return 0;
    }
    printf("file:        %s (%lld bytes)\n", path,
           (long long)json_integer_value(json_object_get(o, "bytes")));
    printf("created_by:  %s\n", json_string_value(json_object_get(o, "created_by")));
    printf("version:     %lld\n", (long long)json_integer_value(json_object_get(o, "version")));
    printf("rows:        %lld in %lld row groups\n",
           (long long)json_integer_value(json_object_get(o, "rows")),
           (long long)json_integer_value(json_object_get(o, "n_row_groups")));
    printf("schema:\n");
    print_node(json_object_get(o, "schema"), 0);
    const char *key;
    json_t *val;
    json_t *kv = json_object_get(o, "key_value_metadata");
    if (json_object_size(kv)) {
        printf("key-value metadata:\n");
        json_object_foreach(kv, key, val) printf(
            "  %s: %zu bytes\n", key, json_is_string(val) ? strlen(json_string_value(val)) : 0);
    }
    const json_t *rgs = json_object_get(o, "row_groups");
    for (size_t g = 0; g < json_array_size(rgs); g++) {
        const json_t *rg = json_array_get(rgs, g);
        printf("row group %zu: %lld rows, %lld bytes uncompressed\n", g,
               (long long)json_integer_value(json_object_get(rg, "rows")),
               (long long)json_integer_value(json_object_get(rg, "bytes")));
        const json_t *cols = json_object_get(rg, "columns");
        for (size_t c = 0; c < json_array_size(cols); c++) {
            const json_t *cj = json_array_get(cols, c);
            printf("  %-20s %-8s %-12s %9lld -> %9lld B  [",
                   json_string_value(json_object_get(cj, "path")),
                   json_string_value(json_object_get(cj, "physical")),
                   json_string_value(json_object_get(cj, "codec")),
                   (long long)json_integer_value(json_object_get(cj, "compressed_bytes")),
                   (long long)json_integer_value(json_object_get(cj, "uncompressed_bytes")));
            const json_t *enc = json_object_get(cj, "encodings");
            for (size_t e = 0; e < json_array_size(enc); e++)
                printf("%s%s", e ? "," : "", json_string_value(json_array_get(enc, e)));
            printf("]");
            const json_t *st = json_object_get(cj, "statistics");
            if (json_object_get(st, "min")) {
                printf(" min ");
                print_stat(json_object_get(st, "min"));
                printf(" max ");
                print_stat(json_object_get(st, "max"));
            }
            if (json_object_get(st, "null_count"))
                printf(" nulls %lld",
                       (long long)json_integer_value(json_object_get(st, "null_count")));
            printf("\n");
        }
    }
    json_decref(o);
    return 0;
}

/* ---- dispatch ------------------------------------------------------------------------ */

static int data_usage(FILE *o) {
    fprintf(o, "usage: strata data inspect FILE [--json]\n"
               "       strata data cat FILE [--columns a,b] [--limit N]\n"
               "       strata data ingest INPUT... --out DIR --tokenizer T [--column C]\n\n"
               "Datasets: look into Parquet files, print their rows as JSON Lines, and\n"
               "tokenize .txt/.jsonl/.csv/.parquet inputs into token shards.\n"
               "Run 'strata data <sub> --help' for each.\n");
    return o == stdout ? 0 : 2;
}

int cmd_data(int argc, char **argv) {
    if (argc < 2) return data_usage(stderr);
    const char *sub = argv[1];
    if (strcmp(sub, "inspect") == 0) return cmd_inspect(argc - 1, argv + 1);
    if (strcmp(sub, "cat") == 0) return cmd_cat(argc - 1, argv + 1);
    if (strcmp(sub, "ingest") == 0) {
        if (!st_cli_data_ingest) {
            fprintf(stderr, "strata data ingest: not built into this binary\n");
            return 1;
        }
        return st_cli_data_ingest(argc - 1, argv + 1);
    }
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0)
        return data_usage(stdout);
    fprintf(stderr, "strata data: unknown subcommand '%s'\n", sub);
    return data_usage(stderr);
}
