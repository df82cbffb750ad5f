/* Red-black SOR sweeps for the Brox increment system, one thread, float32 (see pipeline/flow.py, _sor_native).
 *
 * duv (B, 2, H+2, W+2): du, dv with a one-pixel zero frame, updated in place.
 * hx (B, H, W-1), vy (B, H-1, W): link weights; d11, d22, a12 (B, H, W); rhs (B, 2, H, W). All C-contiguous.
 * Per sweep: red pixels ((x + y) even) then black; at each pixel du first, dv with the new du:
 *   du <- (1-w) du + w (rhs_u + sum_n s_n du_n - a12 dv) / d11,   dv likewise with d22 and rhs_v.
 */
#include <stddef.h>
#include <math.h>
#include <stdlib.h>

void sor_rb(int B, int H, int W, float *duv, const float *hx, const float *vy, const float *d11,
            const float *d22, const float *a12, const float *rhs, int sweeps, float omega) {
    const ptrdiff_t Wp = W + 2, plane = (ptrdiff_t)(H + 2) * Wp, hw = (ptrdiff_t)H * W;
    float *k = malloc(sizeof(float) * 2 * B * hw);   /* omega / d11, omega / d22: no division in the sweeps */
    if (k) {
        for (ptrdiff_t i = 0; i < B * hw; ++i) {
            k[i] = omega / d11[i];
            k[B * hw + i] = omega / d22[i];
        }
    }
    for (int it = 0; it < sweeps; ++it) {
        for (int colour = 0; colour < 2; ++colour) {
            for (int b = 0; b < B; ++b) {
                float *du = duv + (ptrdiff_t)b * 2 * plane, *dv = du + plane;
                const float *hxb = hx + (ptrdiff_t)b * H * (W - 1), *vyb = vy + (ptrdiff_t)b * (H - 1) * W;
                const float *d11b = d11 + b * hw, *d22b = d22 + b * hw, *a12b = a12 + b * hw;
                const float *k11 = k ? k + b * hw : NULL, *k22 = k ? k + B * hw + b * hw : NULL;
                const float *ru = rhs + (ptrdiff_t)b * 2 * hw, *rv = ru + hw;
                for (int y = 0; y < H; ++y) {
                    for (int x = (y + colour) & 1; x < W; x += 2) {
                        const ptrdiff_t i = (ptrdiff_t)y * W + x, p = (ptrdiff_t)(y + 1) * Wp + x + 1;
                        const float sw = x > 0 ? hxb[y * (W - 1) + x - 1] : 0.f;
                        const float se = x < W - 1 ? hxb[y * (W - 1) + x] : 0.f;
                        const float sn = y > 0 ? vyb[(y - 1) * W + x] : 0.f;
                        const float ss = y < H - 1 ? vyb[y * W + x] : 0.f;
                        float su = ru[i] + sw * du[p - 1] + se * du[p + 1] + sn * du[p - Wp] + ss * du[p + Wp];
                        su -= a12b[i] * dv[p];
                        du[p] = (1.f - omega) * du[p] + (k11 ? k11[i] * su : omega * su / d11b[i]);
                        float sv = rv[i] + sw * dv[p - 1] + se * dv[p + 1] + sn * dv[p - Wp] + ss * dv[p + Wp];
                        sv -= a12b[i] * du[p];
                        dv[p] = (1.f - omega) * dv[p] + (k22 ? k22[i] * sv : omega * sv / d22b[i]);
                    }
                }
            }
        }
    }
    free(k);
}

/* Weighted median of the flow (see pipeline/flow.py, _weighted_median), one thread, float32.
 *
 * uv, out (B, 2, H, W); i0 (B, H, W); k odd; replicated borders. Weight of neighbour x' of x:
 * exp(-|x - x'|^2 / 2 sig_s^2 - (I0(x) - I0(x'))^2 / 2 sig_i^2). Per channel the result is the smallest
 * neighbour value v whose weight sum over {values <= v} reaches half the total: the first value whose
 * cumulative weight reaches half the total when the values are sorted (no sort: k^4 compare-adds, branchless).
 */
#define WMED_MAX 49 /* k <= 7; pipeline.flow runs larger windows in PyTorch */

void wmedian(int B, int H, int W, int k, const float *uv, const float *i0, float *out, float sig_s, float sig_i) {
    const int r = k / 2, n = k * k;
    const ptrdiff_t hw = (ptrdiff_t)H * W;
    float space[WMED_MAX], wgt[WMED_MAX], vu[WMED_MAX], vv[WMED_MAX], su[WMED_MAX], sv[WMED_MAX];
    if (n > WMED_MAX) return;
    for (int dy = -r; dy <= r; ++dy)
        for (int dx = -r; dx <= r; ++dx) space[(dy + r) * k + dx + r] = -(float)(dy * dy + dx * dx) / (2 * sig_s * sig_s);
    const float inv = 1.f / (2 * sig_i * sig_i);
    for (int b = 0; b < B; ++b) {
        const float *ib = i0 + b * hw, *ub = uv + 2 * b * hw, *vb = ub + hw;
        float *ou = out + 2 * b * hw, *ov = ou + hw;
        for (int y = 0; y < H; ++y) {
            for (int x = 0; x < W; ++x) {
                const float c = ib[(ptrdiff_t)y * W + x];
                float total = 0.f;
                for (int dy = -r, j = 0; dy <= r; ++dy) {
                    const int yy = y + dy < 0 ? 0 : (y + dy >= H ? H - 1 : y + dy);
                    for (int dx = -r; dx <= r; ++dx, ++j) {
                        const int xx = x + dx < 0 ? 0 : (x + dx >= W ? W - 1 : x + dx);
                        const ptrdiff_t q = (ptrdiff_t)yy * W + xx;
                        const float d = ib[q] - c, a = space[j] - d * d * inv;
                        wgt[j] = a > -80.f ? expf(a) : 0.f; /* below: < 2e-35 of the centre's 1, no denormals */
                        total += wgt[j];
                        vu[j] = ub[q];
                        vv[j] = vb[q];
                    }
                }
                const float half = 0.5f * total;
                for (int j = 0; j < n; ++j) su[j] = sv[j] = 0.f;
                for (int i = 0; i < n; ++i) { /* su[j]: the weight of the values <= vu[j], summed in order i */
                    const float ui = vu[i], vi = vv[i], wi = wgt[i];
                    for (int j = 0; j < n; ++j) {
                        su[j] += ui <= vu[j] ? wi : 0.f;
                        sv[j] += vi <= vv[j] ? wi : 0.f;
                    }
                }
                float bu = INFINITY, bv = INFINITY;
                for (int j = 0; j < n; ++j) {
                    bu = su[j] >= half && vu[j] < bu ? vu[j] : bu;
                    bv = sv[j] >= half && vv[j] < bv ? vv[j] : bv;
                }
                ou[(ptrdiff_t)y * W + x] = bu;
                ov[(ptrdiff_t)y * W + x] = bv;
            }
        }
    }
}
