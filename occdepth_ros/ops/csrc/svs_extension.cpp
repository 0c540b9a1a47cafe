// occdepth_ros.ops._svs_native: the native CPU implementation of StereoVoxelSample
// (export/plugin/src/svs_cpu.cpp) as a torch extension. setup.py builds it at install;
// occdepth_ros/ops/torch_op.py registers `forward` as the CPU kernel of the torch op
// occdepth::stereo_voxel_sample. SvsParams is filled here, in C++, from the header itself.
#include <torch/extension.h>

#include <string>
#include <vector>

#include "occdepth/svs_api.h"

namespace {

using occdepth::SvsParams;

const char* status_name(int32_t status) {
  switch (status) {
    case occdepth::kSvsOk: return "kSvsOk";
    case occdepth::kSvsNullPointer: return "kSvsNullPointer";
    case occdepth::kSvsBadShape: return "kSvsBadShape";
    case occdepth::kSvsTooManyScales: return "kSvsTooManyScales";
    case occdepth::kSvsTooManyViews: return "kSvsTooManyViews";
    case occdepth::kSvsBadDtype: return "kSvsBadDtype";
    default: return "unknown status";
  }
}

std::string shape(const at::Tensor& t) {
  std::string s = "(";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + ")";
}

// Inputs as the library reads them: every size it trusts is checked here (ValueError).
struct Inputs {
  std::vector<at::Tensor> features;  // contiguous copies outlive the call
  at::Tensor index, prob, coords;
  SvsParams params{};
};

Inputs prepare(const std::vector<at::Tensor>& features, const at::Tensor& pixel_index,
               const c10::optional<at::Tensor>& depth_prob,
               const c10::optional<at::Tensor>& depth_coords, const std::vector<int64_t>& grid,
               double gate_scale) {
  TORCH_CHECK_VALUE(grid.size() == 3, "grid must be (X, Y, Z), got ", grid.size(), " sizes");
  const int64_t n = grid[0] * grid[1] * grid[2];
  const int64_t scales = static_cast<int64_t>(features.size());
  TORCH_CHECK_VALUE(pixel_index.dim() == 4 && pixel_index.size(2) == scales && pixel_index.size(3) == n,
                    "pixel_index must be (B, V, ", scales, ", ", n, "), got ", shape(pixel_index));
  TORCH_CHECK_VALUE(!pixel_index.is_floating_point(), "pixel_index must be an integer tensor");
  const int64_t b = pixel_index.size(0), v = pixel_index.size(1);
  const int64_t c = scales > 0 && features[0].dim() == 5 ? features[0].size(2) : -1;
  Inputs in;
  SvsParams& p = in.params;
  TORCH_CHECK_VALUE(scales <= occdepth::kSvsMaxScales, scales, " scales: at most ", occdepth::kSvsMaxScales);
  for (int64_t s = 0; s < scales; ++s) {
    const at::Tensor& f = features[s];
    TORCH_CHECK_VALUE(f.dim() == 5 && f.size(0) == b && f.size(1) == v && f.size(2) == c,
                      "features[", s, "] must be (B=", b, ", V=", v, ", C=", c, ", h, w), got ", shape(f));
    TORCH_CHECK_VALUE(f.device().is_cpu() && f.scalar_type() == at::kFloat,
                      "features[", s, "] must be float32 on the CPU");
    in.features.push_back(f.contiguous());
    p.features[s] = in.features.back().data_ptr<float>();
    p.feature_height[s] = static_cast<int32_t>(f.size(3));
    p.feature_width[s] = static_cast<int32_t>(f.size(4));
  }
  in.index = pixel_index.to(at::kInt).contiguous();
  p.pixel_index = in.index.data_ptr<int32_t>();
  TORCH_CHECK_VALUE(depth_prob.has_value() == depth_coords.has_value(),
                    "depth_prob and depth_coords go together");
  if (depth_prob.has_value()) {
    const at::Tensor& prob = *depth_prob;
    const at::Tensor& coords = *depth_coords;
    TORCH_CHECK_VALUE(prob.dim() == 5 && prob.size(0) == b && prob.size(1) == v,
                      "depth_prob must be (B=", b, ", V=", v, ", D, h, w), got ", shape(prob));
    TORCH_CHECK_VALUE(coords.dim() == 4 && coords.size(0) == b && coords.size(1) == v && coords.size(2) == n &&
                          coords.size(3) == occdepth::kSvsCoordDims,
                      "depth_coords must be (", b, ", ", v, ", ", n, ", 3), got ", shape(coords));
    TORCH_CHECK_VALUE(prob.scalar_type() == at::kFloat && coords.scalar_type() == at::kFloat,
                      "depth_prob and depth_coords must be float32");
    in.prob = prob.contiguous();
    in.coords = coords.contiguous();
    p.depth_prob = in.prob.data_ptr<float>();
    p.depth_coords = in.coords.data_ptr<float>();
    p.depth_bins = static_cast<int32_t>(prob.size(2));
    p.depth_height = static_cast<int32_t>(prob.size(3));
    p.depth_width = static_cast<int32_t>(prob.size(4));
  }
  p.voxels = n;
  p.batch = static_cast<int32_t>(b);
  p.views = static_cast<int32_t>(v);
  p.scales = static_cast<int32_t>(scales);
  p.channels = static_cast<int32_t>(c);
  p.gate_scale = static_cast<float>(gate_scale);
  p.feature_dtype = occdepth::kSvsFloat32;
  return in;
}

// tiled: the cache-tiled fast path (what inference runs); otherwise the header's plain
// per-voxel loop, the CUDA kernel's CPU twin (tests run both).
at::Tensor run(const std::vector<at::Tensor>& features, const at::Tensor& pixel_index,
               const c10::optional<at::Tensor>& depth_prob,
               const c10::optional<at::Tensor>& depth_coords, const std::vector<int64_t>& grid,
               double gate_scale, int64_t num_threads, bool tiled) {
  TORCH_CHECK_VALUE(!features.empty(), "at least one feature scale");
  Inputs in = prepare(features, pixel_index, depth_prob, depth_coords, grid, gate_scale);
  at::Tensor out = at::empty({in.params.batch, in.params.channels, grid[0], grid[1], grid[2]},
                             at::TensorOptions().dtype(at::kFloat));
  int32_t status;
  {
    pybind11::gil_scoped_release no_gil;  // other Python threads (the ROS executor) run meanwhile
    status = tiled ? occdepth_svs_forward_f32_tiled(&in.params, out.data_ptr<float>(),
                                                    static_cast<int32_t>(num_threads))
                   : occdepth_svs_forward_f32(&in.params, out.data_ptr<float>());
  }
  TORCH_CHECK(status == occdepth::kSvsOk, "the native StereoVoxelSample returned ", status_name(status));
  return out;
}

at::Tensor forward(const std::vector<at::Tensor>& features, const at::Tensor& pixel_index,
                   const c10::optional<at::Tensor>& depth_prob,
                   const c10::optional<at::Tensor>& depth_coords, const std::vector<int64_t>& grid,
                   double gate_scale, int64_t num_threads) {
  return run(features, pixel_index, depth_prob, depth_coords, grid, gate_scale, num_threads, true);
}

at::Tensor forward_per_voxel(const std::vector<at::Tensor>& features, const at::Tensor& pixel_index,
                             const c10::optional<at::Tensor>& depth_prob,
                             const c10::optional<at::Tensor>& depth_coords,
                             const std::vector<int64_t>& grid, double gate_scale) {
  return run(features, pixel_index, depth_prob, depth_coords, grid, gate_scale, 0, false);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Native CPU StereoVoxelSample (export/plugin/src/svs_cpu.cpp)";
  m.def("forward", &forward, "The op on CPU float32 tensors, tiled; num_threads <= 0: OpenMP's default",
        pybind11::arg("features"), pybind11::arg("pixel_index"), pybind11::arg("depth_prob"),
        pybind11::arg("depth_coords"), pybind11::arg("grid"), pybind11::arg("gate_scale"),
        pybind11::arg("num_threads"));
  m.def("forward_per_voxel", &forward_per_voxel, "The header's per-voxel loop (the CUDA kernel's twin)",
        pybind11::arg("features"), pybind11::arg("pixel_index"), pybind11::arg("depth_prob"),
        pybind11::arg("depth_coords"), pybind11::arg("grid"), pybind11::arg("gate_scale"));
  m.attr("MAX_SCALES") = occdepth::kSvsMaxScales;
  m.attr("MAX_VIEWS") = occdepth::kSvsMaxViews;
#if defined(_OPENMP)
  m.attr("OPENMP") = true;
#else
  m.attr("OPENMP") = false;
#endif
}
