// CPU implementations of StereoVoxelSample, behind one C ABI (occdepth/svs_api.h).
//
// occdepth_svs_forward_f32: a loop over (batch, voxel) calling the shared per-voxel math.
//   It is the CI-testable twin of the CUDA kernel (both run the header), not a fast path.
// occdepth_svs_forward_f32_tiled: the fast path that occdepth_ros uses for inference.
//   Same inputs, outputs and arithmetic order per voxel, reorganised for the CPU's
//   caches: a tile of consecutive voxels (one band of image rows, since the lookups
//   enumerate voxels x-major) is gathered one feature plane at a time, then every
//   per-voxel sum runs over contiguous arrays that the compiler vectorises, and the
//   output is written in contiguous runs of the tile.
// Build with -fopenmp to parallelise over tiles (or voxels for the twin).
#include <stdlib.h>

#include <algorithm>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "occdepth/svs_api.h"

namespace occdepth {
namespace cpu {

template <typename T>
int32_t forward(const SvsParams* params, T* out) {
  if (params == nullptr || out == nullptr) return kSvsNullPointer;
  const SvsParams& p = *params;
  const SvsStatus status = svs_validate(p);
  if (status != kSvsOk) return status;
  const int64_t total = static_cast<int64_t>(p.batch) * p.voxels;
#if defined(_OPENMP)
#pragma omp parallel for schedule(static)
#endif
  for (int64_t t = 0; t < total; ++t) {
    svs_voxel_forward<T>(p, static_cast<int32_t>(t / p.voxels), t % p.voxels, out);
  }
  return kSvsOk;
}

// --- the tiled fast path ----------------------------------------------------------------
// Voxels per tile. The gathered features of a tile (V * C * kTile floats: 128 KiB for
// two views of 32 channels) stay in L2 while the sums read them.
constexpr int64_t kTile = 512;

// Per-thread scratch, allocated once per call and reused for every tile.
struct TileScratch {
  explicit TileScratch(int32_t views, int32_t channels)
      : gathered(static_cast<size_t>(views) * channels * kTile),
        acc(static_cast<size_t>(channels) * kTile),
        index(static_cast<size_t>(views) * kTile),
        seen(static_cast<size_t>(views) * kTile),
        sq_norm(static_cast<size_t>(views) * kTile),
        dot(static_cast<size_t>(views) * views * kTile),
        weight(static_cast<size_t>(views) * kTile),
        gate(kTile) {}
  std::vector<float> gathered;  // [v][c][n]: f_v[c] of the tile's voxel n, 0 when unseen
  std::vector<float> acc;       // [c][n]: the SFA sum over the scales so far
  std::vector<int32_t> index;   // [v][n]: pixel index, 0 when unseen (always a safe read)
  std::vector<uint8_t> seen;    // [v][n]
  std::vector<float> sq_norm;   // [v][n]: |f_v|^2
  std::vector<float> dot;       // [i][j][n], i < j: f_i . f_j
  std::vector<float> weight;    // [v][n]: the SFA weight of view v (V(V-1) folded in)
  std::vector<float> gate;      // [n]: occ * gate_scale
};

// One scale's SFA for a tile of `len` voxels starting at n0, added into s.acc. VIEWS is a
// template argument so the small per-view loops unroll and the arrays index statically.
template <int VIEWS>
void tile_scale(const SvsParams& p, int32_t b, int32_t scale, int64_t n0, int64_t len,
                TileScratch& s) {
  const int32_t channels = p.channels;
  const int64_t plane = static_cast<int64_t>(p.feature_height[scale]) * p.feature_width[scale];
  const float* features = static_cast<const float*>(p.features[scale]);
  int64_t seen_count[VIEWS];
  for (int v = 0; v < VIEWS; ++v) {
    const int64_t bv = static_cast<int64_t>(b) * VIEWS + v;
    const int32_t* pixel = p.pixel_index + (bv * p.scales + scale) * p.voxels + n0;
    int32_t* index = s.index.data() + v * kTile;
    uint8_t* seen = s.seen.data() + v * kTile;
    int64_t count = 0;
    for (int64_t n = 0; n < len; ++n) {
      // An index past the map is outside the contract and counts as unseen (as in the header).
      const bool ok = pixel[n] >= 0 && pixel[n] < plane;
      index[n] = ok ? pixel[n] : 0;
      seen[n] = ok;
      count += ok;
    }
    seen_count[v] = count;
  }
  // Gather one feature plane at a time: the tile's pixels lie in a few image rows, so the
  // reads of one plane share cache lines.
  for (int v = 0; v < VIEWS; ++v) {
    float* dst_view = s.gathered.data() + static_cast<int64_t>(v) * channels * kTile;
    if (seen_count[v] == 0) {
      std::fill(dst_view, dst_view + static_cast<int64_t>(channels) * kTile, 0.0f);
      continue;
    }
    const int64_t bv = static_cast<int64_t>(b) * VIEWS + v;
    const int32_t* index = s.index.data() + v * kTile;
    const uint8_t* seen = s.seen.data() + v * kTile;
    for (int32_t c = 0; c < channels; ++c) {
      const float* src = features + (bv * channels + c) * plane;
      float* dst = dst_view + static_cast<int64_t>(c) * kTile;
      for (int64_t n = 0; n < len; ++n) dst[n] = seen[n] ? src[index[n]] : 0.0f;
    }
  }
  float* acc = s.acc.data();
  const float* gathered = s.gathered.data();
  if (VIEWS == 1) {  // f_0 passes through unscaled (zero where unseen)
    for (int32_t c = 0; c < channels; ++c) {
      float* a = acc + static_cast<int64_t>(c) * kTile;
      const float* f = gathered + static_cast<int64_t>(c) * kTile;
      for (int64_t n = 0; n < len; ++n) a[n] += f[n];
    }
    return;
  }
  // Norms and pairwise dots over the channels, channel 0 first as in the header.
  float* sq_norm = s.sq_norm.data();
  float* dot = s.dot.data();
  std::fill(sq_norm, sq_norm + VIEWS * kTile, 0.0f);
  std::fill(dot, dot + VIEWS * VIEWS * kTile, 0.0f);
  for (int32_t c = 0; c < channels; ++c) {
    for (int i = 0; i < VIEWS; ++i) {
      const float* fi = gathered + (static_cast<int64_t>(i) * channels + c) * kTile;
      float* sq = sq_norm + i * kTile;
      for (int64_t n = 0; n < len; ++n) sq[n] += fi[n] * fi[n];
      for (int j = i + 1; j < VIEWS; ++j) {
        const float* fj = gathered + (static_cast<int64_t>(j) * channels + c) * kTile;
        float* d = dot + (i * VIEWS + j) * kTile;
        for (int64_t n = 0; n < len; ++n) d[n] += fi[n] * fj[n];
      }
    }
  }
  // Weights: the header's svs_sfa_weights, voxel by voxel.
  float* weight = s.weight.data();
  const uint8_t* seen = s.seen.data();
  const float pair_divisor = static_cast<float>(VIEWS * (VIEWS - 1));
  for (int64_t n = 0; n < len; ++n) {
    float w[VIEWS] = {};
    for (int i = 0; i < VIEWS; ++i) {
      const bool seen_i = seen[i * kTile + n];
      for (int j = i + 1; j < VIEWS; ++j) {
        const bool seen_j = seen[j * kTile + n];
        const float cosine =
            (seen_i && seen_j)
                ? dot[(i * VIEWS + j) * kTile + n] /
                      (fmaxf(sqrtf(sq_norm[i * kTile + n]), kSvsCosEps) *
                       fmaxf(sqrtf(sq_norm[j * kTile + n]), kSvsCosEps))
                : 0.0f;
        w[i] += cosine + ((seen_i && !seen_j) ? 1.0f : 0.0f);
        w[j] += cosine + ((seen_j && !seen_i) ? 1.0f : 0.0f);
      }
    }
    for (int v = 0; v < VIEWS; ++v) weight[v * kTile + n] = w[v] / pair_divisor;
  }
  // acc[c] += sum_v w_v f_v[c], views in order (an unseen view adds 0 * 0).
  for (int32_t c = 0; c < channels; ++c) {
    float* a = acc + static_cast<int64_t>(c) * kTile;
    for (int v = 0; v < VIEWS; ++v) {
      const float* f = gathered + (static_cast<int64_t>(v) * channels + c) * kTile;
      const float* w = weight + v * kTile;
      for (int64_t n = 0; n < len; ++n) a[n] += w[n] * f[n];
    }
  }
}

template <int VIEWS>
void tile_forward(const SvsParams& p, int32_t b, int64_t n0, TileScratch& s, float* out) {
  const int64_t len = std::min<int64_t>(kTile, p.voxels - n0);
  const int32_t channels = p.channels;
  std::fill(s.acc.begin(), s.acc.end(), 0.0f);
  for (int32_t scale = 0; scale < p.scales; ++scale) tile_scale<VIEWS>(p, b, scale, n0, len, s);
  const bool gated = p.depth_prob != nullptr;
  if (gated)
    for (int64_t n = 0; n < len; ++n) s.gate[n] = svs_occupancy(p, b, n0 + n) * p.gate_scale;
  for (int32_t c = 0; c < channels; ++c) {
    const float* a = s.acc.data() + static_cast<int64_t>(c) * kTile;
    float* dst = out + (static_cast<int64_t>(b) * channels + c) * p.voxels + n0;
    if (gated) {
      const float* g = s.gate.data();
      for (int64_t n = 0; n < len; ++n) dst[n] = a[n] * g[n];
    } else {
      std::copy(a, a + len, dst);
    }
  }
}

template <int VIEWS>
int32_t tiled(const SvsParams& p, float* out, int32_t num_threads) {
  const int64_t tiles_per_batch = (p.voxels + kTile - 1) / kTile;
  const int64_t total = static_cast<int64_t>(p.batch) * tiles_per_batch;
  if (total == 0 || p.channels == 0) return kSvsOk;
#if defined(_OPENMP)
  const int threads = num_threads > 0 ? num_threads : omp_get_max_threads();
#pragma omp parallel num_threads(threads)
#else
  (void)num_threads;
#endif
  {
    TileScratch scratch(VIEWS, p.channels);
#if defined(_OPENMP)
#pragma omp for schedule(dynamic, 1)  // tiles outside the views finish early
#endif
    for (int64_t t = 0; t < total; ++t) {
      tile_forward<VIEWS>(p, static_cast<int32_t>(t / tiles_per_batch),
                          (t % tiles_per_batch) * kTile, scratch, out);
    }
  }
  return kSvsOk;
}

}  // namespace cpu
}  // namespace occdepth

