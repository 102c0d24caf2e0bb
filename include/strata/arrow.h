/*
 * strata/arrow.h — layer 5: Parquet data out through the Arrow C Data
 * Interface (https://arrow.apache.org/docs/format/CDataInterface.html).
 *
 * The ArrowSchema and ArrowArray structs below are the spec's ABI, verbatim
 * and guarded by ARROW_C_DATA_INTERFACE, so a file that also includes
 * Arrow's own header (or nanoarrow's) sees one definition. Any Arrow
 * implementation (pyarrow's _import_from_c, arrow-rs FFI, DuckDB, polars)
 * can take the structs these functions fill.
 *
 * Ownership follows the spec: the exporter (Strata) allocates; the consumer
 * owns the filled structs and must call their release callback exactly once
 * (releasing a parent releases its children; a child moved out of its parent
 * by the consumer, with the parent's slot's release set to NULL, is
 * released independently). Release sets release to NULL. The arrays share
 * the decoded Parquet column by reference count: buffers are zero-copy
 * where the decoded layout already matches Arrow's (required or null-free
 * fixed-width columns, string bytes always), copied otherwise (validity
 * bitmaps, booleans, spaced nullable values, offsets with nulls, decimals,
 * narrow integers, INT96). Release may be called from any thread.
 */
#ifndef STRATA_ARROW_H
#define STRATA_ARROW_H

#include <stdint.h>

#include "strata/parquet.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef ARROW_C_DATA_INTERFACE
#define ARROW_C_DATA_INTERFACE

#define ARROW_FLAG_DICTIONARY_ORDERED 1
#define ARROW_FLAG_NULLABLE 2
#define ARROW_FLAG_MAP_KEYS_SORTED 4

struct ArrowSchema {
    // Array type description
    const char *format;
    const char *name;
    const char *metadata;
    int64_t flags;
    int64_t n_children;
    struct ArrowSchema **children;
    struct ArrowSchema *dictionary;

    // Release callback
    void (*release)(struct ArrowSchema *);
    // Opaque producer-specific data
    void *private_data;
};

struct ArrowArray {
    // Array data description
    int64_t length;
    int64_t null_count;
    int64_t offset;
    int64_t n_buffers;
    int64_t n_children;
    const void **buffers;
    struct ArrowArray **children;
    struct ArrowArray *dictionary;

    // Release callback
    void (*release)(struct ArrowArray *);
    // Opaque producer-specific data
    void *private_data;
};

#endif /* ARROW_C_DATA_INTERFACE */

/* The Arrow format string for a top-level field (schema node) of f, into
 * buf (at least 64 bytes): "b", "c"/"C"/"s"/"S"/"i"/"I"/"l"/"L", "f", "g",
 * "u", "z", "w:N", "d:P,S", "tdD", "tt{m,u,n}", "ts{m,u,n}:[UTC]", "+l",
 * "+s", "e". Errors: ST_ERR_UNSUPPORTED (a nesting not exported: lists of
 * lists, maps), ST_ERR_BOUNDS. */
st_status st_arrow_format(const st_parquet_file *f, int node, char *buf, size_t n);

/* Exports a decoded column chunk as the top-level field that holds it:
 * a flat column (max_rep == 0, directly under the root) or a list column
 * (LIST-annotated 3-level, legacy 2-level, or a bare repeated leaf: "+l"
 * with the element as its child). Takes ownership of col in every case (it
 * is freed when the last array that points into it is released, or at once
 * on failure). f is borrowed for the call. On success the consumer owns
 * *schema and *array. Errors: ST_ERR_UNSUPPORTED (nesting not exported,
 * DECIMAL precision over 38), ST_ERR_INVALID_ARG, ST_ERR_NOMEM. */
st_status st_arrow_export_column(const st_parquet_file *f, st_pq_column *col,
                                 struct ArrowSchema *schema, struct ArrowArray *array);

/* Reads row group g and exports it as a record batch: a struct array
 * ("+s", no nulls) with one child per top-level field in fields[0..n_fields)
 * (node indices of children of the root; fields NULL: every top-level
 * field). Only the projected columns are read. Errors: those of
 * st_parquet_read_column and st_arrow_export_column. */
st_status st_arrow_export_row_group(st_parquet_file *f, int g, const int *fields, int n_fields,
                                    struct ArrowSchema *schema, struct ArrowArray *array);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_ARROW_H */
