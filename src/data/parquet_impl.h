/*
 * parquet_impl.h — private to src/data/parquet*.c, thrift_compact.c and
 * arrow.c: the decoded footer (FileMetaData) and page headers, and the
 * Thrift compact-protocol entry points that fill them.
 */
#ifndef STRATA_DATA_PARQUET_IMPL_H
#define STRATA_DATA_PARQUET_IMPL_H

#include "strata/parquet.h"

/* SchemaElement as stored; -1 marks an absent optional field. */
typedef struct pq_schema_elem {
    int32_t type, type_length, repetition, num_children, converted_type;
    int32_t scale, precision;
    char *name; /* st_malloc'd, NUL-terminated */
    /* LogicalType (union): lt = field id of the set member, 0 when absent */
    int32_t lt;
    int32_t lt_scale, lt_precision; /* DECIMAL */
    bool lt_utc;                    /* TIME/TIMESTAMP */
    int32_t lt_unit;                /* 1 ms, 2 us, 3 ns */
    int32_t lt_bits;                /* INTEGER */
    bool lt_signed;
} pq_schema_elem;

typedef struct pq_chunk {
    st_pq_chunk_info info; /* encodings points at enc */
    int32_t type;          /* physical type declared by the chunk */
    int32_t *enc;
    bool has_meta;
    bool has_file_path; /* external files are not supported */
    int64_t start;      /* first byte of the chunk (dictionary or data) */
} pq_chunk;

typedef struct pq_row_group {
    int64_t num_rows, total_byte_size;
    int n_chunks;
    pq_chunk *chunks;
} pq_row_group;

typedef struct pq_filemeta {
    int32_t version;
    int n_schema;
    pq_schema_elem *schema;
    int64_t num_rows;
    int n_row_groups;
    pq_row_group *row_groups;
    int n_kv;
    char **kv_keys, **kv_values; /* values may be NULL */
    char *created_by;            /* NULL when absent */
} pq_filemeta;

enum { PQ_PAGE_DATA = 0, PQ_PAGE_INDEX = 1, PQ_PAGE_DICTIONARY = 2, PQ_PAGE_DATA_V2 = 3 };

typedef struct pq_page_header {
    int32_t type, uncompressed_size, compressed_size;
    bool has_crc;
    uint32_t crc;
    bool has_data, has_dict, has_data_v2;
    int32_t num_values, encoding, def_encoding, rep_encoding; /* data v1, dict, v2 */
    int32_t num_nulls, num_rows, def_bytes, rep_bytes;        /* data v2 */
    bool is_compressed;                                       /* data v2 (default true) */
} pq_page_header;

/* Decodes FileMetaData from buf[0..n). name: the file, for messages. On
 * failure everything allocated so far is freed. Statistics min/max point into
 * buf, which must outlive meta. */
st_status st__pq_read_filemeta(const uint8_t *buf, size_t n, const char *name, pq_filemeta *meta);
void st__pq_filemeta_clear(pq_filemeta *meta);

/* Decodes a PageHeader at buf[0..n); *used receives its encoded size. */
st_status st__pq_read_page_header(const uint8_t *buf, size_t n, const char *name, pq_page_header *h,
                                  size_t *used);

/* An open Parquet file (parquet.c). */
struct st_parquet_file {
    char *name;
    int fd;             /* -1 for memory */
    const uint8_t *mem; /* borrowed buffer, or NULL */
    uint64_t size;
    st_parquet_params params;
    uint8_t *footer;
    pq_filemeta meta;
    bool have_meta;
    st_pq_node *nodes; /* one per schema element */
    int32_t *child_start, *child_of;
    int n_child_slots;
    int n_columns;
    int32_t *col_node;
    char **col_path;
    /* scratch reused by every st_parquet_read_column (grow-only): the raw
     * chunk and one decompressed page; what makes the handle not thread-safe */
    uint8_t *chunk_buf, *page_buf;
    size_t chunk_cap, page_cap;
};

/* Reads n bytes at off into dst, checked against the file size. */
st_status st__pq_read_at(st_parquet_file *f, int64_t off, size_t n, uint8_t *dst);

#endif
