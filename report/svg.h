/* report/svg.h -- a small SVG line-plot writer for the run dashboards (`headwise report`).
 * A figure is a grid of panels; each panel has a frame, grid lines, "nice" tick steps with
 * labels, a title, a y label and any number of series with a legend. Non-finite y values break
 * a line, isolated points are drawn as dots, and long series are downsampled (the min and max
 * of each bucket) to at most SVG_MAX_POINTS drawn points. Also a growable text buffer with XML
 * escaping, which the HTML and Markdown writers of report.c share. */
#ifndef HW_SVG_H
#define HW_SVG_H

#include <stddef.h>

#define SVG_MAX_POINTS 2000

/* A growable NUL-terminated string. Zero-initialise; svg_buf_free releases it. */
struct svg_buf {
    char *s;    /* the text, NUL-terminated (NULL while empty) */
    size_t n;   /* length without the NUL */
    size_t cap; /* allocated bytes */
};
void svg_buf_printf(struct svg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s with &, <, >, " and ' escaped (valid in XML text, attributes and HTML). */
void svg_buf_escape(struct svg_buf *b, const char *s);
void svg_buf_free(struct svg_buf *b);

/* One line on a panel. The arrays are borrowed for the duration of the render call. */
struct svg_series {
    const char *name;   /* legend text */
    const double *x;    /* (n) x values, ascending; non-finite points are skipped */
    const double *y;    /* (n) y values; NaN/Inf leaves a gap in the line */
    const double *yerr; /* (n) half-width of an error bar at each point, or NULL */
    size_t n;
    int color;   /* index into the palette; -1 = the series' position in the panel */
    int dashed;  /* draw a dashed line */
    int markers; /* draw a dot at every point (sparse series: validation, checkpoints) */
};

struct svg_panel {
    const char *title;               /* above the plot area */
    const char *ylabel;              /* rotated, left of the y tick labels; may be NULL */
    const struct svg_series *series; /* (n_series) */
    int n_series;                    /* a legend is drawn when there are two or more */
    int y_zero;                      /* the y axis includes 0 (rates, fractions) */
};

struct svg_figure {
    const char *title;              /* whole-figure title; may be NULL */
    const char *xlabel;             /* under every panel's x axis */
    const struct svg_panel *panels; /* (n_panels), laid out row by row */
    int n_panels;
    int cols;      /* panels per row; 0 or 1 = one column */
    int x_integer; /* x ticks are whole numbers (steps) */
    int cell_w;    /* one panel's width in pixels; 0 = 640. A panel is 320 pixels high plus one
                    * legend row (18) for each row past the first of the longest legend. */
};

/* Render the figure as a standalone SVG document, appended to out. */
void svg_render(struct svg_buf *out, const struct svg_figure *f);
/* Render and write atomically to path. Returns 0, or HW_EIO with one line in err. */
int svg_write(const char *path, const struct svg_figure *f, char *err);

/* An axis from lo to hi in steps of step (n_ticks ticks, both ends on a tick). */
struct svg_axis {
    double lo, hi, step;
    int n_ticks;
};
/* Loose "nice numbers" labelling of the data range [lo, hi] (after Heckbert, "Nice numbers for
 * graph labels", Graphics Gems I): a step of 1, 2 or 5 times a power of ten, both ends rounded
 * outwards to a tick, at most target + 1 ticks; an empty or one-value range is widened.
 * integer: the step is a whole number at least 1. */
void svg_nice_axis(double lo, double hi, int target, int integer, struct svg_axis *a);
/* The label of tick value v on an axis with the given step: just enough decimals for the step,
 * k/M/G for large round values, exponent form for tiny steps. */
void svg_format_tick(char *out, size_t n, double v, double step);
/* Indices of the points to draw when a series has more than max_points points: for each of
 * max_points/3 buckets the smallest and the largest finite y, and the first non-finite y (to keep
 * the gap), in index order. Writes at most max_points indices to idx (cap >= max_points) and
 * returns how many; with n <= max_points it returns 0..n-1. */
size_t svg_downsample(const double *y, size_t n, size_t max_points, size_t *idx);

#endif /* HW_SVG_H */
