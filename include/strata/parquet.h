/*
 * strata/parquet.h — layer 5: a Parquet reader.
 *
 * Reads Apache Parquet files one row group and one column chunk at a time,
 * so memory stays bounded by the largest row group's projected columns even
 * on files larger than RAM. The footer's Thrift compact-protocol metadata is
 * decoded by src/data/thrift_compact.c; pages are decompressed with Debian's
 * codec libraries (snappy, zlib, zstd, lz4, brotli).
 *
 * Covered: physical types BOOLEAN, INT32, INT64, INT96, FLOAT, DOUBLE,
 * BYTE_ARRAY, FIXED_LEN_BYTE_ARRAY; logical/converted types STRING, DATE,
 * TIME, TIMESTAMP, DECIMAL, INTEGER, LIST, ...; encodings PLAIN,
 * RLE/bit-packed hybrid, PLAIN_DICTIONARY, RLE_DICTIONARY,
 * DELTA_BINARY_PACKED, DELTA_LENGTH_BYTE_ARRAY, DELTA_BYTE_ARRAY,
 * BYTE_STREAM_SPLIT; data pages v1 and v2; codecs UNCOMPRESSED, SNAPPY,
 * GZIP, ZSTD, LZ4_RAW, BROTLI; definition and repetition levels; page CRC32
 * checked when present; column chunk statistics. Not covered: encryption,
 * the deprecated BIT_PACKED level encoding and the Hadoop-framed LZ4 codec
 * (ST_ERR_UNSUPPORTED with a message naming them).
 *
 * Every size and offset read from the file is checked before use; a hostile
 * file fails with ST_ERR_FORMAT and a message naming the file and the fault,
 * and no allocation is larger than the file (or a page's declared and
 * bounded uncompressed size) justifies.
 *
 * Threads: a st_parquet_file is not thread-safe; open one per thread (they
 * may share the path). A st_pq_column is immutable once read.
 *
 * Typical streaming use (what `strata data ingest` does):
 *
 *   st_parquet_file *f; ST_TRY(st_parquet_open(path, NULL, &f));
 *   int c = st_parquet_find_column(f, "text");
 *   for (int rg = 0; rg < st_parquet_n_row_groups(f); rg++) {
 *       st_pq_column *col; ST_TRY(st_parquet_read_column(f, rg, c, &col));
 *       for (int64_t i = 0; i < col->n_values; i++) {
 *           const uint8_t *p; size_t n;
 *           if (st_pq_column_string(col, i, &p, &n)) use(p, n);  // false: null
 *       }
 *       st_pq_column_free(col);
 *   }
 *   st_parquet_close(f);
 *
 * or st_parquet_scan_strings() below, which does exactly that loop.
 */
#ifndef STRATA_PARQUET_H
#define STRATA_PARQUET_H

#include "strata/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Values as in parquet.thrift; the enums only grow. */
typedef enum st_pq_physical {
    ST_PQ_BOOLEAN = 0,
    ST_PQ_INT32 = 1,
    ST_PQ_INT64 = 2,
    ST_PQ_INT96 = 3,
    ST_PQ_FLOAT = 4,
    ST_PQ_DOUBLE = 5,
    ST_PQ_BYTE_ARRAY = 6,
    ST_PQ_FIXED_LEN_BYTE_ARRAY = 7,
    ST_PQ_GROUP = -1 /* a schema node with children, not a column */
} st_pq_physical;

typedef enum st_pq_repetition {
    ST_PQ_REQUIRED = 0,
    ST_PQ_OPTIONAL = 1,
    ST_PQ_REPEATED = 2
} st_pq_repetition;

/* The logical meaning, resolved from LogicalType or (older writers) from
 * ConvertedType. */
typedef enum st_pq_logical {
    ST_PQ_LT_NONE = 0,
    ST_PQ_LT_STRING = 1,
    ST_PQ_LT_MAP = 2,
    ST_PQ_LT_LIST = 3,
    ST_PQ_LT_ENUM = 4,
    ST_PQ_LT_DECIMAL = 5,
    ST_PQ_LT_DATE = 6,
    ST_PQ_LT_TIME = 7,
    ST_PQ_LT_TIMESTAMP = 8,
    ST_PQ_LT_INTEGER = 10,
    ST_PQ_LT_JSON = 12,
    ST_PQ_LT_BSON = 13,
    ST_PQ_LT_UUID = 14,
    ST_PQ_LT_FLOAT16 = 15
} st_pq_logical;

typedef enum st_pq_time_unit {
    ST_PQ_MILLIS = 1,
    ST_PQ_MICROS = 2,
    ST_PQ_NANOS = 3
} st_pq_time_unit;

typedef enum st_pq_codec {
    ST_PQ_UNCOMPRESSED = 0,
    ST_PQ_SNAPPY = 1,
    ST_PQ_GZIP = 2,
    ST_PQ_LZO = 3,
    ST_PQ_BROTLI = 4,
    ST_PQ_LZ4 = 5,
    ST_PQ_ZSTD = 6,
    ST_PQ_LZ4_RAW = 7
} st_pq_codec;

