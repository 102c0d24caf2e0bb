/*
 * ui_svg.c — line charts as inline SVG for the dashboard, and the HTML and
 * URL escaping of what the pages (st_strbuf) are written with.
 *
 * A chart is one <svg> with a plot frame, "nice" ticks (1, 2, 5 x 10^k)
 * on both axes with grid lines and labels, one <polyline> per series
 * (points in step order; NaN and infinite values are skipped) carrying
 * data-series and data-points attributes for tests, small circles at the
 * points of short series, and a legend. No state; thread-safe.
 */
#include "ui_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

st_status st__sb_html(st_strbuf *b, const char *s) {
    if (!s) return ST_OK;
    const char *run = s;
    for (; *s; s++) {
        const char *rep = NULL;
        switch (*s) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: continue;
        }
        ST_TRY(st_strbuf_put(b, run, (size_t)(s - run)));
        ST_TRY(st_strbuf_puts(b, rep));
        run = s + 1;
    }
    return st_strbuf_put(b, run, (size_t)(s - run));
}

st_status st__sb_url(st_strbuf *b, const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-_.~", c)) {
            ST_TRY(st_strbuf_put(b, (const char *)&c, 1));
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            ST_TRY(st_strbuf_put(b, e, 3));
        }
    }
    return ST_OK;
}

static const char *const k_colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                       "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

/* A step of 1, 2 or 5 x 10^k giving about n ticks over span. */
static double nice_step(double span, int n) {
    if (!(span > 0)) return 1;
    double raw = span / n, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

static void fmt_tick(double v, double step, char *buf, size_t n) {
    if (fabs(v) < step * 1e-9) {
        snprintf(buf, n, "0");
        return;
    }
    if (fabs(v) >= 1e5 || step < 1e-3) snprintf(buf, n, "%.3g", v);
    else {
        int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        if (dec > 6) dec = 6;
        snprintf(buf, n, "%.*f", dec, v);
    }
}

st_status st__svg_chart(st_strbuf *b, const char *title, const st__series *ser, int n_ser) {
    enum { W = 720, H = 320, L = 64, R = 16, T = 34, B = 44 };
    const double pw = W - L - R, ph = H - T - B;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int s = 0; s < n_ser; s++)
        for (int64_t i = 0; i < ser[s].n; i++) {
            if (!isfinite(ser[s].y[i])) continue;
            x0 = fmin(x0, (double)ser[s].x[i]);
            x1 = fmax(x1, (double)ser[s].x[i]);
            y0 = fmin(y0, ser[s].y[i]);
            y1 = fmax(y1, ser[s].y[i]);
        }
    ST_TRY(st_strbuf_printf(b,
                         "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                         "viewBox=\"0 0 %d %d\" role=\"img\" data-metric=\"",
                         W, H, W, H));
    ST_TRY(st__sb_html(b, title));
    ST_TRY(st_strbuf_printf(b, "\"><rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#fff\"/>", W, H));
    ST_TRY(st_strbuf_printf(b, "<text x=\"%d\" y=\"20\" font-size=\"14\" font-weight=\"bold\">", L));
    ST_TRY(st__sb_html(b, title));
    ST_TRY(st_strbuf_puts(b, "</text>"));
    if (!isfinite(x0)) {
        ST_TRY(st_strbuf_printf(b, "<text x=\"%d\" y=\"%d\" fill=\"#888\">no finite values</text></svg>", L + 10,
                             T + 40));
        return ST_OK;
    }
    if (x1 == x0) x0 -= 1, x1 += 1;
    if (y1 == y0) {
        double d = fabs(y0) > 0 ? fabs(y0) * 0.05 : 1;
        y0 -= d, y1 += d;
    } else {
        double pad = (y1 - y0) * 0.05;
        y0 -= pad, y1 += pad;
    }
#define PX(v) (L + ((double)(v)-x0) / (x1 - x0) * pw)
#define PY(v) (T + ph - ((v)-y0) / (y1 - y0) * ph)
    /* Grid, ticks and labels. */
    ST_TRY(st_strbuf_puts(b, "<g class=\"axes\" font-size=\"11\" fill=\"#333\">"));
    double ys = nice_step(y1 - y0, 5);
    for (double v = ceil(y0 / ys) * ys; v <= y1 + ys * 1e-9; v += ys) {
        char lab[32];
        fmt_tick(v, ys, lab, sizeof lab);
        ST_TRY(st_strbuf_printf(b,
                             "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>"
                             "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#333\"/>"
                             "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>",
                             L, PY(v), W - R, PY(v), L - 5, PY(v), L, PY(v), L - 8, PY(v) + 4, lab));
    }
    double xs = nice_step(x1 - x0, 8);
    if (xs < 1) xs = 1; /* steps are integers */
    for (double v = ceil(x0 / xs) * xs; v <= x1 + xs * 1e-9; v += xs) {
        char lab[32];
        fmt_tick(v, xs, lab, sizeof lab);
        ST_TRY(st_strbuf_printf(b,
                             "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#eeeeee\"/>"
                             "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#333\"/>"
                             "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>",
                             PX(v), T, PX(v), T + (int)ph, PX(v), T + (int)ph, PX(v), T + (int)ph + 5, PX(v),
                             T + (int)ph + 18, lab));
    }
    ST_TRY(st_strbuf_printf(b,
                         "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#333\"/>"
                         "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">step</text></g>",
                         L, T, pw, ph, L + pw / 2, H - 6));
    /* Series. */
    for (int s = 0; s < n_ser; s++) {
        const char *col = k_colors[s % 10];
        int64_t np = 0;
        for (int64_t i = 0; i < ser[s].n; i++) np += isfinite(ser[s].y[i]);
        ST_TRY(st_strbuf_puts(b, "<polyline fill=\"none\" stroke-width=\"2\" data-series=\""));
        ST_TRY(st__sb_html(b, ser[s].label));
        ST_TRY(st_strbuf_printf(b, "\" data-points=\"%lld\" stroke=\"%s\" points=\"", (long long)np, col));
        bool first = true;
        for (int64_t i = 0; i < ser[s].n; i++) {
            if (!isfinite(ser[s].y[i])) continue;
            ST_TRY(st_strbuf_printf(b, "%s%.1f,%.1f", first ? "" : " ", PX(ser[s].x[i]), PY(ser[s].y[i])));
            first = false;
        }
        ST_TRY(st_strbuf_puts(b, "\"/>"));
        if (np <= 60)
            for (int64_t i = 0; i < ser[s].n; i++)
                if (isfinite(ser[s].y[i]))
                    ST_TRY(st_strbuf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>",
                                         PX(ser[s].x[i]), PY(ser[s].y[i]), col));
    }
    /* Legend, top right inside the frame. */
    for (int s = 0; s < n_ser; s++) {
        double ly = T + 14 + 16 * s;
        ST_TRY(st_strbuf_printf(b,
                             "<g class=\"legend\"><rect x=\"%d\" y=\"%.1f\" width=\"14\" height=\"3\" fill=\"%s\"/>"
                             "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">",
                             W - R - 20, ly - 4, k_colors[s % 10], W - R - 26, ly));
        ST_TRY(st__sb_html(b, ser[s].label));
        ST_TRY(st_strbuf_puts(b, "</text></g>"));
    }
#undef PX
#undef PY
    return st_strbuf_puts(b, "</svg>");
}