OCCDEPTH_SVS_API int32_t occdepth_svs_abi_version(void) { return OCCDEPTH_SVS_ABI_VERSION; }

OCCDEPTH_SVS_API size_t occdepth_svs_params_size(void) { return sizeof(occdepth::SvsParams); }

OCCDEPTH_SVS_API int32_t occdepth_svs_forward_f32(const occdepth::SvsParams* params, float* out) {
  // Plain C++ has no half type; float16 runs through the CUDA library only.
  if (params != nullptr && params->feature_dtype != occdepth::kSvsFloat32)
    return occdepth::kSvsBadDtype;
  return occdepth::cpu::forward<float>(params, out);
}

OCCDEPTH_SVS_API int32_t occdepth_svs_forward_f32_tiled(const occdepth::SvsParams* params,
                                                        float* out, int32_t num_threads) {
  using namespace occdepth;
  if (params == nullptr || out == nullptr) return kSvsNullPointer;
  if (params->feature_dtype != kSvsFloat32) return kSvsBadDtype;
  const SvsStatus status = svs_validate(*params);
  if (status != kSvsOk) return status;
  static_assert(kSvsMaxViews == 4, "one tiled<V> instantiation per view count");
  switch (params->views) {  // svs_validate bounds views to [1, kSvsMaxViews]
    case 1: return cpu::tiled<1>(*params, out, num_threads);
    case 2: return cpu::tiled<2>(*params, out, num_threads);
    case 3: return cpu::tiled<3>(*params, out, num_threads);
    default: return cpu::tiled<4>(*params, out, num_threads);
  }
}
