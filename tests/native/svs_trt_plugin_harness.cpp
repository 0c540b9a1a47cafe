// Drives the TensorRT plugin (export/plugin/src/svs_trt_plugin.cpp) through the calls a
// builder and a runtime make, compiled against TensorRT's real headers, without
// libnvinfer or a GPU: build-phase createPlugin -> configurePlugin -> getFieldsToSerialize,
// then runtime-phase createPlugin from exactly those fields -> enqueue with no
// onShapeChange (TensorRT does not promise one before every enqueue).
//
// TEST DOUBLE: occdepth_svs_forward_cuda below replaces the CUDA kernel and only records
// the SvsParams the plugin hands it. Output: one JSON object per line.

#include <NvInferRuntime.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "occdepth/svs_api.h"

extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);

namespace {

occdepth::SvsParams g_last_params;
int g_kernel_calls = 0;

constexpr int32_t kScales = 2, kViews = 2, kChannels = 3, kBins = 4;
constexpr int32_t kGrid[3] = {4, 3, 2};
constexpr int64_t kVoxels = 4 * 3 * 2;

nvinfer1::Dims dims(std::initializer_list<int64_t> values) {
  nvinfer1::Dims d{};
  d.nbDims = static_cast<int32_t>(values.size());
  int i = 0;
  for (int64_t v : values) d.d[i++] = v;
  return d;
}

std::vector<nvinfer1::PluginTensorDesc> descs(bool gated) {
  using nvinfer1::DataType;
  std::vector<nvinfer1::PluginTensorDesc> out;
  auto add = [&](nvinfer1::Dims d, DataType t) {
    nvinfer1::PluginTensorDesc desc{};
    desc.dims = d;
    desc.type = t;
    desc.format = nvinfer1::TensorFormat::kLINEAR;
    out.push_back(desc);
  };
  add(dims({1, kViews, kChannels, 8, 16}), DataType::kFLOAT);
  add(dims({1, kViews, kChannels, 4, 8}), DataType::kFLOAT);
  add(dims({1, kViews, kScales, kVoxels}), DataType::kINT32);
  if (gated) {
    add(dims({1, kViews, kBins, 4, 8}), DataType::kFLOAT);
    add(dims({1, kViews, kVoxels, 3}), DataType::kFLOAT);
  }
  add(dims({1, kChannels, kGrid[0], kGrid[1], kGrid[2]}), DataType::kFLOAT);  // the output, last
  return out;
}

void print_fields(const nvinfer1::PluginFieldCollection* fc) {
  std::printf("\"fields\": [");
  for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i) {
    const nvinfer1::PluginField& f = fc->fields[i];
    std::printf("%s{\"name\": \"%s\", \"type\": %d, \"length\": %d, \"values\": [", i ? ", " : "", f.name,
                static_cast<int>(f.type), f.length);
    for (int32_t k = 0; k < f.length; ++k) {
      if (f.type == nvinfer1::PluginFieldType::kFLOAT32)
        std::printf("%s%g", k ? ", " : "", static_cast<double>(static_cast<const float*>(f.data)[k]));
      else
        std::printf("%s%d", k ? ", " : "", static_cast<const int32_t*>(f.data)[k]);
    }
    std::printf("]}");
  }
  std::printf("]");
}

