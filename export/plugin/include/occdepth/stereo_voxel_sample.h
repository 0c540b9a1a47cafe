// StereoVoxelSample, the per-voxel math (contract: docs/stereo_voxel_sample.md).
//
// One header shared by the CPU library (svs_cpu.cpp), the CUDA kernel (svs_kernel.cu)
// and, later, the TensorRT plugin, so every backend runs the same arithmetic and the
// CPU build (tested in CI against the PyTorch reference) vouches for the GPU one.
// Under nvcc the functions are __host__ __device__; under a plain C++17 compiler they
// are ordinary inline functions, so this header needs no CUDA install.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define OCCDEPTH_HD __host__ __device__ __forceinline__
#else
#define OCCDEPTH_HD inline
#endif

namespace occdepth {

constexpr int kSvsMaxScales = 8;  // fixed arrays keep SvsParams a POD that a kernel takes by value
constexpr int kSvsMaxViews = 4;   // bounds the pairwise cosine accumulators (V(V-1)/2 pairs)
constexpr float kSvsCosEps = 1e-8f;   // torch.cosine_similarity's eps, applied to each norm
constexpr int kSvsCoordDims = 3;      // depth_coords' last axis: (x = column, y = row, z = bin)
constexpr float kSvsCoordLow = -2.0f;  // the spec's coordinate range is [-2, size + 1];
constexpr float kSvsCoordHighPad = 1.0f;  // -2 is also the behind-camera sentinel

// Element type of features and of the output (depth_prob and depth_coords are float32).
enum SvsDtype : int32_t { kSvsFloat32 = 0, kSvsFloat16 = 1 };

// Entry points return 0 on success, a negative SvsStatus for bad parameters (nothing is
// written), or a positive cudaError_t from the CUDA launcher.
enum SvsStatus : int32_t {
  kSvsOk = 0,
  kSvsNullPointer = -1,
  kSvsBadShape = -2,
  kSvsTooManyScales = -3,
  kSvsTooManyViews = -4,
  kSvsBadDtype = -5,
};

// All tensors are dense, C-contiguous, and laid out exactly as the PyTorch op takes them:
//   features[s]   (B, V, C, feature_height[s], feature_width[s])   feature_dtype
//   pixel_index   (B, V, S, N) int32, row * w_s + col; negative = voxel unseen by view v
//   depth_prob    (B, V, depth_bins, depth_height, depth_width) float32, or nullptr
//   depth_coords  (B, V, N, 3) float32 in index units, required with depth_prob
//   output        (B, C, N) = (B, C, X, Y, Z), feature_dtype
// Fields are ordered by size so the struct has no inner padding.
struct SvsParams {
  const void* features[kSvsMaxScales];
  const int32_t* pixel_index;
  const float* depth_prob;  // nullptr: no OAD gate, output = SFA sum ("flosp" variant)
  const float* depth_coords;
  int64_t voxels;  // N = X * Y * Z
  int32_t feature_height[kSvsMaxScales];
  int32_t feature_width[kSvsMaxScales];
  int32_t batch;
  int32_t views;
  int32_t scales;
  int32_t channels;
  int32_t depth_bins;
  int32_t depth_height;
  int32_t depth_width;
  float gate_scale;  // 100 in the released model
  int32_t feature_dtype;  // SvsDtype
};

// Host-side check shared by the entry points; zero-sized batch/voxels/channels are valid
// and produce no work.
inline SvsStatus svs_validate(const SvsParams& p) {
  if (p.batch < 0 || p.voxels < 0 || p.channels < 0) return kSvsBadShape;
  if (p.scales < 1 || p.scales > kSvsMaxScales) return kSvsTooManyScales;
  if (p.views < 1 || p.views > kSvsMaxViews) return kSvsTooManyViews;
  if (p.feature_dtype != kSvsFloat32 && p.feature_dtype != kSvsFloat16) return kSvsBadDtype;
  if (p.pixel_index == nullptr) return kSvsNullPointer;
  for (int s = 0; s < p.scales; ++s) {
    if (p.features[s] == nullptr) return kSvsNullPointer;
    if (p.feature_height[s] < 1 || p.feature_width[s] < 1) return kSvsBadShape;
  }
  if (p.depth_prob != nullptr) {
    if (p.depth_coords == nullptr) return kSvsNullPointer;
    if (p.depth_bins < 1 || p.depth_height < 1 || p.depth_width < 1) return kSvsBadShape;
  }
  return kSvsOk;
}

// float accumulation whatever the storage type.
OCCDEPTH_HD float svs_to_float(float v) { return v; }
OCCDEPTH_HD void svs_store(float* dst, float v) { *dst = v; }
#if defined(__CUDACC__)
OCCDEPTH_HD float svs_to_float(__half v) { return __half2float(v); }
OCCDEPTH_HD void svs_store(__half* dst, float v) { *dst = __float2half_rn(v); }
#endif

OCCDEPTH_HD float svs_clamp(float v, float lo, float hi) {
  return fminf(fmaxf(v, lo), hi);  // fmaxf first: a NaN becomes lo
}

struct SvsDepthSample {
  float prob;    // p_v: trilinear sample, zero padding
  float weight;  // m_v: summed weight of the in-range corners
};

// Trilinear sample of one view's depth volume (bins, height, width) at continuous index
// (x = column, y = row, z = bin), as grid_sample(align_corners=False, padding "zeros").
// Clipping to the spec's range [-2, size + 1] changes no in-contract result (a corner pair
// below -1 or above size - 1 is out of range either way) but keeps floor() inside int and
// maps NaN to the -2 sentinel, which samples nothing.
OCCDEPTH_HD SvsDepthSample svs_trilinear(const float* volume, int32_t bins, int32_t height,
                                         int32_t width, float x, float y, float z) {
  x = svs_clamp(x, kSvsCoordLow, static_cast<float>(width) + kSvsCoordHighPad);
  y = svs_clamp(y, kSvsCoordLow, static_cast<float>(height) + kSvsCoordHighPad);
  z = svs_clamp(z, kSvsCoordLow, static_cast<float>(bins) + kSvsCoordHighPad);
  const float x0 = floorf(x), y0 = floorf(y), z0 = floorf(z);
  // Weights in grid_sample's form, (corner + 1 - x) and (x - corner), for equal rounding.
  const float wx[2] = {x0 + 1.0f - x, x - x0};
  const float wy[2] = {y0 + 1.0f - y, y - y0};
  const float wz[2] = {z0 + 1.0f - z, z - z0};
  const int32_t ix = static_cast<int32_t>(x0), iy = static_cast<int32_t>(y0),
                iz = static_cast<int32_t>(z0);
  SvsDepthSample out = {0.0f, 0.0f};
  for (int dz = 0; dz < 2; ++dz) {
    const int32_t cz = iz + dz;
    if (cz < 0 || cz >= bins) continue;
    for (int dy = 0; dy < 2; ++dy) {
      const int32_t cy = iy + dy;
      if (cy < 0 || cy >= height) continue;
      for (int dx = 0; dx < 2; ++dx) {
        const int32_t cx = ix + dx;
        if (cx < 0 || cx >= width) continue;
        const float w = wx[dx] * wy[dy] * wz[dz];
        out.prob += w * volume[(static_cast<int64_t>(cz) * height + cy) * width + cx];
        out.weight += w;
      }
    }
  }
  return out;
}

// OAD occupancy prior occ[b, n]: one view passes p_0 through (official behaviour);
// several views give sum(p_v) / sum(m_v), or 0 where no view's volume covers the voxel.
OCCDEPTH_HD float svs_occupancy(const SvsParams& p, int32_t b, int64_t n) {
  const int64_t volume_size =
      static_cast<int64_t>(p.depth_bins) * p.depth_height * p.depth_width;
  float prob_sum = 0.0f, weight_sum = 0.0f;
  for (int32_t v = 0; v < p.views; ++v) {
    const int64_t bv = static_cast<int64_t>(b) * p.views + v;
    const float* coord = p.depth_coords + (bv * p.voxels + n) * kSvsCoordDims;
    const SvsDepthSample s = svs_trilinear(p.depth_prob + bv * volume_size, p.depth_bins,
                                           p.depth_height, p.depth_width, coord[0], coord[1],
                                           coord[2]);
    prob_sum += s.prob;
    weight_sum += s.weight;
  }
  if (p.views == 1) return prob_sum;
  return weight_sum > 0.0f ? prob_sum / weight_sum : 0.0f;
}

// Stereo-SFA weights of one scale. column[v] points at channel 0 of view v's feature
// column (channel stride = plane), nullptr when unseen. Writes weight[v] such that
// fused[c] = sum_v weight[v] * f_v[c]: each pair (i, j) adds (cos + only_i) to i and
// (cos + only_j) to j, and the V(V-1) divisor is folded in. One view: weight 1 if seen.
template <typename T>
OCCDEPTH_HD void svs_sfa_weights(const T* const* column, int32_t views, int32_t channels,
                                 int64_t plane, float* weight) {
  if (views == 1) {
    weight[0] = column[0] != nullptr ? 1.0f : 0.0f;
    return;
  }
  int32_t seen_count = 0;
  for (int32_t v = 0; v < views; ++v) seen_count += column[v] != nullptr;
  float sq_norm[kSvsMaxViews] = {};
  float dot[kSvsMaxViews][kSvsMaxViews] = {};  // upper triangle (i < j) only
  if (seen_count >= 2) {  // a cosine exists only for pairs seen by both
    for (int32_t c = 0; c < channels; ++c) {
      float f[kSvsMaxViews];
      for (int32_t v = 0; v < views; ++v) {
        f[v] = column[v] != nullptr ? svs_to_float(column[v][c * plane]) : 0.0f;
        sq_norm[v] += f[v] * f[v];
      }
      for (int32_t i = 0; i < views; ++i)
        for (int32_t j = i + 1; j < views; ++j) dot[i][j] += f[i] * f[j];
    }
  }
  for (int32_t v = 0; v < views; ++v) weight[v] = 0.0f;
  for (int32_t i = 0; i < views; ++i) {
    const bool seen_i = column[i] != nullptr;
    for (int32_t j = i + 1; j < views; ++j) {
      const bool seen_j = column[j] != nullptr;
      const float cosine = (seen_i && seen_j)
                            ? dot[i][j] / (fmaxf(sqrtf(sq_norm[i]), kSvsCosEps) *
                                           fmaxf(sqrtf(sq_norm[j]), kSvsCosEps))
                            : 0.0f;
      weight[i] += cosine + ((seen_i && !seen_j) ? 1.0f : 0.0f);
      weight[j] += cosine + ((seen_j && !seen_i) ? 1.0f : 0.0f);
    }
  }
  const float pair_divisor = static_cast<float>(views * (views - 1));
  for (int32_t v = 0; v < views; ++v) weight[v] /= pair_divisor;
}

// The whole op for one (batch b, voxel n): writes out[b, c, n] for every channel c.
// T is the feature/output storage type (float; __half under nvcc); math is in float.
template <typename T>
OCCDEPTH_HD void svs_voxel_forward(const SvsParams& p, int32_t b, int64_t n, T* out) {
  const int32_t views = p.views, scales = p.scales, channels = p.channels;
  // Per (scale, view): the voxel's feature column (nullptr = unseen) and its SFA weight.
  const T* column[kSvsMaxScales][kSvsMaxViews];
  float weight[kSvsMaxScales][kSvsMaxViews];
  for (int32_t s = 0; s < scales; ++s) {
    const int64_t plane = static_cast<int64_t>(p.feature_height[s]) * p.feature_width[s];
    const T* scale_features = static_cast<const T*>(p.features[s]);
    for (int32_t v = 0; v < views; ++v) {
      const int64_t bv = static_cast<int64_t>(b) * views + v;
      const int32_t pixel = p.pixel_index[(bv * scales + s) * p.voxels + n];
      // An index past the map is outside the contract; treating it as unseen keeps the
      // kernel from reading out of bounds.
      column[s][v] = (pixel >= 0 && pixel < plane)
                         ? scale_features + bv * channels * plane + pixel
                         : nullptr;
    }
    svs_sfa_weights<T>(column[s], views, channels, plane, weight[s]);
  }
  const bool gated = p.depth_prob != nullptr;
  const float gate = gated ? svs_occupancy(p, b, n) * p.gate_scale : 1.0f;
  for (int32_t c = 0; c < channels; ++c) {
    float acc = 0.0f;
    for (int32_t s = 0; s < scales; ++s) {
      const int64_t plane = static_cast<int64_t>(p.feature_height[s]) * p.feature_width[s];
      for (int32_t v = 0; v < views; ++v)
        if (column[s][v] != nullptr) acc += weight[s][v] * svs_to_float(column[s][v][c * plane]);
    }
    if (gated) acc *= gate;
    svs_store(out + (static_cast<int64_t>(b) * channels + c) * p.voxels + n, acc);
  }
}

}  // namespace occdepth
