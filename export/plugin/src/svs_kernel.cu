// CUDA implementation of StereoVoxelSample: one thread per (batch, voxel), channels
// looped inside the thread, all math from the shared header. Simple first; a faster
// layout (voxel tiles, channels across a warp) can replace it behind the same entry point.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "occdepth/svs_api.h"

namespace occdepth {
namespace cuda {  // named: nvcc's stub generation breaks on kernels in an anonymous namespace

constexpr int kThreadsPerBlock = 256;
constexpr int64_t kMaxBlocks = 1 << 20;  // the grid-stride loop covers whatever is left

template <typename T>
__global__ void __launch_bounds__(kThreadsPerBlock)
    svs_forward_kernel(const SvsParams params, T* out) {
  const int64_t total = static_cast<int64_t>(params.batch) * params.voxels;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += stride) {
    svs_voxel_forward<T>(params, static_cast<int32_t>(t / params.voxels), t % params.voxels,
                         out);
  }
}

template <typename T>
int32_t launch(const SvsParams& p, T* out, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(p.batch) * p.voxels;
  if (total == 0 || p.channels == 0) return kSvsOk;
  int64_t blocks = (total + kThreadsPerBlock - 1) / kThreadsPerBlock;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  svs_forward_kernel<T><<<static_cast<unsigned>(blocks), kThreadsPerBlock, 0, stream>>>(p, out);
  return static_cast<int32_t>(cudaGetLastError());
}

}  // namespace cuda
}  // namespace occdepth

OCCDEPTH_SVS_API int32_t occdepth_svs_forward_cuda(const occdepth::SvsParams* params, void* out,
                                                   void* stream) {
  using namespace occdepth;
  if (params == nullptr || out == nullptr) return kSvsNullPointer;
  const SvsStatus status = svs_validate(*params);
  if (status != kSvsOk) return status;
  cudaStream_t cuda_stream = static_cast<cudaStream_t>(stream);
  if (params->feature_dtype == kSvsFloat16)
    return cuda::launch<__half>(*params, static_cast<__half*>(out), cuda_stream);
  return cuda::launch<float>(*params, static_cast<float*>(out), cuda_stream);
}
