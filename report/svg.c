/* report/svg.c -- the SVG line-plot writer (see svg.h). Geometry is in pixels of a fixed-size
 * cell per panel; text widths are estimated (0.6 em per character), which is enough to wrap
 * legends and thin out tick labels. */
#include "svg.h"

#include "../core/check.h"
#include "../core/fsutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// text buffer

void svg_buf_printf(struct svg_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    HW_ASSERT(need >= 0);
    if (b->n + (size_t)need + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + (size_t)need + 1)
            cap *= 2;
        b->s = HW_REALLOC(b->s, cap);
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)need;
}

void svg_buf_escape(struct svg_buf *b, const char *s) {
    for (const char *p = s; p && *p; p++) {
        switch (*p) {
        case '&':
            svg_buf_printf(b, "&amp;");
            break;
        case '<':
            svg_buf_printf(b, "&lt;");
            break;
        case '>':
            svg_buf_printf(b, "&gt;");
            break;
        case '"':
            svg_buf_printf(b, "&quot;");
            break;
        case '\'':
            svg_buf_printf(b, "&#39;");
            break;
        default:
            /* control characters other than tab/newline are not allowed in XML 1.0 */
            if ((unsigned char)*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r')
                svg_buf_printf(b, "?");
            else
                svg_buf_printf(b, "%c", *p);
        }
    }
}

void svg_buf_free(struct svg_buf *b) {
    free(b->s);
    b->s = NULL;
    b->n = b->cap = 0;
}

// ---------------------------------------------------------------------------------------------
// axes and ticks

void svg_nice_axis(double lo, double hi, int target, int integer, struct svg_axis *a) {
    if (!isfinite(lo) || !isfinite(hi)) {
        lo = 0;
        hi = 1;
    }
    if (hi < lo) {
        double t = lo;
        lo = hi;
        hi = t;
    }
    if (hi - lo <= 1e-12 * fmax(fabs(lo), fabs(hi))) {
        double d = lo != 0 ? fabs(lo) * 0.1 : 1.0;
        if (integer && d < 1)
            d = 1;
        lo -= d;
        hi += d;
    }
    if (target < 2)
        target = 2;
    /* the smallest step of 1, 2 or 5 times a power of ten whose loose labelling (both ends
     * rounded outwards to a tick) has at most target + 1 ticks */
    double raw = (hi - lo) / (target - 1), base = pow(10.0, floor(log10(raw)));
    static const double mult[] = {1, 2, 5, 10, 20, 50, 100};
    double step = base;
    for (size_t i = 0; i < sizeof(mult) / sizeof(mult[0]); i++) {
        step = base * mult[i];
        if (integer && step < 1)
            continue;
        double n = ceil(hi / step - 1e-9) - floor(lo / step + 1e-9) + 1;
        if (n <= target + 1)
            break;
    }
    if (integer && step < 1)
        step = 1;
    a->step = step;
    a->lo = floor(lo / step + 1e-9) * step;
    a->hi = ceil(hi / step - 1e-9) * step;
    if (a->hi <= a->lo)
        a->hi = a->lo + step;
    a->n_ticks = (int)lround((a->hi - a->lo) / step) + 1;
}

/* decimals needed to print multiples of s exactly (up to 9) */
static int step_decimals(double s) {
    int d = 0;
    while (d < 9) {
        double m = s * pow(10.0, d);
        if (fabs(m - round(m)) < 1e-6 * fmax(1.0, fabs(m)))
            break;
        d++;
    }
    return d;
}

void svg_format_tick(char *out, size_t n, double v, double step) {
    if (fabs(v) < step * 1e-6)
        v = 0;
    if (v == 0) {
        snprintf(out, n, "0");
        return;
    }
    if (step >= 1000) {
        double unit = step >= 1e9 ? 1e9 : step >= 1e6 ? 1e6 : 1e3;
        const char *suf = unit == 1e9 ? "G" : unit == 1e6 ? "M" : "k";
        snprintf(out, n, "%.*f%s", step_decimals(step / unit), v / unit, suf);
    } else if (step >= 1e-4) {
        snprintf(out, n, "%.*f", step_decimals(step), v);
    } else {
        snprintf(out, n, "%.4g", v);
    }
}

size_t svg_downsample(const double *y, size_t n, size_t max_points, size_t *idx) {
    if (n <= max_points) {
        for (size_t i = 0; i < n; i++)
            idx[i] = i;
        return n;
    }
    size_t buckets = max_points / 3, k = 0;
    if (buckets < 1)
        buckets = 1;
    for (size_t b = 0; b < buckets; b++) {
        size_t i0 = b * n / buckets, i1 = (b + 1) * n / buckets;
        size_t imin = SIZE_MAX, imax = SIZE_MAX, inan = SIZE_MAX;
        for (size_t i = i0; i < i1; i++) {
            if (!isfinite(y[i])) {
                if (inan == SIZE_MAX)
                    inan = i;
                continue;
            }
            if (imin == SIZE_MAX || y[i] < y[imin])
                imin = i;
            if (imax == SIZE_MAX || y[i] > y[imax])
                imax = i;
        }
        size_t pick[3] = {imin, imax, inan};
        /* sort the three candidates by index, drop duplicates and absent ones */
        for (int i = 0; i < 3; i++)
            for (int j = i + 1; j < 3; j++)
                if (pick[j] < pick[i]) {
                    size_t t = pick[i];
                    pick[i] = pick[j];
                    pick[j] = t;
                }
        for (int i = 0; i < 3; i++)
            if (pick[i] != SIZE_MAX && (i == 0 || pick[i] != pick[i - 1]))
                idx[k++] = pick[i];
    }
    return k;
}

// ---------------------------------------------------------------------------------------------
// rendering

#define CELL_W   640
#define CELL_H   320
#define FIG_HEAD 34 /* figure title band */
#define MARGIN_L 74 /* y tick labels and y label */
#define MARGIN_R 22 /* right edge */
#define MARGIN_B 50 /* x tick labels and x label */
#define TITLE_H  26 /* panel title band */
#define LEGEND_H 18 /* one legend row */
#define FONT     12 /* tick and legend font size */

static const char *const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
#define N_PALETTE ((int)(sizeof(palette) / sizeof(palette[0])))

static double text_w(const char *s, int font) {
    return 0.6 * font * (double)strlen(s ? s : "");
}

static const char *series_color(const struct svg_series *s, int pos) {
    int c = s->color >= 0 ? s->color : pos;
    return palette[c % N_PALETTE];
}

/* Legend items laid out left to right from x0, wrapping at x1; returns the rows used. When
 * draw is 0 only counts. */
static int legend(struct svg_buf *b, const struct svg_panel *p, double x0, double x1, double y0,
                  int draw) {
    if (p->n_series < 2)
        return 0;
    double x = x0;
    int rows = 1;
    for (int i = 0; i < p->n_series; i++) {
        const struct svg_series *s = &p->series[i];
        double w = 22 + text_w(s->name, FONT) + 14;
        if (x > x0 && x + w > x1) {
            x = x0;
            rows++;
        }
        if (draw) {
            double y = y0 + (rows - 1) * LEGEND_H + LEGEND_H / 2.0;
            svg_buf_printf(b,
                           "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                           "stroke-width=\"2.5\"%s/>",
                           x, y, x + 16, y, series_color(s, i),
                           s->dashed ? " stroke-dasharray=\"5,3\"" : "");
            svg_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" dy=\"0.35em\">", x + 21, y);
            svg_buf_escape(b, s->name);
            svg_buf_printf(b, "</text>\n");
        }
        x += w;
    }
    return rows;
}

