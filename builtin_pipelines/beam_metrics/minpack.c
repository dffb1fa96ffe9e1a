/* The fits of the beam metrics: part of the translation unit native.py compiles (kernels.c).
 *
 * bm_lm: MINPACK's Levenberg-Marquardt (lmder with qrfac, lmpar, qrsolv: More's trust region,
 * the same constants, scaling and stopping tests) for CamServer's two models, the Gaussian
 * offset + amplitude * exp(-(x - mean)^2 / (2 sd^2)) and the coupling's straight line, with
 * lmdif's forward-difference Jacobian evaluated as numpy would: it walks the path scipy's
 * curve_fit walks, to the same bits on the same libm, without the Python calls (and with half
 * of the exponentials).
 *
 * Translated from MINPACK (Argonne National Laboratory, 1980; J. J. More, B. S. Garbow,
 * K. E. Hillstrom), distributed under the MINPACK license: "This product includes software
 * developed by the University of Chicago, as Operator of Argonne National Laboratory."
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* numpy's np.exp, called back in Python (native.py defines it; cffi's extern "Python"). */
static void bm_numpy_exp(const double *in, double *out, int64_t n);

/* The exponentials must be the very ones numpy computes for curve_fit: where numpy has its own
 * exp (AVX-512 builds) they come from np.exp through Python, else from the C library, which is
 * what numpy calls then (native.py checks which, once). */
typedef struct {
    int numpy_exp;   /* 1: bm_numpy_exp, 0: libm */
    double *args;    /* 2m scratch values: the exponents */
    double *values;  /* 2m scratch values: their exponentials */
} exp_source;

static void exponentials(const exp_source *src, const double *in, double *out, int64_t n)
{
    if (src->numpy_exp)
        bm_numpy_exp(in, out, n);
    else
        for (int64_t i = 0; i < n; i++)
            out[i] = exp(in[i]);
}

/* The C library's exp over an array, to compare with np.exp (native.py). */
void bm_libm_exp(const double *in, double *out, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = exp(in[i]);
}

/* A port of MINPACK's lmder, lmpar, qrfac and qrsolv for up to four parameters (the algorithm
 * of scipy's leastsq, step for step), with lmdif's forward-difference Jacobian computed
 * in place of numpy's (gauss_jacobian). The normal equations would be cheaper, but they square
 * the condition number, and on faint or broad peaks that alone sends the path elsewhere. Keep it
 * compiled without FMA contraction (-std=c99, no -march): the rounding must be numpy's. */

#define NP 4

enum {
    LM_NONFINITE = 10, /* a residual or a parameter became inf or nan */
    LM_NOMEM = 11,
};

static double enorm(int64_t n, const double *v)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += v[i] * v[i];
    return sqrt(s);
}

/* Residuals f = model - data at p, written as numpy evaluates the model for curve_fit:
 * offset + amplitude * exp(-(d**2) / (2 * sd**2)). The exponentials are kept for the Jacobian.
 * Returns the sum of squares, accumulated in index order as MINPACK's enorm does. */
static double gauss_residuals(const exp_source *src, const double *x, const double *y,
                              int64_t m, const double *p, double *f, double *e)
{
    const double offset = p[0], amplitude = p[1], mean = p[2], sd = p[3];
    const double den = 2.0 * (sd * sd);
    double *args = src->args;
    for (int64_t i = 0; i < m; i++) {
        double d = x[i] - mean;
        args[i] = -(d * d) / den;
    }
    exponentials(src, args, e, m);
    double ssq = 0.0;
    for (int64_t i = 0; i < m; i++) {
        f[i] = (offset + amplitude * e[i]) - y[i];
        ssq += f[i] * f[i];
    }
    return ssq;
}

/* Forward-difference step of lmdif (fdjac2): sqrt(epsfcn) |p|, or sqrt(epsfcn) for p = 0, with
 * curve_fit's epsfcn = DBL_EPSILON. */
static double fd_step(double v)
{
    const double eps = 1.4901161193847656e-08;
    double h = eps * fabs(v);
    return h == 0.0 ? eps : h;
}

