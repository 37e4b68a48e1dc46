// LayerNorm over the last axis, forward and backward, for CPU training: MindSpore "aot" custom ops (built and
// wrapped by layer_norm_kernel.py). float32, x flattened to (N, D) rows.
//   LmanLayerNorm(x, gamma, beta, eps)          -> y (like x)
//   LmanLayerNormGrad(dy, x, gamma, eps)        -> dx (like x), dgamma (D,), dbeta (D,)
// with xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps) (biased variance, as torch and ops.LayerNorm), and
//   dx = rstd * (dy g - mean_D(dy g) - xhat * mean_D(dy g xhat)),  dgamma = sum_N dy xhat,  dbeta = sum_N dy.
//
// Why: MindSpore's CPU LayerNormGrad took 3.7 ms for a (2080, 96) input on a 2-core AMD EPYC, ~13 % of the visual
// warm-up's step (profiled, docs/performance.md); one pass per row here. The rows are split into at most
// kMaxThreads contiguous blocks ($LMAN_MS_KERNEL_THREADS, else $OMP_NUM_THREADS, else the hardware threads); each
// block sums dgamma / dbeta in its own buffer and the blocks are added in order, so the result depends only on the
// block count, not on scheduling. Row sums run in 16 float lanes added in double, column sums in double: the forward matches ops.LayerNorm to float
// rounding (tests/models/test_layer_norm_kernel.py). The backward recomputes each row's mean and rstd from x
// (one more pass over a row it reads anyway) instead of taking them from the forward: MindSpore hands the op's
// bprop only the forward's first output, and a second forward launch would write y again for nothing.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {
constexpr int kMaxThreads = 8;
constexpr int64_t kMinValuesPerThread = 1 << 15;  // below this a thread costs more than it saves

int thread_count(int64_t values) {
  static const int configured = [] {
    for (const char *name : {"LMAN_MS_KERNEL_THREADS", "OMP_NUM_THREADS"}) {
      const char *v = std::getenv(name);
      if (v != nullptr && std::atoi(v) > 0) return std::atoi(v);
    }
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }();
  const int64_t by_size = std::max<int64_t>(1, values / kMinValuesPerThread);
  return static_cast<int>(std::min<int64_t>({configured, kMaxThreads, by_size}));
}

// Runs body(block, begin, end) over `blocks` contiguous row ranges of [0, n), the first on the calling thread.
template <typename F>
void for_blocks(int64_t n, int blocks, F body) {
  std::vector<std::thread> helpers;
  const int64_t step = (n + blocks - 1) / blocks;
  for (int b = 1; b < blocks; b++) {
    const int64_t begin = std::min(n, b * step), end = std::min(n, (b + 1) * step);
    helpers.emplace_back([=] { body(b, begin, end); });
  }
  body(0, 0, std::min(n, step));
  for (auto &t : helpers) t.join();
}

bool all_float(int n, const char **dtypes) {
  for (int i = 0; i < n; i++)
    if (std::strcmp(dtypes[i], "float32") != 0) return false;
  return true;
}

// sum over i < d of f(i), in kLanes float partial sums (vectorised by the compiler) added in double at the end
constexpr int kLanes = 16;
template <typename F>
double lane_sum(int64_t d, F f) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= d; i += kLanes)
    for (int k = 0; k < kLanes; k++) acc[k] += f(i + k);
  double total = 0.0;
  for (; i < d; i++) total += f(i);
  for (int k = 0; k < kLanes; k++) total += acc[k];
  return total;
}

struct RowStats {
  float mean, rstd;
};

RowStats row_stats(const float *xr, int64_t d, double eps) {
  const float m = static_cast<float>(lane_sum(d, [&](int64_t i) { return xr[i]; }) / d);
  const double var = lane_sum(d, [&](int64_t i) { return (xr[i] - m) * (xr[i] - m); }) / d;
  return {m, static_cast<float>(1.0 / std::sqrt(var + eps))};
}

int64_t numel(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  return n;
}
}  // namespace

extern "C" int LmanLayerNorm(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                             void *stream, void *extra) {
  if (nparam != 5 || !all_float(nparam, dtypes) || ndims[0] < 1) return 1;
  const int64_t d = shapes[0][ndims[0] - 1], n = numel(ndims[0], shapes[0]) / std::max<int64_t>(d, 1);
  if (numel(ndims[1], shapes[1]) != d || numel(ndims[2], shapes[2]) != d) return 1;
  const float *x = static_cast<const float *>(params[0]), *g = static_cast<const float *>(params[1]),
              *b = static_cast<const float *>(params[2]);
  const double eps = *static_cast<const float *>(params[3]);
  float *y = static_cast<float *>(params[4]);
  for_blocks(n, thread_count(n * d), [&](int, int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; r++) {
      const float *xr = x + r * d;
      const RowStats st = row_stats(xr, d, eps);
      float *yr = y + r * d;
      for (int64_t i = 0; i < d; i++) yr[i] = (xr[i] - st.mean) * st.rstd * g[i] + b[i];
    }
  });
  return 0;
}

extern "C" int LmanLayerNormGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                 void *stream, void *extra) {
  if (nparam != 7 || !all_float(nparam, dtypes) || ndims[1] < 1) return 1;
  const int64_t d = shapes[1][ndims[1] - 1], n = numel(ndims[1], shapes[1]) / std::max<int64_t>(d, 1);
  if (numel(ndims[0], shapes[0]) != n * d || numel(ndims[2], shapes[2]) != d) return 1;
  const float *dy = static_cast<const float *>(params[0]), *x = static_cast<const float *>(params[1]),
              *g = static_cast<const float *>(params[2]);
  const double eps = *static_cast<const float *>(params[3]);
  float *dx = static_cast<float *>(params[4]), *dg = static_cast<float *>(params[5]),
        *db = static_cast<float *>(params[6]);
  const int blocks = thread_count(n * d);
  std::vector<double> partial(static_cast<size_t>(blocks) * 2 * d, 0.0);
  for_blocks(n, blocks, [&](int block, int64_t begin, int64_t end) {
    double *pg = partial.data() + static_cast<size_t>(block) * 2 * d, *pb = pg + d;
    std::vector<float> xhat(d), dxhat(d);
    for (int64_t r = begin; r < end; r++) {
      const float *xr = x + r * d, *dyr = dy + r * d;
      const RowStats st = row_stats(xr, d, eps);
      const float m = st.mean, rs = st.rstd;
      for (int64_t i = 0; i < d; i++) {
        xhat[i] = (xr[i] - m) * rs;
        dxhat[i] = dyr[i] * g[i];
        pg[i] += static_cast<double>(dyr[i] * xhat[i]);
        pb[i] += static_cast<double>(dyr[i]);
      }
      const float a = static_cast<float>(lane_sum(d, [&](int64_t i) { return dxhat[i]; }) / d);
      const float c = static_cast<float>(lane_sum(d, [&](int64_t i) { return dxhat[i] * xhat[i]; }) / d);
      float *dxr = dx + r * d;
      for (int64_t i = 0; i < d; i++) dxr[i] = rs * (dxhat[i] - a - xhat[i] * c);
    }
  });
  for (int64_t i = 0; i < d; i++) {
    double sg = 0.0, sb = 0.0;
    for (int block = 0; block < blocks; block++) {
      sg += partial[static_cast<size_t>(block) * 2 * d + i];
      sb += partial[static_cast<size_t>(block) * 2 * d + d + i];
    }
    dg[i] = static_cast<float>(sg);
    db[i] = static_cast<float>(sb);
  }
  return 0;
}
