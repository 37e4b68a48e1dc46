// Fused LLaMA decode-step kernels for CPU, as MindSpore "aot" custom ops (built and wrapped by decode_kernels.py).
// float32, row-major. x is (M, K), M the rows of one step (one per sequence), leading dimensions flattened into M;
// weights are mindformers Linear weights (N, K); g an RMSNorm gain (K,) and eps (1,):
//   LmanGemv(x, w)                                   -> x . w^T
//   LmanNormGemv(x, g, eps, w)                       -> rms(x) . w^T                    (final norm + LM head)
//   LmanNormGatedGemv(x, g, eps, gate, up)           -> silu(rms(x) . gate^T) * (rms(x) . up^T)   (FFN input)
//   LmanNormQkvRope(x, g, eps, wq, wk, wv, cos, sin) -> rope(rms(x) . wq^T), rope(rms(x) . wk^T), rms(x) . wv^T
//   LmanAttention(q, keys, values, pad_count, write_index, layout) -> context, shaped like q (B, 1, H * D)
// rms(x) = x / sqrt(mean(x^2) + eps) * g as mindformers' LlamaRMSNorm; rope the rotate-half rotary embedding of
// each head of size D, cos and sin the (M, D) table rows of each row's position (RotaryEmbedding, use_rope_slice).
// LmanAttention reads the flat cache buffers (B * KVH * L, D) of inplace_cache.py; pad_count (B, 1), write_index
// () and layout = [KVH, L] are int32. Query head h of sequence b attends to the slots pad_count[b] .. write_index
// of key/value head h / (H / KVH), scores scaled by 1/sqrt(D), softmax in float32. mindformers adds -10000 to the
// other slots' scores, whose exp then underflows to exactly 0: skipping them gives the same result without reading
// them (they may hold keys of an earlier, longer generation).
//
// Why: a decode step multiplies one row per sequence by every weight matrix, a memory-bound product. MindSpore's
// CPU MatMul (oneDNN with a transposed weight) runs it 1.3-2x slower than a plain dot-product loop streaming each
// weight row once, which matches PyTorch's MKL on the generation benchmark's sizes. And every MindSpore op costs
// 10-40 us of dispatch at these sizes: fused, a layer is ~10 ops instead of ~50. Several weight rows per pass share
// each load of x; the 16-wide vector type is lowered to the widest SIMD of the build machine (-march=native).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <pthread.h>