typedef enum st_pq_encoding {
    ST_PQ_PLAIN = 0,
    ST_PQ_PLAIN_DICTIONARY = 2,
    ST_PQ_RLE = 3,
    ST_PQ_BIT_PACKED = 4,
    ST_PQ_DELTA_BINARY_PACKED = 5,
    ST_PQ_DELTA_LENGTH_BYTE_ARRAY = 6,
    ST_PQ_DELTA_BYTE_ARRAY = 7,
    ST_PQ_RLE_DICTIONARY = 8,
    ST_PQ_BYTE_STREAM_SPLIT = 9
} st_pq_encoding;

/* One node of the schema tree (depth-first order, node 0 is the root). */
typedef struct st_pq_node {
    const char *name;
    st_pq_physical physical;     /* ST_PQ_GROUP for groups */
    st_pq_repetition repetition; /* the root is REQUIRED */
    int32_t type_length;         /* FIXED_LEN_BYTE_ARRAY width in bytes */
    st_pq_logical logical;
    int32_t converted_type;    /* raw ConvertedType, -1 when absent */
    int32_t scale, precision;  /* DECIMAL */
    st_pq_time_unit time_unit; /* TIME, TIMESTAMP */
    bool utc;                  /* TIME, TIMESTAMP: isAdjustedToUTC */
    int32_t int_bits;          /* INTEGER: 8, 16, 32, 64 */
    bool int_signed;
    int32_t parent; /* -1 for the root */
    int32_t n_children;
    int32_t first_child;      /* node index of the first child; children are
                                 the next n_children siblings in the order
                                 st_pq_node_child() gives */
    int32_t column;           /* leaf: its column index; groups: -1 */
    int16_t max_def, max_rep; /* levels at this node */
} st_pq_node;

/* Statistics of a column chunk as stored (min/max are the raw plain-encoded
 * bytes; interpret them with the column's physical type). */
typedef struct st_pq_stats {
    bool has_min_max;
    const uint8_t *min, *max; /* borrowed from the file handle */
    uint32_t min_len, max_len;
    bool has_null_count, has_distinct_count;
    int64_t null_count, distinct_count;
} st_pq_stats;

/* Metadata of one column chunk (one column in one row group). */
typedef struct st_pq_chunk_info {
    st_pq_codec codec;
    int64_t num_values; /* level entries, nulls included */
    int64_t compressed_bytes, uncompressed_bytes;
    int64_t data_page_offset, dictionary_page_offset; /* -1 when absent */
    int n_encodings;
    const int32_t *encodings; /* st_pq_encoding values, borrowed */
    st_pq_stats stats;
} st_pq_chunk_info;

typedef struct st_parquet_file st_parquet_file;

typedef struct st_parquet_params {
    /* Largest page (compressed or uncompressed) accepted; 0: 1 GiB. A page
     * header declaring more fails with ST_ERR_FORMAT. */
    size_t max_page_bytes;
    /* Most bytes one decoded column chunk may take (levels, values, string
     * bytes); 0: 2 GiB. Dictionary-encoded and RLE data can expand a small
     * file enormously; this is the hard limit. */
    size_t max_decoded_bytes;
    /* Check page CRC32s when a page header carries one (default true). */
    bool check_crc;
} st_parquet_params;

st_parquet_params st_parquet_default_params(void);

/* Opens path and decodes its footer. params NULL: the defaults. The file
 * stays open (pread) until st_parquet_close. Errors: ST_ERR_IO (names the
 * path), ST_ERR_FORMAT (not Parquet, truncated, malformed metadata or schema;
 * the message names the path and the fault), ST_ERR_UNSUPPORTED (encrypted
 * footer), ST_ERR_NOMEM. */
st_status st_parquet_open(const char *path, const st_parquet_params *params, st_parquet_file **out);
/* The same over a caller's buffer, which must outlive the handle (borrowed,
 * never written). name is used in messages. */
st_status st_parquet_open_memory(const void *data, size_t n_bytes, const char *name,
                                 const st_parquet_params *params, st_parquet_file **out);
/* NULL is a no-op. Columns read from f stay valid after the close. */
void st_parquet_close(st_parquet_file *f);

int64_t st_parquet_n_rows(const st_parquet_file *f);
int st_parquet_n_row_groups(const st_parquet_file *f);
int64_t st_parquet_row_group_rows(const st_parquet_file *f, int row_group);
int64_t st_parquet_row_group_bytes(const st_parquet_file *f, int row_group); /* uncompressed */
int st_parquet_version(const st_parquet_file *f);
const char *st_parquet_created_by(const st_parquet_file *f); /* "" when absent */
int st_parquet_n_kv(const st_parquet_file *f);
/* Key-value metadata i (borrowed; value may be NULL). */
void st_parquet_kv(const st_parquet_file *f, int i, const char **key, const char **value);

