// C ABI of the StereoVoxelSample libraries, for the torch extension and the TensorRT plugin.
// Parameters and layouts: occdepth/stereo_voxel_sample.h (struct occdepth::SvsParams).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "occdepth/stereo_voxel_sample.h"

#define OCCDEPTH_SVS_API extern "C" __attribute__((visibility("default")))

// Bumped whenever SvsParams or an entry point changes, so a loader can refuse a stale build.
#define OCCDEPTH_SVS_ABI_VERSION 2

// liboccdepth_svs_cpu
OCCDEPTH_SVS_API int32_t occdepth_svs_abi_version(void);
OCCDEPTH_SVS_API size_t occdepth_svs_params_size(void);  // sizeof(SvsParams), for a loader to check
// out: (B, C, N) float32. params->feature_dtype must be kSvsFloat32. Returns an SvsStatus.
OCCDEPTH_SVS_API int32_t occdepth_svs_forward_f32(const occdepth::SvsParams* params, float* out);
// The same op, tiled for CPU caches (the path occdepth_ros runs). Same inputs, output and
// status codes; the same per-voxel arithmetic up to float rounding. num_threads <= 0:
// the OpenMP default; ignored in a build without OpenMP.
OCCDEPTH_SVS_API int32_t occdepth_svs_forward_f32_tiled(const occdepth::SvsParams* params,
                                                        float* out, int32_t num_threads);

// liboccdepth_svs_cuda
// All pointers are device pointers; out has params->feature_dtype (float32 or float16).
// stream is a cudaStream_t, typed void* so this header needs no CUDA headers. Enqueues
// and returns: 0, a negative SvsStatus (nothing enqueued) or a positive cudaError_t.
OCCDEPTH_SVS_API int32_t occdepth_svs_forward_cuda(const occdepth::SvsParams* params, void* out,
                                                   void* stream);