namespace {
typedef float vec16 __attribute__((vector_size(64)));

inline vec16 load(const float *p) {
  vec16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline float sum(vec16 v) {
  float s = 0.0f;
  for (int i = 0; i < 16; i++) s += v[i];
  return s;
}

inline float dot_tail(const float *x, const float *w, int64_t from, int64_t k) {
  float s = 0.0f;
  for (int64_t i = from; i < k; i++) s += x[i] * w[i];
  return s;
}

// Weight rows per pass: their accumulators must stay in registers (8 x 16 floats needs AVX-512's 32 registers).
#ifdef __AVX512F__
constexpr int kRows = 8;
#else
constexpr int kRows = 4;
#endif

// y[j] = x . w[j] for j < n
void gemv_row(const float *x, const float *w, float *y, int64_t n, int64_t k) {
  const int64_t k16 = k - k % 16;
  int64_t j = 0;
  for (; j + kRows <= n; j += kRows) {
    const float *wj = w + j * k;
    vec16 acc[kRows] = {};
    for (int64_t i = 0; i < k16; i += 16) {
      const vec16 xv = load(x + i);
      for (int r = 0; r < kRows; r++) acc[r] += xv * load(wj + r * k + i);
    }
    for (int r = 0; r < kRows; r++) y[j + r] = sum(acc[r]) + dot_tail(x, wj + r * k, k16, k);
  }
  for (; j < n; j++) {
    const float *wj = w + j * k;
    vec16 a = {};
    for (int64_t i = 0; i < k16; i += 16) a += load(x + i) * load(wj + i);
    y[j] = sum(a) + dot_tail(x, wj, k16, k);
  }
}

// out = x / sqrt(mean(x^2) + eps) * g, in mindformers' LlamaRMSNorm order of operations
void rms_norm(const float *x, const float *g, float eps, float *out, int64_t k) {
  float ss = 0.0f;
  for (int64_t i = 0; i < k; i++) ss += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(ss / static_cast<float>(k) + eps);
  for (int64_t i = 0; i < k; i++) out[i] = x[i] * scale * g[i];
}

// rotate-half rotary embedding of every head of size d in y (n values)
void rope(float *y, const float *cos, const float *sin, int64_t n, int64_t d) {
  const int64_t half = d / 2;
  for (int64_t h = 0; h < n; h += d) {
    float *v = y + h;
    for (int64_t i = 0; i < half; i++) {
      const float a = v[i], b = v[i + half];
      v[i] = a * cos[i] - b * sin[i];
      v[i + half] = b * cos[i + half] + a * sin[i + half];
    }
  }
}

// ---- sharing a product's rows with helper threads -------------------------------------------------------------
// Why: PyTorch splits each product over its intra-op threads, and a decode step is mostly products. Helpers sleep on
// a condition variable (no spinning between products: the machine may be shared) and take chunks of rows as they
// wake, the calling thread (MindSpore's) takes chunks too and waits only for chunks a helper has started, so a helper
// that is not scheduled in time costs nothing. Threads: $LMAN_MS_KERNEL_THREADS, else $OMP_NUM_THREADS (as OpenMP
// libraries do), else the hardware's up to 8; products under kShareMacs multiply-adds stay on the caller.
constexpr int64_t kChunkRows = 32;
constexpr int64_t kShareMacs = int64_t{1} << 19;

// Rows j0..j1 of x . w^T, or of silu(x . w^T) * (x . up^T) when up is set, for every row r of x (m, k), into
// y[r * n + j].
void product_rows(const float *x, const float *w, const float *up, float *y, int64_t m, int64_t n, int64_t k,
                  int64_t j0, int64_t j1) {
  float up_rows[kChunkRows];
  for (int64_t r = 0; r < m; r++) {
    float *out = y + r * n;
    gemv_row(x + r * k, w + j0 * k, out + j0, j1 - j0, k);
    if (up == nullptr) continue;
    for (int64_t j = j0; j < j1; j += kChunkRows) {
      const int64_t len = std::min(kChunkRows, j1 - j);
      gemv_row(x + r * k, up + j * k, up_rows, len, k);
      for (int64_t i = 0; i < len; i++) out[j + i] = out[j + i] / (1.0f + std::exp(-out[j + i])) * up_rows[i];
    }
  }
}

struct Job {
  const float *x, *w, *up;
  float *y;
  int64_t m, n, k, chunks;
  std::atomic<int64_t> next{0}, done{0};

  // Takes and runs chunks until none is left; a helper's late call finds none and touches nothing.
  void work() {
    for (int64_t c; (c = next.fetch_add(1)) < chunks;) {
      product_rows(x, w, up, y, m, n, k, c * kChunkRows, std::min(n, (c + 1) * kChunkRows));
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

class Helpers {
 public:
  // Never destroyed: the detached threads use it until the process ends. A forked child has none of the threads
  // (and maybe a copy of a locked mutex): it starts a fresh set.
  static Helpers &get() {
    static std::once_flag once;
    std::call_once(once, [] {
      instance() = new Helpers();
      pthread_atfork(nullptr, nullptr, [] { instance() = new Helpers(); });
    });
    return *instance();
  }

  void post(const std::shared_ptr<Job> &job, int count) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (; started_ < count; started_++) std::thread(&Helpers::loop, this, started_).detach();
      job_ = job;
      active_ = count;
      generation_++;
    }
    wake_.notify_all();
  }

 private:
  void loop(int index) {
    uint64_t seen = 0;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (index >= active_) continue;
        job = job_;
      }
      job->work();
    }
  }

  static Helpers *&instance() {
    static Helpers *current = nullptr;
    return current;
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::shared_ptr<Job> job_;
  uint64_t generation_ = 0;
  int started_ = 0, active_ = 0;
};

int kernel_threads() {
  for (const char *name : {"LMAN_MS_KERNEL_THREADS", "OMP_NUM_THREADS"}) {
    const char *value = std::getenv(name);
    if (value != nullptr && std::atoi(value) > 0) return std::atoi(value);
  }
  // memory-bound products stop scaling long before the core count of a large server
  return static_cast<int>(std::min(8u, std::max(1u, std::thread::hardware_concurrency())));
}

// y (m, n) = x . w^T, or the gated product with up
void product(const float *x, const float *w, const float *up, float *y, int64_t m, int64_t n, int64_t k) {
  const int threads = kernel_threads();
  if (threads <= 1 || m * n * k * (up == nullptr ? 1 : 2) < kShareMacs) {
    product_rows(x, w, up, y, m, n, k, 0, n);
    return;
  }
  auto job = std::make_shared<Job>();
  job->x = x;
  job->w = w;
  job->up = up;
  job->y = y;
  job->m = m;
  job->n = n;
  job->k = k;
  job->chunks = (n + kChunkRows - 1) / kChunkRows;
  Helpers::get().post(job, threads - 1);
  job->work();
  while (job->done.load(std::memory_order_acquire) < job->chunks) std::this_thread::yield();
}

struct Arg {
  const float *data;
  int ndim;
  const int64_t *shape;
};

// The arguments as float32 arrays, or false when one is not float32 (the first n_float ones; the rest are int32).
bool float_args(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, std::vector<Arg> *out,
                int n_float = -1) {
  out->clear();
  for (int i = 0; i < nparam; i++) {
    const bool is_float = n_float < 0 || i < n_float || i == nparam - 1;
    if (std::strcmp(dtypes[i], is_float ? "float32" : "int32") != 0) return false;
    out->push_back(Arg{static_cast<const float *>(params[i]), ndims[i], shapes[i]});
  }
  return true;
}

int64_t rows(const Arg &x) {
  int64_t m = 1;
  for (int i = 0; i < x.ndim - 1; i++) m *= x.shape[i];
  return m;
}

int64_t cols(const Arg &x) { return x.shape[x.ndim - 1]; }

bool is_weight(const Arg &w, int64_t k) { return w.ndim == 2 && w.shape[1] == k; }

float *output(const Arg &a) { return const_cast<float *>(a.data); }
}  // namespace

extern "C" int LmanGemv(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream,
                        void *extra) {
  std::vector<Arg> a;
  if (nparam != 3 || !float_args(nparam, params, ndims, shapes, dtypes, &a)) return 1;
  const int64_t m = rows(a[0]), k = cols(a[0]), n = a[1].shape[0];
  if (!is_weight(a[1], k)) return 1;
  product(a[0].data, a[1].data, nullptr, output(a[2]), m, n, k);
  return 0;
}

extern "C" int LmanNormGemv(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                            void *stream, void *extra) {
  std::vector<Arg> a;
  if (nparam != 5 || !float_args(nparam, params, ndims, shapes, dtypes, &a)) return 1;
  const int64_t m = rows(a[0]), k = cols(a[0]), n = a[3].shape[0];
  if (cols(a[1]) != k || !is_weight(a[3], k)) return 1;
  std::vector<float> xn(m * k);
  for (int64_t r = 0; r < m; r++) rms_norm(a[0].data + r * k, a[1].data, a[2].data[0], xn.data() + r * k, k);
  product(xn.data(), a[3].data, nullptr, output(a[4]), m, n, k);
  return 0;
}

extern "C" int LmanNormGatedGemv(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                 void *stream, void *extra) {
  std::vector<Arg> a;
  if (nparam != 6 || !float_args(nparam, params, ndims, shapes, dtypes, &a)) return 1;
  const int64_t m = rows(a[0]), k = cols(a[0]), n = a[3].shape[0];
  if (cols(a[1]) != k || !is_weight(a[3], k) || !is_weight(a[4], k) || a[4].shape[0] != n) return 1;
  std::vector<float> xn(m * k);
  for (int64_t r = 0; r < m; r++) rms_norm(a[0].data + r * k, a[1].data, a[2].data[0], xn.data() + r * k, k);
  product(xn.data(), a[3].data, a[4].data, output(a[5]), m, n, k);
  return 0;
}

extern "C" int LmanNormQkvRope(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                               void *stream, void *extra) {
  std::vector<Arg> a;
  if (nparam != 11 || !float_args(nparam, params, ndims, shapes, dtypes, &a)) return 1;
  const int64_t m = rows(a[0]), k = cols(a[0]), d = cols(a[6]);
  const int64_t nq = a[3].shape[0], nk = a[4].shape[0], nv = a[5].shape[0];
  if (cols(a[1]) != k || !is_weight(a[3], k) || !is_weight(a[4], k) || !is_weight(a[5], k) || d % 2 != 0 ||
      nq % d != 0 || nk % d != 0 || rows(a[6]) != m || rows(a[7]) != m || cols(a[7]) != d) {
    return 1;
  }
  std::vector<float> xn(k);
  for (int64_t r = 0; r < m; r++) {
    float *q = output(a[8]) + r * nq, *key = output(a[9]) + r * nk, *v = output(a[10]) + r * nv;
    const float *cos = a[6].data + r * d, *sin = a[7].data + r * d;
    rms_norm(a[0].data + r * k, a[1].data, a[2].data[0], xn.data(), k);
    gemv_row(xn.data(), a[3].data, q, nq, k);
    gemv_row(xn.data(), a[4].data, key, nk, k);
    gemv_row(xn.data(), a[5].data, v, nv, k);
    rope(q, cos, sin, nq, d);
    rope(key, cos, sin, nk, d);
  }
  return 0;
}

extern "C" int LmanAttention(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                             void *stream, void *extra) {
  std::vector<Arg> a;
  if (nparam != 7 || !float_args(nparam, params, ndims, shapes, dtypes, &a, 3)) return 1;
  const int32_t *pad = reinterpret_cast<const int32_t *>(a[3].data);
  const int64_t last = *reinterpret_cast<const int32_t *>(a[4].data);
  const int32_t *layout = reinterpret_cast<const int32_t *>(a[5].data);
  const int64_t b = rows(a[0]), hd = cols(a[0]), d = cols(a[1]), kvh = layout[0], len = layout[1];
  if (d == 0 || hd % d != 0 || kvh <= 0 || (hd / d) % kvh != 0 || a[1].ndim != 2 || a[2].ndim != 2 ||
      cols(a[2]) != d || a[1].shape[0] != b * kvh * len || a[2].shape[0] != b * kvh * len || rows(a[3]) != b ||
      last < 0 || last >= len) {
    return 1;
  }
  for (int64_t s = 0; s < b; s++) {
    if (pad[s] < 0 || pad[s] > last) return 1;  // every sequence has at least one visible slot
  }
  const int64_t h = hd / d, rep = h / kvh;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::vector<float> p(len);
  for (int64_t s = 0; s < b; s++) {
    const int64_t first = pad[s];
    for (int64_t head = 0; head < h; head++) {
      const float *q = a[0].data + s * hd + head * d;
      const int64_t base = (s * kvh + head / rep) * len;
      const float *keys = a[1].data + base * d, *values = a[2].data + base * d;
      float *out = output(a[6]) + s * hd + head * d;
      float top = -INFINITY;
      for (int64_t j = first; j <= last; j++) {
        float dot = 0.0f;
        for (int64_t i = 0; i < d; i++) dot += q[i] * keys[j * d + i];
        p[j] = dot * scale;
        top = p[j] > top ? p[j] : top;
      }
      float total = 0.0f;
      for (int64_t j = first; j <= last; j++) {
        p[j] = std::exp(p[j] - top);
        total += p[j];
      }
      for (int64_t i = 0; i < d; i++) out[i] = 0.0f;
      for (int64_t j = first; j <= last; j++) {
        const float w = p[j] / total;
        for (int64_t i = 0; i < d; i++) out[i] += w * values[j * d + i];
      }
    }
  }
  return 0;
}