/* Schema tree: st_parquet_n_nodes nodes, node 0 the root. Borrowed. */
int st_parquet_n_nodes(const st_parquet_file *f);
const st_pq_node *st_parquet_node(const st_parquet_file *f, int node);
/* Node index of child k of a group node, -1 when out of range. */
int st_pq_node_child(const st_parquet_file *f, int node, int k);

/* Leaf columns, in file order. */
int st_parquet_n_columns(const st_parquet_file *f);
/* Node index of a column's leaf. */
int st_parquet_column_node(const st_parquet_file *f, int column);
/* The dotted path ("embedding.list.item"); borrowed. */
const char *st_parquet_column_path(const st_parquet_file *f, int column);
/* Column by dotted path or, when unambiguous, by top-level field name
 * ("embedding" finds the single leaf under it). -1 when not found. */
int st_parquet_find_column(const st_parquet_file *f, const char *name);
/* Metadata of a column chunk; borrowed until st_parquet_close. Errors:
 * ST_ERR_BOUNDS. */
st_status st_parquet_chunk_info(const st_parquet_file *f, int row_group, int column,
                                st_pq_chunk_info *out);

/* A decoded column chunk. Levels and values are separate, like Parquet:
 * n_values level entries (nulls and empty lists included); values holds only
 * the n_present non-null leaf values, densely, in order.
 *   BOOLEAN: 1 byte each (0/1). INT32/FLOAT: 4 bytes. INT64/DOUBLE: 8 bytes.
 *   INT96: 12 bytes. FIXED_LEN_BYTE_ARRAY: type_length bytes.
 *   BYTE_ARRAY: offsets[n_present + 1] into data (offsets[0] == 0).
 * def_levels is NULL when max_def == 0 (every entry present); rep_levels is
 * NULL when max_rep == 0 (one entry per row). A leaf value is present where
 * def_levels[i] == max_def. */
typedef struct st_pq_column {
    int column; /* leaf column index */
    st_pq_physical physical;
    int32_t type_length; /* bytes per fixed-width value (0: BYTE_ARRAY) */
    int16_t max_def, max_rep;
    int64_t n_rows;    /* rows of the row group */
    int64_t n_values;  /* level entries */
    int64_t n_present; /* non-null leaf values */
    const int16_t *def_levels;
    const int16_t *rep_levels;
    const void *values;     /* fixed-width values (NULL for BYTE_ARRAY) */
    const int32_t *offsets; /* BYTE_ARRAY */
    const uint8_t *data;    /* BYTE_ARRAY bytes */
    /* For max_rep == 0: value_index[i] is the index into values of entry i,
     * or -1 when it is null. NULL when max_def == 0 (identity). */
    const int64_t *value_index;
} st_pq_column;

/* Reads and decodes one column chunk (every page). Memory: the chunk's
 * compressed bytes plus its decoded values. Errors: ST_ERR_BOUNDS (indices),
 * ST_ERR_FORMAT (malformed pages, bad CRC, dictionary index out of range,
 * levels or values past the page; names file, row group, column, page),
 * ST_ERR_UNSUPPORTED (encoding or codec not covered), ST_ERR_IO, ST_ERR_NOMEM.
 * The caller owns *out (st_pq_column_free). */
st_status st_parquet_read_column(st_parquet_file *f, int row_group, int column, st_pq_column **out);
/* NULL is a no-op. */
void st_pq_column_free(st_pq_column *c);

/* Entry i of a flat (max_rep == 0) BYTE_ARRAY or FIXED_LEN_BYTE_ARRAY column:
 * true and the bytes (borrowed from c) when present, false when null or
 * out of range. */
bool st_pq_column_string(const st_pq_column *c, int64_t i, const uint8_t **p, size_t *n);

/* Calls fn(user, row, bytes, n_bytes) for every row of a flat string column
 * (BYTE_ARRAY or FIXED_LEN_BYTE_ARRAY), one row group at a time, in file
 * order; nulls are passed as bytes == NULL. row counts from 0 over the file.
 * fn returns ST_OK to go on; any other status stops the scan and is returned.
 * Errors: those of st_parquet_read_column, ST_ERR_INVALID_ARG (column is not
 * a flat byte-array column). */
typedef st_status (*st_pq_string_fn)(void *user, int64_t row, const uint8_t *bytes, size_t n_bytes);
st_status st_parquet_scan_strings(st_parquet_file *f, int column, st_pq_string_fn fn, void *user);

/* Names for messages and `strata data inspect`. */
const char *st_pq_physical_name(st_pq_physical t);
const char *st_pq_logical_name(st_pq_logical t);
const char *st_pq_codec_name(st_pq_codec c);
const char *st_pq_encoding_name(int32_t e);
const char *st_pq_repetition_name(st_pq_repetition r);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_PARQUET_H */
