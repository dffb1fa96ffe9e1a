/* Native kernels of the beam metrics, compiled by native.py through cffi on first use, in one
 * translation unit with minpack.c (the fits).
 *
 * bm_profiles_<type>: one pass over a row-strided integer image giving the column sums (x
 * profile), the row sums (y profile), both int64, and the minimum and maximum. Narrow types
 * accumulate in 32-bit blocks short enough never to overflow, then flush into int64, so the
 * results are the exact integer sums whatever the order.
 *
 * bm_center_of_mass: CamServer's centre of mass and RMS with Python's sequential sums.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* ---------------------------------------------------------------------------------------- */
/* Profiles                                                                                 */
/* ---------------------------------------------------------------------------------------- */

/* The profiles are worth AVX2 (twice as fast, and SSE4.1's unsigned 16-bit and 32-bit min/max),
 * but the build must run on any x86-64: GCC compiles an AVX2 and a baseline clone and picks one
 * when the module is loaded. Elsewhere the baseline alone. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define PROFILE_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PROFILE_CLONES
#endif

/* ROWS_BLOCK rows of |values| <= 2^16 fit a 32-bit column accumulator; COLS_CHUNK columns a
 * 32-bit row accumulator. 32-bit element types accumulate straight into 64 bits. Rows go
 * four at a time (the last few one by one): the column accumulators are read and written
 * once per four rows, which takes the kernel from about 1.9 to 1.5 ms on a 2560x2160 uint16
 * frame that is not in the cache (reading it alone takes about 1.05 ms). */
#define DEFINE_PROFILES(NAME, T, ACC, ROWS_BLOCK, COLS_CHUNK)                                  \
    PROFILE_CLONES int NAME(const T *image, int64_t rows, int64_t cols, int64_t row_stride, int64_t *x_profile, \
             int64_t *y_profile, int64_t *min_max)                                              \
    {                                                                                           \
        if (rows <= 0 || cols <= 0)                                                             \
            return -1;                                                                          \
        ACC *acc = (ACC *)malloc((size_t)cols * sizeof(ACC));                                   \
        if (acc == NULL)                                                                        \
            return -2;                                                                          \
        T lo = image[0], hi = image[0];                                                         \
        for (int64_t c = 0; c < cols; c++)                                                      \
            x_profile[c] = 0;                                                                   \
        for (int64_t r0 = 0; r0 < rows; r0 += (ROWS_BLOCK)) {                                   \
            int64_t r1 = rows - r0 < (ROWS_BLOCK) ? rows : r0 + (ROWS_BLOCK);                   \
            for (int64_t c = 0; c < cols; c++)                                                  \
                acc[c] = 0;                                                                     \
            int64_t r = r0;                                                                     \
            /* Four rows a pass: one load and store of the column accumulators for four rows. */ \
            for (; r + 4 <= r1; r += 4) {                                                       \
                const T *a = image + r * row_stride, *b = a + row_stride;                       \
                const T *d = b + row_stride, *e = d + row_stride;                               \
                int64_t sa = 0, sb = 0, sd = 0, se = 0;                                         \
                for (int64_t c0 = 0; c0 < cols; c0 += (COLS_CHUNK)) {                           \
                    int64_t c1 = cols - c0 < (COLS_CHUNK) ? cols : c0 + (COLS_CHUNK);           \
                    ACC pa = 0, pb = 0, pd = 0, pe = 0;                                         \
                    T l = a[c0], h = a[c0];                                                     \
                    for (int64_t c = c0; c < c1; c++) {                                         \
                        T va = a[c], vb = b[c], vd = d[c], ve = e[c];                           \
                        pa += (ACC)va; pb += (ACC)vb; pd += (ACC)vd; pe += (ACC)ve;             \
                        acc[c] += ((ACC)va + (ACC)vb) + ((ACC)vd + (ACC)ve);                    \
                        T l1 = va < vb ? va : vb, l2 = vd < ve ? vd : ve;                       \
                        T h1 = va > vb ? va : vb, h2 = vd > ve ? vd : ve;                       \
                        l1 = l1 < l2 ? l1 : l2; h1 = h1 > h2 ? h1 : h2;                         \
                        l = l1 < l ? l1 : l;                                                    \
                        h = h1 > h ? h1 : h;                                                    \
                    }                                                                           \
                    sa += (int64_t)pa; sb += (int64_t)pb; sd += (int64_t)pd; se += (int64_t)pe; \
                    lo = l < lo ? l : lo;                                                       \
                    hi = h > hi ? h : hi;                                                       \
                }                                                                               \
                y_profile[r] = sa; y_profile[r + 1] = sb;                                       \
                y_profile[r + 2] = sd; y_profile[r + 3] = se;                                   \
            }                                                                                   \
            for (; r < r1; r++) {                                                               \
                const T *row = image + r * row_stride;                                          \
                int64_t row_sum = 0;                                                            \
                for (int64_t c0 = 0; c0 < cols; c0 += (COLS_CHUNK)) {                           \
                    int64_t c1 = cols - c0 < (COLS_CHUNK) ? cols : c0 + (COLS_CHUNK);           \
                    ACC part = 0;                                                               \
                    T row_lo = row[c0], row_hi = row[c0];                                       \
                    for (int64_t c = c0; c < c1; c++) {                                         \
                        T v = row[c];                                                           \
                        acc[c] += (ACC)v;                                                       \
                        part += (ACC)v;                                                         \
                        row_lo = v < row_lo ? v : row_lo;                                       \
                        row_hi = v > row_hi ? v : row_hi;                                       \
                    }                                                                           \
                    row_sum += (int64_t)part;                                                   \
                    lo = row_lo < lo ? row_lo : lo;                                             \
                    hi = row_hi > hi ? row_hi : hi;                                             \
                }                                                                               \
                y_profile[r] = row_sum;                                                         \
            }                                                                                   \
            for (int64_t c = 0; c < cols; c++)                                                  \
                x_profile[c] += (int64_t)acc[c];                                                \
        }                                                                                       \
        free(acc);                                                                              \
        min_max[0] = (int64_t)lo;                                                               \
        min_max[1] = (int64_t)hi;                                                               \
        return 0;                                                                               \
    }