/* The Jacobian lmdif computes at p (column-major, m x 4), given the residuals f and the
 * exponentials e at p: forward differences (f(p + h_j) - f(p)) / h_j, evaluated exactly as numpy
 * evaluates the model, so the columns (rounding noise included, about 1e-7 relative) are the
 * ones curve_fit sees. On faint or ill-conditioned profiles that noise alone decides where the
 * iteration goes; an exact derivative ends up elsewhere. Offset and amplitude need no new
 * exponential; mean and sd need one each. */
static void gauss_jacobian(const exp_source *src, const double *x, const double *y, int64_t m,
                           const double *p, const double *f, const double *e, double *jac,
                           double *colsq)
{
    const double offset = p[0], amplitude = p[1], mean = p[2], sd = p[3];
    const double h0 = fd_step(offset), h1 = fd_step(amplitude);
    const double h2 = fd_step(mean), h3 = fd_step(sd);
    const double offset_h = offset + h0, amplitude_h = amplitude + h1;
    const double mean_h = mean + h2, sd_h = sd + h3;
    const double den = 2.0 * (sd * sd), den_h = 2.0 * (sd_h * sd_h);
    double *j0 = jac, *j1 = jac + m, *j2 = jac + 2 * m, *j3 = jac + 3 * m;
    double *args = src->args, *moved = src->values;
    for (int64_t i = 0; i < m; i++) {
        double d = x[i] - mean_h;
        args[i] = -(d * d) / den;
        d = x[i] - mean;
        args[m + i] = -(d * d) / den_h;
    }
    exponentials(src, args, moved, 2 * m); /* the model at mean + h, then at sd + h */
    double q0 = 0.0, q1 = 0.0, q2 = 0.0, q3 = 0.0;
    for (int64_t i = 0; i < m; i++) {
        j0[i] = (((offset_h + amplitude * e[i]) - y[i]) - f[i]) / h0;
        j1[i] = (((offset + amplitude_h * e[i]) - y[i]) - f[i]) / h1;
        j2[i] = (((offset + amplitude * moved[i]) - y[i]) - f[i]) / h2;
        j3[i] = (((offset + amplitude * moved[m + i]) - y[i]) - f[i]) / h3;
        q0 += j0[i] * j0[i];
        q1 += j1[i] * j1[i];
        q2 += j2[i] * j2[i];
        q3 += j3[i] * j3[i];
    }
    colsq[0] = q0, colsq[1] = q1, colsq[2] = q2, colsq[3] = q3;
}

/* The straight line slope * x + offset of CamServer's coupling fit (curve_fit from p0 = [1, 1]),
 * minus the data, and its forward-difference Jacobian: exact, no exponential involved. */
static double line_residuals(const double *x, const double *y, int64_t m, const double *p,
                             double *f)
{
    double ssq = 0.0;
    for (int64_t i = 0; i < m; i++) {
        f[i] = (p[0] * x[i] + p[1]) - y[i];
        ssq += f[i] * f[i];
    }
    return ssq;
}

static void line_jacobian(const double *x, const double *y, int64_t m, const double *p,
                          const double *f, double *jac, double *colsq)
{
    const double h0 = fd_step(p[0]), h1 = fd_step(p[1]);
    const double slope_h = p[0] + h0, offset_h = p[1] + h1;
    double *j0 = jac, *j1 = jac + m;
    double q0 = 0.0, q1 = 0.0;
    for (int64_t i = 0; i < m; i++) {
        j0[i] = (((slope_h * x[i] + p[1]) - y[i]) - f[i]) / h0;
        j1[i] = (((p[0] * x[i] + offset_h) - y[i]) - f[i]) / h1;
        q0 += j0[i] * j0[i];
        q1 += j1[i] * j1[i];
    }
    colsq[0] = q0, colsq[1] = q1;
}

enum { MODEL_GAUSS = 0, MODEL_LINE = 1 };

