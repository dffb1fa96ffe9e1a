/*
 * projections_ext.c: an example C extension for pipevisor's Python runner (copy it to start).
 *
 * Drop it into the registry (or a JSON entry with "program": "projections_ext.c") and the
 * runner compiles it on first use. For every image it sends
 *
 *   x_profile  int64[width]   column sums (numpy: image.sum(axis=0, dtype=np.int64))
 *   y_profile  int64[height]  row sums    (numpy: image.sum(axis=1, dtype=np.int64))
 *   min_value, max_value      of the image's type
 *
 * all from one pass over the image. Pixels below the parameter "threshold", when it is above 0,
 * count as 0 in the profiles (min and max are of the raw image). Images of 8 or 16 bits, signed or
 * not: the ABI (pipevisor_ext.h) is included before this file.
 *
 * Why it is fast: sums accumulate in 32 bits (no overflow for up to 65536 rows or columns of
 * 16-bit pixels) and four rows share one pass over the column sums, so the inner loop is plain
 * loads, adds and compares that the compiler vectorises (AVX2 where the CPU has it).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* ROWS_BLOCK rows of 16-bit pixels fit a 32-bit column sum, COLS_CHUNK columns a 32-bit row sum. */
#define ROWS_BLOCK 65536
#define COLS_CHUNK 65536

/* GCC builds an AVX2 and a baseline version and picks one when the module loads: the cached
 * build runs on any x86-64. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

static int read_threshold(const pv_ext *ext, double *threshold)
{
    *threshold = 0;
    int found = ext->number(ext, "threshold", threshold);
    if (found >= 0 && *threshold >= 0 && *threshold <= 65535)
        return 0;
    char message[200];
    const char *text = ext->string(ext, "threshold");
    if (found > 0)
        snprintf(message, sizeof message, "threshold must be a number from 0 to 65535, got %g",
                 *threshold);
    else
        snprintf(message, sizeof message, "threshold must be a number from 0 to 65535, got %.60s",
                 text ? text : "a value of another type");
    ext->error(ext, message);
    return -1;
}

int pv_configure(const pv_ext *ext)
{
    double threshold;
    return read_threshold(ext, &threshold) < 0 ? PV_ERROR : PV_SEND;
}

/* One definition per pixel type T (with ACC its 32-bit accumulator). */
#define DEFINE_PROJECT(NAME, T, ACC)                                                           \
    CLONES static void NAME(const pv_image *image, T low, int64_t *x, int64_t *y, ACC *acc,    \
                            T *lo_hi)                                                          \
    {                                                                                          \
        const int64_t rows = image->height, cols = image->width;                               \
        const char *base = (const char *)image->data;                                          \
        T lo = *(const T *)base, hi = lo;                                                      \
        for (int64_t r0 = 0; r0 < rows; r0 += ROWS_BLOCK) {                                    \
            int64_t r1 = rows - r0 < ROWS_BLOCK ? rows : r0 + ROWS_BLOCK;                      \
            for (int64_t c = 0; c < cols; c++)                                                 \
                acc[c] = 0;                                                                    \
            int64_t r = r0;                                                                    \
            /* Four rows a pass: one load and store of the column sums for four rows. */       \
            for (; r + 4 <= r1; r += 4) {                                                      \
                const T *a = (const T *)(base + r * image->row_stride);                        \
                const T *b = (const T *)(base + (r + 1) * image->row_stride);                  \
                const T *d = (const T *)(base + (r + 2) * image->row_stride);                  \
                const T *e = (const T *)(base + (r + 3) * image->row_stride);                  \
                int64_t sa = 0, sb = 0, sd = 0, se = 0;                                        \
                for (int64_t c0 = 0; c0 < cols; c0 += COLS_CHUNK) {                            \
                    int64_t c1 = cols - c0 < COLS_CHUNK ? cols : c0 + COLS_CHUNK;              \
                    ACC pa = 0, pb = 0, pd = 0, pe = 0;                                        \
                    T l = lo, h = hi;                                                          \
                    for (int64_t c = c0; c < c1; c++) {                                        \
                        T va = a[c], vb = b[c], vd = d[c], ve = e[c];                          \
                        T l1 = va < vb ? va : vb, l2 = vd < ve ? vd : ve;                      \
                        T h1 = va > vb ? va : vb, h2 = vd > ve ? vd : ve;                      \
                        l1 = l1 < l2 ? l1 : l2;                                                \
                        h1 = h1 > h2 ? h1 : h2;                                                \
                        l = l1 < l ? l1 : l;                                                   \
                        h = h1 > h ? h1 : h;                                                   \
                        va = va < low ? 0 : va;                                                \
                        vb = vb < low ? 0 : vb;                                                \
                        vd = vd < low ? 0 : vd;                                                \
                        ve = ve < low ? 0 : ve;                                                \
                        pa += (ACC)va; pb += (ACC)vb; pd += (ACC)vd; pe += (ACC)ve;            \
                        acc[c] += ((ACC)va + (ACC)vb) + ((ACC)vd + (ACC)ve);                   \
                    }                                                                          \
                    sa += pa; sb += pb; sd += pd; se += pe;                                    \
                    lo = l; hi = h;                                                            \
                }                                                                              \
                y[r] = sa; y[r + 1] = sb; y[r + 2] = sd; y[r + 3] = se;                        \
            }                                                                                  \
            for (; r < r1; r++) {                                                              \
                const T *row = (const T *)(base + r * image->row_stride);                      \
                int64_t sum = 0;                                                               \
                for (int64_t c = 0; c < cols; c++) {                                           \
                    T v = row[c];                                                              \
                    lo = v < lo ? v : lo;                                                      \
                    hi = v > hi ? v : hi;                                                      \
                    v = v < low ? 0 : v;                                                       \
                    sum += v;                                                                  \
                    acc[c] += (ACC)v;                                                          \
                }                                                                              \
                y[r] = sum;                                                                    \
            }                                                                                  \
            for (int64_t c = 0; c < cols; c++)                                                 \
                x[c] += (int64_t)acc[c];                                                       \
        }                                                                                      \
        lo_hi[0] = lo;                                                                         \
        lo_hi[1] = hi;                                                                         \
    }

