/* Red-black SOR sweeps for the Brox increment system, one thread, float32 (see pipeline/flow.py, _sor_native).
 *
 * duv (B, 2, H+2, W+2): du, dv with a one-pixel zero frame, updated in place.
 * hx (B, H, W-1), vy (B, H-1, W): link weights; d11, d22, a12 (B, H, W); rhs (B, 2, H, W). All C-contiguous.
 * Per sweep: red pixels ((x + y) even) then black; at each pixel du first, dv with the new du:
 *   du <- (1-w) du + w (rhs_u + sum_n s_n du_n - a12 dv) / d11,   dv likewise with d22 and rhs_v.
 */
#include <stddef.h>
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
