// CPU implementation of StereoVoxelSample: a loop over (batch, voxel) calling the shared
// per-voxel math. It is the CI-testable twin of the CUDA kernel (both use the header),
// not a fast path. Build with -fopenmp to parallelise the voxel loop.
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