DEFINE_PROFILES(bm_profiles_uint8, uint8_t, uint32_t, 1 << 23, 1 << 23)
DEFINE_PROFILES(bm_profiles_uint16, uint16_t, uint32_t, 1 << 16, 1 << 16)
DEFINE_PROFILES(bm_profiles_int8, int8_t, int32_t, 1 << 23, 1 << 23)
DEFINE_PROFILES(bm_profiles_int16, int16_t, int32_t, (1 << 15) - 1, (1 << 15) - 1)
DEFINE_PROFILES(bm_profiles_uint32, uint32_t, int64_t, INT64_MAX, INT64_MAX)
DEFINE_PROFILES(bm_profiles_int32, int32_t, int64_t, INT64_MAX, INT64_MAX)

/* ---------------------------------------------------------------------------------------- */
/* Centre of mass and RMS                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* p holds profile - fit offset and is overwritten. The sums run in index order, one addition at
 * a time, as Python's built-in sum does over a numpy array (and no compiler reassociates them
 * without -ffast-math). out = {centre of mass, rms}. */
void bm_center_of_mass(const double *x, double *p, int64_t m, double mean, double sd, double *out)
{
    double s = 0.0;
    for (int64_t i = 0; i < m; i++)
        s += p[i];
    if (s != 0.0)
        for (int64_t i = 0; i < m; i++)
            p[i] = p[i] / s;
    const double cut = 5.0 * sd;
    for (int64_t i = 0; i < m; i++)
        if (fabs(x[i] - mean) > cut)
            p[i] = 0.0;
    double com = 0.0;
    for (int64_t i = 0; i < m; i++)
        com += x[i] * p[i];
    double second = 0.0;
    for (int64_t i = 0; i < m; i++) {
        double d = x[i] - com;
        second += (d * d) * p[i];
    }
    out[0] = com;
    out[1] = sqrt(fabs(second));
}