// Build phase, serialise, runtime phase, enqueue; prints what each step gave.
void scenario(nvinfer1::IPluginCreatorV3One* creator, bool gated, bool drop_gated_field) {
  using nvinfer1::PluginField;
  using nvinfer1::PluginFieldType;
  const float gate_scale = 100.0f;
  PluginField node_fields[] = {PluginField("grid", kGrid, PluginFieldType::kINT32, 3),
                               PluginField("gate_scale", &gate_scale, PluginFieldType::kFLOAT32, 1),
                               PluginField("num_scales", &kScales, PluginFieldType::kINT32, 1)};
  nvinfer1::PluginFieldCollection node{3, node_fields};
  std::printf("{\"gated\": %s, \"drop_gated_field\": %s, ", gated ? "true" : "false",
              drop_gated_field ? "true" : "false");
  nvinfer1::IPluginV3* built = creator->createPlugin("svs", &node, nvinfer1::TensorRTPhase::kBUILD);
  if (built == nullptr) {
    std::printf("\"error\": \"build-phase createPlugin failed\"}\n");
    return;
  }
  auto* build = static_cast<nvinfer1::IPluginV3OneBuild*>(built->getCapabilityInterface(nvinfer1::PluginCapabilityType::kBUILD));
  auto* built_runtime = static_cast<nvinfer1::IPluginV3OneRuntime*>(
      built->getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME));
  std::vector<nvinfer1::PluginTensorDesc> io = descs(gated);
  const int32_t nb_inputs = static_cast<int32_t>(io.size()) - 1;
  std::vector<nvinfer1::DynamicPluginTensorDesc> dyn(io.size());
  for (size_t i = 0; i < io.size(); ++i) {
    dyn[i].desc = io[i];
    dyn[i].min = dyn[i].max = io[i].dims;
  }
  std::printf("\"configure\": %d, ", build->configurePlugin(dyn.data(), nb_inputs, &dyn[nb_inputs], 1));

  const nvinfer1::PluginFieldCollection* serial = built_runtime->getFieldsToSerialize();
  print_fields(serial);
  std::vector<PluginField> kept;
  for (int32_t i = 0; i < serial->nbFields; ++i)
    if (!(drop_gated_field && std::strcmp(serial->fields[i].name, "gated") == 0)) kept.push_back(serial->fields[i]);
  nvinfer1::PluginFieldCollection runtime_fields{static_cast<int32_t>(kept.size()), kept.data()};
  nvinfer1::IPluginV3* loaded = creator->createPlugin("svs", &runtime_fields, nvinfer1::TensorRTPhase::kRUNTIME);
  delete built;
  if (loaded == nullptr) {
    std::printf(", \"runtime_plugin\": false}\n");
    return;
  }
  auto* runtime = static_cast<nvinfer1::IPluginV3OneRuntime*>(
      loaded->getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME));
  // Device pointers are never dereferenced by the plugin itself; distinct fakes suffice.
  std::vector<const void*> inputs;
  for (int32_t i = 0; i < nb_inputs; ++i) inputs.push_back(reinterpret_cast<const void*>(0x1000 * (i + 1)));
  void* outputs[] = {reinterpret_cast<void*>(0x9000)};
  g_kernel_calls = 0;
  std::memset(&g_last_params, 0, sizeof(g_last_params));
  const int32_t status = runtime->enqueue(io.data(), &io[nb_inputs], inputs.data(), outputs, nullptr, nullptr);
  std::printf(", \"runtime_plugin\": true, \"enqueue\": %d, \"kernel_calls\": %d, \"depth_prob_is_input\": %s, "
              "\"depth_bins\": %d, \"gate_scale\": %g}\n",
              status, g_kernel_calls,
              gated && g_last_params.depth_prob == inputs[kScales + 1] ? "true" : "false",
              g_last_params.depth_bins, static_cast<double>(g_last_params.gate_scale));
  delete loaded;
}

}  // namespace

// TEST DOUBLE for the CUDA kernel: records its arguments, runs nothing.
extern "C" int32_t occdepth_svs_forward_cuda(const occdepth::SvsParams* params, void* /*out*/, void* /*stream*/) {
  g_last_params = *params;
  ++g_kernel_calls;
  return 0;
}

int main() {
  int32_t count = 0;
  nvinfer1::IPluginCreatorInterface* const* creators = getCreators(count);
  if (count != 1) return 2;
  auto* creator = static_cast<nvinfer1::IPluginCreatorV3One*>(creators[0]);
  scenario(creator, true, false);
  scenario(creator, false, false);
  scenario(creator, true, true);
  return 0;
}