static void data_range(const struct svg_panel *p, double *xlo, double *xhi, double *ylo,
                       double *yhi) {
    *xlo = *ylo = INFINITY;
    *xhi = *yhi = -INFINITY;
    for (int k = 0; k < p->n_series; k++) {
        const struct svg_series *s = &p->series[k];
        for (size_t i = 0; i < s->n; i++) {
            if (!isfinite(s->x[i]) || !isfinite(s->y[i]))
                continue;
            double e = s->yerr && isfinite(s->yerr[i]) ? fabs(s->yerr[i]) : 0.0;
            *xlo = fmin(*xlo, s->x[i]);
            *xhi = fmax(*xhi, s->x[i]);
            *ylo = fmin(*ylo, s->y[i] - e);
            *yhi = fmax(*yhi, s->y[i] + e);
        }
    }
}

static void ticks(struct svg_buf *b, const struct svg_axis *a, int vertical, double px0, double px1,
                  double other0, double other1) {
    /* px0..px1: pixel span of the axis (lo..hi); other0/other1: the frame's other extent */
    double label_gap = vertical ? 0 : 6;
    for (int i = 0; i < a->n_ticks; i++) {
        double v = a->lo + i * a->step;
        double t = (v - a->lo) / (a->hi - a->lo), px = px0 + t * (px1 - px0);
        char lab[48];
        svg_format_tick(lab, sizeof(lab), v, a->step);
        if (vertical) {
            svg_buf_printf(b,
                           "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                           "class=\"grid\"/>",
                           other0, px, other1, px);
            svg_buf_printf(b,
                           "<text x=\"%.1f\" y=\"%.1f\" dy=\"0.35em\" text-anchor=\"end\">%s"
                           "</text>\n",
                           other0 - 6, px, lab);
        } else {
            svg_buf_printf(b,
                           "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                           "class=\"grid\"/>",
                           px, other0, px, other1);
            svg_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", px,
                           other1 + FONT + label_gap, lab);
        }
    }
}