DEFINE_PROJECT(project_uint8, uint8_t, uint32_t)
DEFINE_PROJECT(project_int8, int8_t, int32_t)
DEFINE_PROJECT(project_uint16, uint16_t, uint32_t)
DEFINE_PROJECT(project_int16, int16_t, int32_t)

int pv_process_image(const pv_image *image, const pv_ext *ext)
{
    double threshold;
    if (read_threshold(ext, &threshold) < 0)
        return PV_ERROR;
    int64_t w = image->width, h = image->height;
    if (w <= 0 || h <= 0)
        return PV_SKIP;
    int64_t *x = ext->array(ext, "x_profile", PV_INT64, 1, &w);
    int64_t *y = ext->array(ext, "y_profile", PV_INT64, 1, &h);
    if (!x || !y)
        return PV_ERROR;
    uint32_t *acc = malloc((size_t)w * sizeof *acc); /* 32-bit sums of one block of rows */
    if (!acc) {
        ext->error(ext, "out of memory");
        return PV_ERROR;
    }
    int result = PV_SEND;
    switch (image->dtype) {
    case PV_UINT8: {
        uint8_t lo_hi[2], low = threshold > 255 ? 255 : (uint8_t)threshold;
        project_uint8(image, low, x, y, acc, lo_hi);
        ext->scalar(ext, "min_value", PV_UINT8, &lo_hi[0]);
        ext->scalar(ext, "max_value", PV_UINT8, &lo_hi[1]);
        break;
    }
    case PV_INT8: {
        int8_t lo_hi[2], low = threshold > 0 ? (int8_t)(threshold > 127 ? 127 : threshold) : INT8_MIN;
        project_int8(image, low, x, y, (int32_t *)acc, lo_hi);
        ext->scalar(ext, "min_value", PV_INT8, &lo_hi[0]);
        ext->scalar(ext, "max_value", PV_INT8, &lo_hi[1]);
        break;
    }
    case PV_UINT16: {
        uint16_t lo_hi[2], low = (uint16_t)threshold;
        project_uint16(image, low, x, y, acc, lo_hi);
        ext->scalar(ext, "min_value", PV_UINT16, &lo_hi[0]);
        ext->scalar(ext, "max_value", PV_UINT16, &lo_hi[1]);
        break;
    }
    case PV_INT16: {
        int16_t lo_hi[2];
        int16_t low = threshold > 0 ? (int16_t)(threshold > 32767 ? 32767 : threshold) : INT16_MIN;
        project_int16(image, low, x, y, (int32_t *)acc, lo_hi);
        ext->scalar(ext, "min_value", PV_INT16, &lo_hi[0]);
        ext->scalar(ext, "max_value", PV_INT16, &lo_hi[1]);
        break;
    }
    default:
        ext->error(ext, "projections_ext.c takes 8- and 16-bit images");
        result = PV_ERROR;
    }
    free(acc);
    return result;
}