static double model_residuals(int model, const exp_source *src, const double *x, const double *y,
                              int64_t m, const double *p, double *f, double *e)
{
    if (model == MODEL_LINE)
        return line_residuals(x, y, m, p, f);
    return gauss_residuals(src, x, y, m, p, f, e);
}

static void model_jacobian(int model, const exp_source *src, const double *x, const double *y,
                           int64_t m, const double *p, const double *f, const double *e,
                           double *jac, double *colsq)
{
    if (model == MODEL_LINE)
        line_jacobian(x, y, m, p, f, jac, colsq);
    else
        gauss_jacobian(src, x, y, m, p, f, e, jac, colsq);
}

/* MINPACK qrfac (Householder QR with column pivoting) of the m x 4 column-major a, followed by
 * lmder's Q^T f, in two passes per column instead of about seven: every element and every sum
 * sees the same operations in the same order as in MINPACK (so the same bits), but the
 * independent sums run side by side and the norms MINPACK recomputes come out of the update.
 * colsq holds the squared column norms; f is overwritten with Q^T f; col[j] ends as the j-th
 * column of the factored matrix (R's strict upper part above the diagonal). */
static void qrfac_qtf(int n, int64_t m, double *a, const double *colsq, double *f, double **col,
                      int *ipvt, double *rdiag, double *acnorm, double *qtf)
{
    const double epsmch = DBL_EPSILON;
    double wa[NP], norm2[NP]; /* norm2[k]: sum of col[k][i]^2 over i >= j */
    for (int j = 0; j < n; j++) {
        col[j] = a + j * m;
        acnorm[j] = sqrt(colsq[j]);
        rdiag[j] = wa[j] = acnorm[j];
        norm2[j] = colsq[j];
        ipvt[j] = j;
    }
    for (int j = 0; j < n; j++) {
        int kmax = j;
        for (int k = j; k < n; k++)
            if (rdiag[k] > rdiag[kmax])
                kmax = k;
        if (kmax != j) {
            double *tc = col[j];
            col[j] = col[kmax];
            col[kmax] = tc;
            double tn = norm2[j];
            norm2[j] = norm2[kmax];
            norm2[kmax] = tn;
            rdiag[kmax] = rdiag[j];
            wa[kmax] = wa[j];
            int t = ipvt[j];
            ipvt[j] = ipvt[kmax];
            ipvt[kmax] = t;
        }
        double *aj = col[j];
        double ajnorm = sqrt(norm2[j]);
        if (ajnorm != 0.0) {
            if (aj[j] < 0.0)
                ajnorm = -ajnorm;
            /* Pass 1: the Householder vector, and its products with the other columns and f
             * (the columns that do not exist alias f: computed and ignored). */
            double *c1 = j + 1 < n ? col[j + 1] : f, *c2 = j + 2 < n ? col[j + 2] : f;
            double *c3 = j + 3 < n ? col[j + 3] : f;
            aj[j] = aj[j] / ajnorm + 1.0;
            double s1 = aj[j] * c1[j], s2 = aj[j] * c2[j], s3 = aj[j] * c3[j], sf = aj[j] * f[j];
            for (int64_t i = j + 1; i < m; i++) {
                double v = aj[i] / ajnorm;
                aj[i] = v;
                s1 += v * c1[i];
                s2 += v * c2[i];
                s3 += v * c3[i];
                sf += v * f[i];
            }
            /* Pass 2: reflect the other columns and f; the column norms below row j. */
            double t1 = s1 / aj[j], t2 = s2 / aj[j], t3 = s3 / aj[j], tf = -sf / aj[j];
            double n1 = 0.0, n2 = 0.0, n3 = 0.0;
            double tk[NP] = {t1, t2, t3};
            for (int k = j + 1; k < n; k++)
                col[k][j] -= tk[k - j - 1] * aj[j];
            f[j] += aj[j] * tf;
            switch (n - 1 - j) { /* how many columns are left to reflect */
            case 3:
                for (int64_t i = j + 1; i < m; i++) {
                    c1[i] -= t1 * aj[i];
                    c2[i] -= t2 * aj[i];
                    c3[i] -= t3 * aj[i];
                    f[i] += aj[i] * tf;
                    n1 += c1[i] * c1[i];
                    n2 += c2[i] * c2[i];
                    n3 += c3[i] * c3[i];
                }
                break;
            case 2:
                for (int64_t i = j + 1; i < m; i++) {
                    c1[i] -= t1 * aj[i];
                    c2[i] -= t2 * aj[i];
                    f[i] += aj[i] * tf;
                    n1 += c1[i] * c1[i];
                    n2 += c2[i] * c2[i];
                }
                break;
            case 1:
                for (int64_t i = j + 1; i < m; i++) {
                    c1[i] -= t1 * aj[i];
                    f[i] += aj[i] * tf;
                    n1 += c1[i] * c1[i];
                }
                break;
            default:
                for (int64_t i = j + 1; i < m; i++)
                    f[i] += aj[i] * tf;
            }
            double nsq[3] = {n1, n2, n3};
            for (int k = j + 1; k < n; k++) {
                double *ak = col[k];
                norm2[k] = nsq[k - j - 1];
                if (rdiag[k] != 0.0) {
                    double temp = ak[j] / rdiag[k];
                    rdiag[k] *= sqrt(fmax(0.0, 1.0 - temp * temp));
                    if (0.05 * (rdiag[k] / wa[k]) * (rdiag[k] / wa[k]) <= epsmch) {
                        rdiag[k] = sqrt(norm2[k]);
                        wa[k] = rdiag[k];
                    }
                }
            }
        } else {
            /* A zero column: no reflection; the other norms lose row j (rare, so recomputed). */
            for (int k = j + 1; k < n; k++) {
                double sq = 0.0;
                for (int64_t i = j + 1; i < m; i++)
                    sq += col[k][i] * col[k][i];
                norm2[k] = sq;
            }
        }
        rdiag[j] = -ajnorm;
        qtf[j] = f[j];
    }
}