/* One unbroken run of points; a run of one point is a dot unless markers already drew it. */
static void polyline_flush(struct svg_buf *b, const double *px, const double *py, size_t m,
                           const char *color, int dashed, int markers) {
    if (m == 1 && !markers) {
        svg_buf_printf(b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2.8\" fill=\"%s\"/>\n", px[0], py[0],
                       color);
        return;
    }
    if (m < 2)
        return;
    svg_buf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\"%s points=\"",
                   color, dashed ? " stroke-dasharray=\"5,3\"" : "");
    for (size_t i = 0; i < m; i++)
        svg_buf_printf(b, "%s%.2f,%.2f", i ? " " : "", px[i], py[i]);
    svg_buf_printf(b, "\"/>\n");
}

static void draw_series(struct svg_buf *b, const struct svg_series *s, int pos,
                        const struct svg_axis *ax, const struct svg_axis *ay, double l, double r,
                        double t, double bot) {
    if (s->n == 0)
        return;
    const char *color = series_color(s, pos);
    size_t *idx = HW_MALLOC((s->n < SVG_MAX_POINTS ? s->n : SVG_MAX_POINTS) * sizeof(*idx));
    size_t m = svg_downsample(s->y, s->n, SVG_MAX_POINTS, idx);
    double *px = HW_MALLOC(m * sizeof(*px)), *py = HW_MALLOC(m * sizeof(*py));
    size_t run = 0;
    for (size_t k = 0; k < m; k++) {
        size_t i = idx[k];
        if (!isfinite(s->x[i]))
            continue;
        if (!isfinite(s->y[i])) {
            polyline_flush(b, px, py, run, color, s->dashed, s->markers);
            run = 0;
            continue;
        }
        px[run] = l + (s->x[i] - ax->lo) / (ax->hi - ax->lo) * (r - l);
        py[run] = bot - (s->y[i] - ay->lo) / (ay->hi - ay->lo) * (bot - t);
        if (s->yerr && isfinite(s->yerr[i]) && s->yerr[i] > 0) {
            double e = fabs(s->yerr[i]) / (ay->hi - ay->lo) * (bot - t);
            svg_buf_printf(b,
                           "<path d=\"M%.2f,%.2fV%.2fM%.2f,%.2fH%.2fM%.2f,%.2fH%.2f\" "
                           "stroke=\"%s\" fill=\"none\"/>\n",
                           px[run], py[run] - e, py[run] + e, px[run] - 3, py[run] - e, px[run] + 3,
                           px[run] - 3, py[run] + e, px[run] + 3, color);
        }
        if (s->markers)
            svg_buf_printf(b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2.8\" fill=\"%s\"/>\n", px[run],
                           py[run], color);
        run++;
    }
    polyline_flush(b, px, py, run, color, s->dashed, s->markers);
    free(px);
    free(py);
    free(idx);
}

static double cell_w(const struct svg_figure *f) {
    return f->cell_w > 0 ? f->cell_w : CELL_W;
}

/* a panel's height: CELL_H, and one legend row more for each legend row past the first of
 * the figure's longest legend (so that many series do not squeeze the plot) */
static double cell_h(const struct svg_figure *f) {
    int rows = 1;
    for (int i = 0; i < f->n_panels; i++) {
        int k = legend(NULL, &f->panels[i], MARGIN_L, cell_w(f) - MARGIN_R, 0, 0);
        rows = k > rows ? k : rows;
    }
    return CELL_H + (rows - 1) * LEGEND_H;
}

