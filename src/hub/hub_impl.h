/*
 * hub_impl.h — private helpers shared by the files of src/hub/.
 */
#ifndef STRATA_HUB_IMPL_H
#define STRATA_HUB_IMPL_H

#include <stdbool.h>
#include <stdio.h>

#include "strata/hub.h"

/* A file being written crash-safely: bytes go to tmp; commit fsyncs it,
 * renames it to path and fsyncs the directory; abort removes tmp. */
typedef struct st__atomic_file {
    FILE *f;
    char *path;
    char *tmp;
    bool failed;
} st__atomic_file;

st_status st__atomic_open(st__atomic_file *af, const char *path);
st_status st__atomic_write(st__atomic_file *af, const void *data, size_t n);
st_status st__atomic_commit(st__atomic_file *af); /* frees af in every case */
void st__atomic_abort(st__atomic_file *af);
st_status st__fsync_parent_dir(const char *path);

#endif
