/*
 * ui_impl.h — internals of the dashboard (ui.c, ui_svg.c): a growable
 * page buffer with HTML/URL escaping, and the SVG line chart.
 */
#ifndef STRATA_TRACK_UI_IMPL_H
#define STRATA_TRACK_UI_IMPL_H

#include "track_impl.h"

/* Pages are written into an st_strbuf (strata/base.h). */
/* Appends s with & < > " ' escaped (safe in text and in quoted attributes). */
st_status st__sb_html(st_strbuf *b, const char *s);
/* Appends s percent-encoded (safe as a query value). */
st_status st__sb_url(st_strbuf *b, const char *s);

/* One line of a chart: n points (x = step, y = value), borrowed. */
typedef struct st__series {
    const char *label;
    int64_t n;
    const int64_t *x;
    const double *y;
} st__series;

/* Appends an <svg> line chart of the series (axes, ticks, legend). */
st_status st__svg_chart(st_strbuf *b, const char *title, const st__series *s, int n);

#endif
