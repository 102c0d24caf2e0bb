/*
 * ui_impl.h — internals of the dashboard (ui.c, ui_svg.c): a growable
 * page buffer with HTML/URL escaping, and the SVG line chart.
 */
#ifndef STRATA_TRACK_UI_IMPL_H
#define STRATA_TRACK_UI_IMPL_H

#include "track_impl.h"

/* A growable NUL-terminated string; after an allocation failure every
 * later append fails too (one check at the end suffices). */
typedef struct st__sb {
    char *p;
    size_t len, cap;
    bool failed;
} st__sb;

st_status st__sb_put(st__sb *b, const char *s, size_t n);
st_status st__sb_puts(st__sb *b, const char *s);
st_status st__sb_printf(st__sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s with & < > " ' escaped (safe in text and in quoted attributes). */
st_status st__sb_html(st__sb *b, const char *s);
/* Appends s percent-encoded (safe as a query value). */
st_status st__sb_url(st__sb *b, const char *s);

/* One line of a chart: n points (x = step, y = value), borrowed. */
typedef struct st__series {
    const char *label;
    int64_t n;
    const int64_t *x;
    const double *y;
} st__series;

/* Appends an <svg> line chart of the series (axes, ticks, legend). */
st_status st__svg_chart(st__sb *b, const char *title, const st__series *s, int n);

#endif