/* r is 4 x 4 column-major: R in the upper triangle; qrsolv leaves S^T in the strict lower. */
#define R(i, j) r[(i) + NP * (j)]

/* MINPACK qrsolv: solve (R^T R + D^T D) x = R^T qtb in the least-squares sense (D = diag). */
static void qrsolv(int n, double *r, const int *ipvt, const double *diag, const double *qtb, double *x,
                   double *sdiag)
{
    double wa[NP];
    for (int j = 0; j < n; j++) {
        for (int i = j; i < n; i++)
            R(i, j) = R(j, i);
        x[j] = R(j, j);
        wa[j] = qtb[j];
    }
    for (int j = 0; j < n; j++) {
        int l = ipvt[j];
        if (diag[l] != 0.0) {
            for (int k = j; k < n; k++)
                sdiag[k] = 0.0;
            sdiag[j] = diag[l];
            double qtbpj = 0.0;
            for (int k = j; k < n; k++) {
                if (sdiag[k] == 0.0)
                    continue;
                double c, s;
                if (fabs(R(k, k)) < fabs(sdiag[k])) {
                    double cotan = R(k, k) / sdiag[k];
                    s = 0.5 / sqrt(0.25 + 0.25 * cotan * cotan);
                    c = s * cotan;
                } else {
                    double tan = sdiag[k] / R(k, k);
                    c = 0.5 / sqrt(0.25 + 0.25 * tan * tan);
                    s = c * tan;
                }
                R(k, k) = c * R(k, k) + s * sdiag[k];
                double temp = c * wa[k] + s * qtbpj;
                qtbpj = -s * wa[k] + c * qtbpj;
                wa[k] = temp;
                for (int i = k + 1; i < n; i++) {
                    temp = c * R(i, k) + s * sdiag[i];
                    sdiag[i] = -s * R(i, k) + c * sdiag[i];
                    R(i, k) = temp;
                }
            }
        }
        sdiag[j] = R(j, j);
        R(j, j) = x[j];
    }
    int nsing = n;
    for (int j = 0; j < n; j++) {
        if (sdiag[j] == 0.0 && nsing == n)
            nsing = j;
        if (nsing < n)
            wa[j] = 0.0;
    }
    for (int j = nsing - 1; j >= 0; j--) {
        double sum = 0.0;
        for (int i = j + 1; i < nsing; i++)
            sum += R(i, j) * wa[i];
        wa[j] = (wa[j] - sum) / sdiag[j];
    }
    for (int j = 0; j < n; j++)
        x[ipvt[j]] = wa[j];
}