static void panel(struct svg_buf *b, const struct svg_figure *f, const struct svg_panel *p,
                  double x0, double y0, double h) {
    double l = x0 + MARGIN_L, r = x0 + cell_w(f) - MARGIN_R;
    svg_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"ptitle\">", l, y0 + 18);
    svg_buf_escape(b, p->title);
    svg_buf_printf(b, "</text>\n");
    int rows = legend(b, p, l, r, y0 + TITLE_H, 0);
    legend(b, p, l, r, y0 + TITLE_H, 1);
    double t = y0 + TITLE_H + rows * LEGEND_H + 8, bot = y0 + h - MARGIN_B;

    double xlo, xhi, ylo, yhi;
    data_range(p, &xlo, &xhi, &ylo, &yhi);
    int empty = !(xlo <= xhi);
    if (!empty && p->y_zero) {
        ylo = fmin(ylo, 0.0);
        yhi = fmax(yhi, 0.0);
    }
    struct svg_axis ax, ay;
    /* about one x tick per 90 px and one y tick per 45 px, fewer when labels are wide */
    int xt = (int)((r - l) / 90), yt = (int)((bot - t) / 45);
    svg_nice_axis(empty ? 0 : xlo, empty ? 1 : xhi, xt, f->x_integer, &ax);
    for (int tries = 0; tries < 4; tries++) {
        char a[48], z[48];
        svg_format_tick(a, sizeof(a), ax.lo, ax.step);
        svg_format_tick(z, sizeof(z), ax.hi, ax.step);
        double w = fmax(text_w(a, FONT), text_w(z, FONT)) + 10;
        if (ax.n_ticks < 3 || (r - l) / (ax.n_ticks - 1) >= w)
            break;
        svg_nice_axis(empty ? 0 : xlo, empty ? 1 : xhi, ax.n_ticks / 2, f->x_integer, &ax);
    }
    svg_nice_axis(empty ? 0 : ylo, empty ? 1 : yhi, yt < 2 ? 2 : yt, 0, &ay);

    ticks(b, &ay, 1, bot, t, l, r);
    ticks(b, &ax, 0, l, r, t, bot);
    svg_buf_printf(b,
                   "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                   "class=\"frame\"/>\n",
                   l, t, r - l, bot - t);
    svg_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", (l + r) / 2,
                   bot + FONT + 30);
    svg_buf_escape(b, f->xlabel);
    svg_buf_printf(b, "</text>\n");
    if (p->ylabel) {
        double cy = (t + bot) / 2, cx = x0 + 14;
        svg_buf_printf(b,
                       "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
                       "transform=\"rotate(-90 %.1f %.1f)\">",
                       cx, cy, cx, cy);
        svg_buf_escape(b, p->ylabel);
        svg_buf_printf(b, "</text>\n");
    }
    if (empty) {
        svg_buf_printf(b,
                       "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
                       "class=\"nodata\">no data</text>\n",
                       (l + r) / 2, (t + bot) / 2);
        return;
    }
    for (int k = 0; k < p->n_series; k++)
        draw_series(b, &p->series[k], k, &ax, &ay, l, r, t, bot);
}

void svg_render(struct svg_buf *out, const struct svg_figure *f) {
    int cols = f->cols > 1 ? f->cols : 1;
    if (cols > f->n_panels && f->n_panels > 0)
        cols = f->n_panels;
    int rows = f->n_panels > 0 ? (f->n_panels + cols - 1) / cols : 1;
    double head = f->title ? FIG_HEAD : 0, cw = cell_w(f), ch = cell_h(f);
    double w = cols * cw, h = head + rows * ch;
    svg_buf_printf(out,
                   "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                   "viewBox=\"0 0 %.0f %.0f\" font-family=\"Helvetica, Arial, sans-serif\" "
                   "font-size=\"%d\">\n",
                   w, h, w, h, FONT);
    svg_buf_printf(out, "<style>.grid{stroke:#e4e4e4;stroke-width:1}"
                        ".frame{fill:none;stroke:#888;stroke-width:1}"
                        ".ptitle{font-size:14px;font-weight:bold}"
                        ".ftitle{font-size:16px;font-weight:bold}"
                        ".nodata{fill:#999;font-size:14px}</style>\n");
    svg_buf_printf(out, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    if (f->title) {
        svg_buf_printf(out, "<text x=\"12\" y=\"22\" class=\"ftitle\">");
        svg_buf_escape(out, f->title);
        svg_buf_printf(out, "</text>\n");
    }
    for (int i = 0; i < f->n_panels; i++)
        panel(out, f, &f->panels[i], (i % cols) * cw, head + (i / cols) * ch, ch);
    svg_buf_printf(out, "</svg>\n");
}

int svg_write(const char *path, const struct svg_figure *f, char *err) {
    struct svg_buf b = {0};
    svg_render(&b, f);
    int rc = fs_write_atomic(path, b.s, b.n, err);
    svg_buf_free(&b);
    return rc;
}
