// Global-norm clipping + torch.optim.AdamW over every trainable tensor in one MindSpore "aot" custom op (built and
// wrapped by adamw_kernel.py). float32. For n tensors and G parameter groups the inputs are
//   p_0..p_{n-1}, m_0..m_{n-1}, v_0..v_{n-1}   updated in place (the op's signature declares them written)
//   g_0..g_{n-1}                               gradients
//   lr (G,) float32, weight_decay (G,) float32 per group; group (n,) int32, each tensor's group
//   step (1,) int32, the step t after this update (1 on the first); hyper (3,) float32 = beta1, beta2, eps;
//   max_norm (1,) float32
// and the output (1,) float32 is the gradients' global L2 norm before clipping. With max_norm > 0 every gradient is
// scaled by max_norm / max(norm, max_norm) first (ops.clip_by_global_norm). Then, in torch's single-tensor order:
//   p *= 1 - lr wd;  m += (1 - b1) (g - m);  v = b2 v + (1 - b2) g^2;
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)     (bias corrections in double, as torch's)
//
// Why: MindSpore runs the same as ~5 ops per tensor (two to square and sum for the norm, one to scale, one
// AdamWeightDecay, the scalars), each a pass over the tensor and a launch; here it is two passes over the whole
// parameter set in one launch. The work is cut into chunks taken by the calling thread and helpers
// ($LMAN_MS_KERNEL_THREADS, else $OMP_NUM_THREADS, as the decode kernels); the norm sums each chunk in double and
// adds the chunks in a fixed order, so the result does not depend on the thread count or on which thread ran what.
// Built with -fno-math-errno (adamw_kernel.py): a sqrt that may set errno keeps the update loop from vectorising.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

namespace {
constexpr int64_t kChunk = int64_t{1} << 16;  // values per chunk: large enough to amortise taking it

struct Span {
  int tensor;
  int64_t begin, end;
};

struct Job {
  std::vector<float *> p, m, v;
  std::vector<const float *> g;
  std::vector<int> group;
  std::vector<float> lr, wd;
  float beta1 = 0, beta2 = 0, eps = 0, max_norm = 0;
  double bias1 = 1, root_bias2 = 1;
  std::vector<Span> spans;
  std::vector<double> partial;  // per span: sum of g^2
  float clip = 1.0f;
  std::atomic<int64_t> next_sum{0}, done_sum{0}, next_update{0}, done_update{0};

  void square_sums() {
    for (int64_t c; (c = next_sum.fetch_add(1)) < static_cast<int64_t>(spans.size());) {
      const Span &s = spans[c];
      const float *x = g[s.tensor];
      float acc[16] = {};
      int64_t i = s.begin;
      for (; i + 16 <= s.end; i += 16)
        for (int k = 0; k < 16; k++) acc[k] += x[i + k] * x[i + k];
      double total = 0.0;
      for (; i < s.end; i++) total += static_cast<double>(x[i]) * x[i];
      for (int k = 0; k < 16; k++) total += acc[k];
      partial[c] = total;
      done_sum.fetch_add(1, std::memory_order_release);
    }
  }

  void updates() {
    const float b1c = 1.0f - beta1, b2c = 1.0f - beta2;
    const float root2 = static_cast<float>(root_bias2);
    for (int64_t c; (c = next_update.fetch_add(1)) < static_cast<int64_t>(spans.size());) {
      const Span &s = spans[c];
      const int k = group[s.tensor];
      const float decay = 1.0f - lr[k] * wd[k];
      const float step_size = static_cast<float>(lr[k] / bias1);
      float *pp = p[s.tensor], *mm = m[s.tensor], *vv = v[s.tensor];
      const float *gg = g[s.tensor];
      for (int64_t i = s.begin; i < s.end; i++) {
        const float grad = gg[i] * clip;
        const float mi = mm[i] + b1c * (grad - mm[i]);
        const float vi = beta2 * vv[i] + b2c * grad * grad;
        mm[i] = mi;
        vv[i] = vi;
        pp[i] = pp[i] * decay - step_size * (mi / (std::sqrt(vi) / root2 + eps));
      }
      done_update.fetch_add(1, std::memory_order_release);
    }
  }

  void wait(const std::atomic<int64_t> &done) const {
    while (done.load(std::memory_order_acquire) < static_cast<int64_t>(spans.size())) std::this_thread::yield();
  }

  void set_clip() {
    double total = 0.0;
    for (double x : partial) total += x;
    const float norm = static_cast<float>(std::sqrt(total));
    clip = max_norm > 0.0f ? max_norm / std::max(norm, max_norm) : 1.0f;
  }

  // A helper: the norm chunks it can take, then (once every norm chunk is summed) update chunks. A helper the
  // scheduler starts late finds no chunk left and returns.
  static void help(const std::shared_ptr<Job> &job) {
    job->square_sums();
    job->wait(job->done_sum);
    while (job->clip_ready.load(std::memory_order_acquire) == 0) std::this_thread::yield();
    job->updates();
  }
  std::atomic<int> clip_ready{0};
};

int kernel_threads() {
  for (const char *name : {"LMAN_MS_KERNEL_THREADS", "OMP_NUM_THREADS"}) {
    const char *value = std::getenv(name);
    if (value != nullptr && std::atoi(value) > 0) return std::atoi(value);
  }
  return static_cast<int>(std::min(8u, std::max(1u, std::thread::hardware_concurrency())));
}

int64_t numel(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  return n;
}
}  // namespace

extern "C" int LmanClipAdamW(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                             void *stream, void *extra) {
  // 4n tensors, lr, weight_decay, group, step, hyper, max_norm, output
  if (nparam < 11 || (nparam - 7) % 4 != 0) return 1;
  const int n = (nparam - 7) / 4, base = 4 * n;
  for (int i = 0; i < base; i++)
    if (std::strcmp(dtypes[i], "float32") != 0 || numel(ndims[i], shapes[i]) != numel(ndims[i % n], shapes[i % n]))
      return 1;
  if (std::strcmp(dtypes[base + 2], "int32") != 0 || std::strcmp(dtypes[base + 3], "int32") != 0) return 1;
  const int groups = static_cast<int>(numel(ndims[base], shapes[base]));
  if (numel(ndims[base + 1], shapes[base + 1]) != groups || numel(ndims[base + 2], shapes[base + 2]) != n ||
      numel(ndims[base + 4], shapes[base + 4]) != 3 || numel(ndims[base + 5], shapes[base + 5]) != 1)
    return 1;

  auto job = std::make_shared<Job>();
  for (int i = 0; i < n; i++) {
    job->p.push_back(static_cast<float *>(params[i]));
    job->m.push_back(static_cast<float *>(params[n + i]));
    job->v.push_back(static_cast<float *>(params[2 * n + i]));
    job->g.push_back(static_cast<const float *>(params[3 * n + i]));
  }
  const float *lr = static_cast<const float *>(params[base]);
  const float *wd = static_cast<const float *>(params[base + 1]);
  job->lr.assign(lr, lr + groups);
  job->wd.assign(wd, wd + groups);
  const int32_t *group = static_cast<const int32_t *>(params[base + 2]);
  for (int i = 0; i < n; i++) {
    if (group[i] < 0 || group[i] >= groups) return 1;
    job->group.push_back(group[i]);
  }
  const int32_t step = static_cast<const int32_t *>(params[base + 3])[0];
  const float *hyper = static_cast<const float *>(params[base + 4]);
  job->beta1 = hyper[0];
  job->beta2 = hyper[1];
  job->eps = hyper[2];
  job->max_norm = static_cast<const float *>(params[base + 5])[0];
  job->bias1 = 1.0 - std::pow(static_cast<double>(job->beta1), step);
  job->root_bias2 = std::sqrt(1.0 - std::pow(static_cast<double>(job->beta2), step));
  for (int i = 0; i < n; i++) {
    const int64_t size = numel(ndims[i], shapes[i]);
    for (int64_t b = 0; b < size; b += kChunk) job->spans.push_back(Span{i, b, std::min(size, b + kChunk)});
  }
  job->partial.assign(job->spans.size(), 0.0);

  const int helpers = std::min<int64_t>(kernel_threads() - 1, static_cast<int64_t>(job->spans.size()) - 1);
  for (int h = 0; h < helpers; h++) std::thread(&Job::help, job).detach();
  job->square_sums();
  job->wait(job->done_sum);
  job->set_clip();
  job->clip_ready.store(1, std::memory_order_release);
  job->updates();
  job->wait(job->done_update);

  double total = 0.0;
  for (double x : job->partial) total += x;
  static_cast<float *>(params[nparam - 1])[0] = static_cast<float>(std::sqrt(total));
  return 0;
}