/* MINPACK lmpar: the Levenberg-Marquardt parameter par and the step x (to be negated) with
 * ||diag * x|| within 10% of delta, or the Gauss-Newton step when that is shorter. */
static void lmpar(int n, double *r, const int *ipvt, const double *diag, const double *qtb, double delta,
                  double *par, double *x)
{
    const double dwarf = DBL_MIN;
    double wa1[NP], wa2[NP], sdiag[NP];
    int nsing = n;
    for (int j = 0; j < n; j++) {
        wa1[j] = qtb[j];
        if (R(j, j) == 0.0 && nsing == n)
            nsing = j;
        if (nsing < n)
            wa1[j] = 0.0;
    }
    for (int j = nsing - 1; j >= 0; j--) {
        wa1[j] /= R(j, j);
        double temp = wa1[j];
        for (int i = 0; i < j; i++)
            wa1[i] -= R(i, j) * temp;
    }
    for (int j = 0; j < n; j++)
        x[ipvt[j]] = wa1[j];
    int iter = 0;
    for (int j = 0; j < n; j++)
        wa2[j] = diag[j] * x[j];
    double dxnorm = enorm(n, wa2);
    double fp = dxnorm - delta;
    if (fp <= 0.1 * delta) {
        *par = 0.0;
        return;
    }
    double parl = 0.0;
    if (nsing == n) {
        for (int j = 0; j < n; j++) {
            int l = ipvt[j];
            wa1[j] = diag[l] * (wa2[l] / dxnorm);
        }
        for (int j = 0; j < n; j++) {
            double sum = 0.0;
            for (int i = 0; i < j; i++)
                sum += R(i, j) * wa1[i];
            wa1[j] = (wa1[j] - sum) / R(j, j);
        }
        double temp = enorm(n, wa1);
        parl = ((fp / delta) / temp) / temp;
    }
    for (int j = 0; j < n; j++) {
        double sum = 0.0;
        for (int i = 0; i <= j; i++)
            sum += R(i, j) * qtb[i];
        wa1[j] = sum / diag[ipvt[j]];
    }
    double gnorm = enorm(n, wa1);
    double paru = gnorm / delta;
    if (paru == 0.0)
        paru = dwarf / fmin(delta, 0.1);
    double p = *par;
    p = fmax(p, parl);
    p = fmin(p, paru);
    if (p == 0.0)
        p = gnorm / dxnorm;
    for (;;) {
        iter++;
        if (p == 0.0)
            p = fmax(dwarf, 0.001 * paru);
        double temp = sqrt(p);
        for (int j = 0; j < n; j++)
            wa1[j] = temp * diag[j];
        qrsolv(n, r, ipvt, wa1, qtb, x, sdiag);
        for (int j = 0; j < n; j++)
            wa2[j] = diag[j] * x[j];
        dxnorm = enorm(n, wa2);
        temp = fp;
        fp = dxnorm - delta;
        if (fabs(fp) <= 0.1 * delta || (parl == 0.0 && fp <= temp && temp < 0.0) || iter == 10)
            break;
        for (int j = 0; j < n; j++) {
            int l = ipvt[j];
            wa1[j] = diag[l] * (wa2[l] / dxnorm);
        }
        for (int j = 0; j < n; j++) {
            wa1[j] /= sdiag[j];
            temp = wa1[j];
            for (int i = j + 1; i < n; i++)
                wa1[i] -= R(i, j) * temp;
        }
        temp = enorm(n, wa1);
        double parc = ((fp / delta) / temp) / temp;
        if (fp > 0.0)
            parl = fmax(parl, p);
        if (fp < 0.0)
            paru = fmin(paru, p);
        p = fmax(parl, p + parc);
    }
    *par = iter == 0 ? 0.0 : p;
}

/* sigma * sqrt(diag((R^T R)^-1)), unpermuted; inf for a zero pivot. */
static void standard_errors(int n, const double *r, const int *ipvt, double sigma, double *errors)
{
    double inv[NP * NP] = {0}; /* R^-1, upper triangular, column-major */
    for (int j = 0; j < n; j++)
        if (R(j, j) == 0.0 || !isfinite(sigma)) {
            for (int k = 0; k < n; k++)
                errors[k] = INFINITY;
            return;
        }
    for (int j = 0; j < n; j++) {
        inv[j + NP * j] = 1.0 / R(j, j);
        for (int i = j - 1; i >= 0; i--) {
            double sum = 0.0;
            for (int k = i + 1; k <= j; k++)
                sum += R(i, k) * inv[k + NP * j];
            inv[i + NP * j] = -sum / R(i, i);
        }
    }
    for (int i = 0; i < n; i++) {
        double s = 0.0;
        for (int j = i; j < n; j++)
            s += inv[i + NP * j] * inv[i + NP * j];
        errors[ipvt[i]] = sigma * sqrt(s);
    }
}

static int all_finite(const double *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

/* Fit p (in: the initial guess, out: the result) to the points (x, y). Returns MINPACK's info:
 * 1-4 converged, 5 maxfev reached, 6-8 tolerances too small; 0 for m < 4, LM_NONFINITE,
 * LM_NOMEM. counts[0] is the number of function evaluations lmdif would have made (a Jacobian
 * costs 4), counts[1] the number of Jacobians. errors gets the standard errors of the parameters
 * (from the last factorised Jacobian), inf where it is singular: how ill-posed the fit is. */
int bm_lm(int model, int numpy_exp, const double *x, const double *y, int64_t m, double *p,
          double ftol, double xtol, int64_t maxfev, int64_t *counts, double *errors)
{
    const int n = model == MODEL_LINE ? 2 : NP;
    const double epsmch = DBL_EPSILON;
    const double factor = 100.0;
    double diag[NP], acnorm[NP], rdiag[NP], qtf[NP], r[NP * NP] = {0};
    double wa1[NP], wa2[NP], wa3[NP];
    int ipvt[NP];
    int64_t nfev = 0, njev = 0;
    int info = 0;
    double par = 0.0, delta = 0.0, xnorm = 0.0;

    counts[0] = counts[1] = 0;
    if (m < n)
        return 0;
    double *work = (double *)malloc((size_t)m * 13 * sizeof(double));
    if (work == NULL)
        return LM_NOMEM;
    double *fvec = work, *wa4 = work + m, *e = work + 2 * m, *e4 = work + 3 * m;
    double *qtwork = work + 4 * m, *fjac = work + 5 * m;
    const exp_source src = {numpy_exp, work + 9 * m, work + 11 * m};
    double *col[NP], colsq[NP];

    double fnorm = sqrt(model_residuals(model, &src, x, y, m, p, fvec, e));
    nfev = 1;
    if (!isfinite(fnorm) || !all_finite(p, n)) {
        info = LM_NONFINITE;
        goto done;
    }
    for (int iter = 1;;) {
        model_jacobian(model, &src, x, y, m, p, fvec, e, fjac, colsq);
        njev++;
        nfev += n;
        if (!all_finite(colsq, n)) {
            info = LM_NONFINITE;
            goto done;
        }
        for (int64_t i = 0; i < m; i++)
            qtwork[i] = fvec[i];
        qrfac_qtf(n, m, fjac, colsq, qtwork, col, ipvt, rdiag, acnorm, qtf);
        if (iter == 1) {
            for (int j = 0; j < n; j++)
                diag[j] = acnorm[j] == 0.0 ? 1.0 : acnorm[j];
            for (int j = 0; j < n; j++)
                wa3[j] = diag[j] * p[j];
            xnorm = enorm(n, wa3);
            delta = factor * xnorm;
            if (delta == 0.0)
                delta = factor;
        }
        for (int j = 0; j < n; j++)
            for (int i = 0; i < n; i++)
                R(i, j) = i < j ? col[j][i] : i == j ? rdiag[j] : 0.0;
        double gnorm = 0.0;
        if (fnorm != 0.0)
            for (int j = 0; j < n; j++) {
                int l = ipvt[j];
                if (acnorm[l] == 0.0)
                    continue;
                double sum = 0.0;
                for (int i = 0; i <= j; i++)
                    sum += R(i, j) * (qtf[i] / fnorm);
                gnorm = fmax(gnorm, fabs(sum / acnorm[l]));
            }
        if (gnorm <= 0.0) { /* gtol = 0, as curve_fit */
            info = 4;
            goto done;
        }
        for (int j = 0; j < n; j++)
            diag[j] = fmax(diag[j], acnorm[j]);
        double ratio;
        do {
            lmpar(n, r, ipvt, diag, qtf, delta, &par, wa1);
            for (int j = 0; j < n; j++) {
                wa1[j] = -wa1[j];
                wa2[j] = p[j] + wa1[j];
                wa3[j] = diag[j] * wa1[j];
            }
            double pnorm = enorm(n, wa3);
            if (iter == 1)
                delta = fmin(delta, pnorm);
            double fnorm1 = sqrt(model_residuals(model, &src, x, y, m, wa2, wa4, e4));
            nfev++;
            if (!isfinite(fnorm1) || !all_finite(wa2, n)) {
                info = LM_NONFINITE;
                goto done;
            }
            double actred = -1.0;
            if (0.1 * fnorm1 < fnorm)
                actred = 1.0 - (fnorm1 / fnorm) * (fnorm1 / fnorm);
            for (int j = 0; j < n; j++) {
                wa3[j] = 0.0;
                double temp = wa1[ipvt[j]];
                for (int i = 0; i <= j; i++)
                    wa3[i] += R(i, j) * temp;
            }
            double temp1 = enorm(n, wa3) / fnorm;
            double temp2 = (sqrt(par) * pnorm) / fnorm;
            double prered = temp1 * temp1 + temp2 * temp2 / 0.5;
            double dirder = -(temp1 * temp1 + temp2 * temp2);
            ratio = prered != 0.0 ? actred / prered : 0.0;
            if (ratio <= 0.25) {
                double temp = actred >= 0.0 ? 0.5 : 0.5 * dirder / (dirder + 0.5 * actred);
                if (0.1 * fnorm1 >= fnorm || temp < 0.1)
                    temp = 0.1;
                delta = temp * fmin(delta, pnorm / 0.1);
                par = par / temp;
            } else if (par == 0.0 || ratio >= 0.75) {
                delta = pnorm / 0.5;
                par = 0.5 * par;
            }
            if (ratio >= 1e-4) {
                double *t;
                for (int j = 0; j < n; j++) {
                    p[j] = wa2[j];
                    wa2[j] = diag[j] * p[j];
                }
                t = fvec, fvec = wa4, wa4 = t;
                t = e, e = e4, e4 = t;
                xnorm = enorm(n, wa2);
                fnorm = fnorm1;
                iter++;
            }
            int small_f = fabs(actred) <= ftol && prered <= ftol && 0.5 * ratio <= 1.0;
            if (small_f)
                info = 1;
            if (delta <= xtol * xnorm)
                info = small_f ? 3 : 2;
            if (info != 0)
                goto done;
            if (nfev >= maxfev)
                info = 5;
            if (fabs(actred) <= epsmch && prered <= epsmch && 0.5 * ratio <= 1.0)
                info = 6;
            if (delta <= epsmch * xnorm)
                info = 7;
            if (gnorm <= epsmch)
                info = 8;
            if (info != 0)
                goto done;
        } while (ratio < 1e-4);
    }
done:
    free(work);
    counts[0] = nfev;
    counts[1] = njev;
    standard_errors(n, r, ipvt, njev > 0 ? fnorm / sqrt((double)(m - n)) : INFINITY, errors);
    return info;
}

#undef R

