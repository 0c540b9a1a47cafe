// TensorRT plugin for StereoVoxelSample (contract: docs/stereo_voxel_sample.md).
//
// One IPluginV3 object with the three V3One capabilities (core, build, runtime) and its
// IPluginCreatorV3One. The math is the CUDA kernel's (svs_kernel.cu, through the C ABI in
// occdepth/svs_api.h); this file only maps TensorRT's tensor descriptors onto SvsParams.
//
// The ONNX node it binds to is written by export/occdepth_export/onnx_export.py:
//   domain "occdepth", op_type "StereoVoxelSample", plugin_namespace "occdepth", plugin_version "1"
//   inputs  features[0..S-1] (B,V,C,h_s,w_s) float|half, pixel_index (B,V,S,N) int32,
//           [depth_prob (B,V,D,h_d,w_d) float, depth_coords (B,V,N,3) float]  (both or neither)
//   attrs   grid INTS (X,Y,Z), gate_scale FLOAT, num_scales INT (S)
// An engine also records "gated" (INT 0/1, whether depth_prob/depth_coords are inputs),
// set when the builder configures the plugin: enqueue reads it from the plugin's own
// fields, never from a call it cannot count on (onShapeChange).
//   output  (B,C,X,Y,Z), the features' dtype
// The identity strings and field names below must match export/occdepth_export/spec.py and
// the exporter's attributes; tests/test_svs_trt_plugin_source.py checks that.
//
// Written against the TensorRT 10 plugin API (JetPack 6 ships 10.3); see README.md for what
// was and was not verified. Everything here sits in the named namespace occdepth::trt (no
// anonymous namespaces: nvcc's stub generation breaks on those when this file is built with
// nvcc), with hidden visibility except the two C entry points at the end.

#include <cuda_runtime_api.h>

#include <NvInferRuntime.h>

#include <array>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>

#include "occdepth/svs_api.h"

#if defined(NV_TENSORRT_MAJOR) && NV_TENSORRT_MAJOR < 10
#error "svs_trt_plugin.cpp needs TensorRT >= 10 (IPluginV3)"
#endif

#define OCCDEPTH_TRT_EXPORT extern "C" __attribute__((visibility("default")))

namespace occdepth {
namespace trt {

using nvinfer1::DataType;
using nvinfer1::Dims;
using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;
using nvinfer1::PluginTensorDesc;
using Severity = nvinfer1::ILogger::Severity;

// --- identity (must equal export/occdepth_export/spec.py) -------------------------------
constexpr char kPluginName[] = "StereoVoxelSample";  // spec.OP_NAME (= ONNX op_type)
constexpr char kPluginVersion[] = "1";               // str(spec.OP_VERSION)
constexpr char kPluginNamespace[] = "occdepth";      // spec.PLUGIN_NAMESPACE (= spec.OP_DOMAIN)

// --- fields: the ONNX node's attributes (plugin_namespace/plugin_version are the parser's) --
constexpr char kFieldGrid[] = "grid";             // INTS (X, Y, Z)
constexpr char kFieldGateScale[] = "gate_scale";  // FLOAT
constexpr char kFieldNumScales[] = "num_scales";  // INT (S)
constexpr char kFieldGated[] = "gated";           // INT 0/1; serialised only (not a node attribute)
constexpr int32_t kNumNodeFields = 3;             // grid, gate_scale, num_scales
constexpr int32_t kNumSerialFields = 4;           // the node's fields and gated
constexpr int32_t kGateUnknown = -1;              // before configurePlugin at build time
constexpr float kDefaultGateScale = 100.0f;  // the released model's factor (spec)

constexpr int32_t kFeatureRank = 5;      // (B, V, C, h_s, w_s)
constexpr int32_t kPixelIndexRank = 4;   // (B, V, S, N)
constexpr int32_t kDepthProbRank = 5;    // (B, V, D, h_d, w_d)
constexpr int32_t kDepthCoordsRank = 4;  // (B, V, N, 3)
constexpr int32_t kOutputRank = 5;       // (B, C, X, Y, Z)
constexpr int32_t kGateInputs = 2;       // depth_prob, depth_coords
constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

// --- logging ----------------------------------------------------------------------------
// TensorRT hands the library an ILoggerFinder through setLoggerFinder(); without one
// (e.g. a creator used directly), errors and warnings go to stderr. No allocation, so the
// noexcept methods below can log.
class LoggerHolder {
 public:
  void set_finder(nvinfer1::ILoggerFinder* finder) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    finder_ = finder;
  }

  void log(Severity severity, const char* format, ...) noexcept {
    char text[512];
    int prefix = std::snprintf(text, sizeof(text), "[%s::%s] ", kPluginNamespace, kPluginName);
    if (prefix < 0 || prefix >= static_cast<int>(sizeof(text))) prefix = 0;
    va_list args;
    va_start(args, format);
    std::vsnprintf(text + prefix, sizeof(text) - static_cast<size_t>(prefix), format, args);
    va_end(args);
    nvinfer1::ILogger* logger = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (finder_ != nullptr) logger = finder_->findLogger();
    }
    if (logger != nullptr) {
      logger->log(severity, text);
    } else if (severity <= Severity::kWARNING) {
      std::fprintf(stderr, "%s\n", text);
    }
  }

 private:
  std::mutex mutex_;
  nvinfer1::ILoggerFinder* finder_ = nullptr;
};

LoggerHolder& logger() noexcept {
  static LoggerHolder holder;
  return holder;
}

// Why a check failed, formatted into a fixed buffer (no allocation in noexcept methods).
struct Reason {
  char text[256] = "";
  bool fail(const char* format, ...) noexcept {
    va_list args;
    va_start(args, format);
    std::vsnprintf(text, sizeof(text), format, args);
    va_end(args);
    return false;
  }
};

// --- configuration (the plugin's only state) ----------------------------------------------
struct SvsPluginConfig {
  int32_t grid[3] = {0, 0, 0};
  int32_t num_scales = 0;
  float gate_scale = kDefaultGateScale;
  int32_t gated = kGateUnknown;  // 0 or 1 once known

  int64_t voxels() const noexcept {
    return static_cast<int64_t>(grid[0]) * grid[1] * grid[2];
  }
  int32_t num_inputs() const noexcept { return num_scales + 1 + (gated == 1 ? kGateInputs : 0); }
};

// INTS/INT attributes arrive as kINT32 from the ONNX parser (it narrows int64); kINT64 is
// accepted as well, from a network built by hand or a parser that keeps 64 bits.
bool read_ints(const PluginField& field, int64_t* values, int32_t count, Reason* why) noexcept {
  if (field.data == nullptr || field.length != count)
    return why->fail("field '%s' needs %d value(s), got %d", field.name, count, field.length);
  for (int32_t i = 0; i < count; ++i) {
    if (field.type == PluginFieldType::kINT32) {
      values[i] = static_cast<const int32_t*>(field.data)[i];
    } else if (field.type == PluginFieldType::kINT64) {
      values[i] = static_cast<const int64_t*>(field.data)[i];
    } else {
      return why->fail("field '%s' must be INT32 or INT64 (PluginFieldType %d)", field.name,
                       static_cast<int32_t>(field.type));
    }
  }
  return true;
}

bool read_float(const PluginField& field, float* value, Reason* why) noexcept {
  if (field.data == nullptr || field.length != 1)
    return why->fail("field '%s' needs 1 value, got %d", field.name, field.length);
  if (field.type == PluginFieldType::kFLOAT32) {
    *value = *static_cast<const float*>(field.data);
  } else if (field.type == PluginFieldType::kFLOAT64) {
    *value = static_cast<float>(*static_cast<const double*>(field.data));
  } else {
    return why->fail("field '%s' must be FLOAT32 or FLOAT64 (PluginFieldType %d)", field.name,
                     static_cast<int32_t>(field.type));
  }
  return true;
}

// Fields from the ONNX parser (build phase) or from getFieldsToSerialize (runtime phase).
// grid and num_scales are required; gate_scale defaults to 100; gated is unknown until
// configurePlugin unless given. Unknown names are ignored.
bool parse_fields(const PluginFieldCollection* fc, SvsPluginConfig* config, Reason* why) noexcept {
  if (fc == nullptr || (fc->nbFields > 0 && fc->fields == nullptr))
    return why->fail("no plugin field collection");
  bool have_grid = false, have_scales = false;
  for (int32_t i = 0; i < fc->nbFields; ++i) {
    const PluginField& field = fc->fields[i];
    if (field.name == nullptr) continue;
    if (std::strcmp(field.name, kFieldGrid) == 0) {
      int64_t grid[3];
      if (!read_ints(field, grid, 3, why)) return false;
      for (int d = 0; d < 3; ++d) {
        if (grid[d] < 1 || grid[d] > kInt32Max)
          return why->fail("grid[%d] = %lld is out of range [1, 2^31)", d, static_cast<long long>(grid[d]));
        config->grid[d] = static_cast<int32_t>(grid[d]);
      }
      have_grid = true;
    } else if (std::strcmp(field.name, kFieldNumScales) == 0) {
      int64_t scales;
      if (!read_ints(field, &scales, 1, why)) return false;
      if (scales < 1 || scales > kSvsMaxScales)
        return why->fail("num_scales = %lld is out of range [1, %d]", static_cast<long long>(scales), kSvsMaxScales);
      config->num_scales = static_cast<int32_t>(scales);
      have_scales = true;
    } else if (std::strcmp(field.name, kFieldGateScale) == 0) {
      if (!read_float(field, &config->gate_scale, why)) return false;
      if (!std::isfinite(config->gate_scale)) return why->fail("gate_scale is not finite");
    } else if (std::strcmp(field.name, kFieldGated) == 0) {
      int64_t gated;
      if (!read_ints(field, &gated, 1, why)) return false;
      if (gated != 0 && gated != 1) return why->fail("gated = %lld, expected 0 or 1", static_cast<long long>(gated));
      config->gated = static_cast<int32_t>(gated);
    }
  }
  if (!have_grid) return why->fail("required field '%s' (INTS, X Y Z) is missing", kFieldGrid);
  if (!have_scales) return why->fail("required field '%s' (INT) is missing", kFieldNumScales);
  // N indexes int32 pixel_index rows per (b, v, s); keep the whole grid addressable.
  if (config->voxels() > kInt32Max)
    return why->fail("grid %dx%dx%d has more than 2^31 - 1 voxels", config->grid[0], config->grid[1],
                     config->grid[2]);
  return true;
}

// --- shape checks shared by configurePlugin (dims may be -1) and onShapeChange/enqueue ---
inline const Dims& dims_of(const PluginTensorDesc& desc) noexcept { return desc.dims; }
inline const Dims& dims_of(const DynamicPluginTensorDesc& desc) noexcept { return desc.desc.dims; }

// Equal, or not known yet (a -1 wildcard at build time).
inline bool agree(int64_t a, int64_t b) noexcept { return a < 0 || b < 0 || a == b; }

// nbInputs = S + 1 (no gate) or S + 3 (gate).
inline bool input_count_ok(int32_t nb_inputs, int32_t scales) noexcept {
  return nb_inputs == scales + 1 || nb_inputs == scales + 1 + kGateInputs;
}

template <typename Desc>
bool check_shapes(const SvsPluginConfig& config, const Desc* in, int32_t nb_inputs, const Desc* out,
                  int32_t nb_outputs, Reason* why) noexcept {
  const int32_t S = config.num_scales;
  if (!input_count_ok(nb_inputs, S))
    return why->fail("%d inputs; num_scales = %d needs %d (no gate) or %d (gate)", nb_inputs, S, S + 1,
                     S + 1 + kGateInputs);
  if (nb_outputs != 1) return why->fail("%d outputs, expected 1", nb_outputs);
  const Dims& f0 = dims_of(in[0]);
  for (int32_t s = 0; s < S; ++s) {
    const Dims& f = dims_of(in[s]);
    if (f.nbDims != kFeatureRank) return why->fail("features[%d] has rank %d, expected 5", s, f.nbDims);
    for (int d = 0; d < 3; ++d)  // B, V, C shared by every scale
      if (!agree(f.d[d], f0.d[d])) return why->fail("features[%d] dim %d differs from features[0]", s, d);
    for (int d = 0; d < kFeatureRank; ++d)
      if (f.d[d] > kInt32Max) return why->fail("features[%d] dim %d exceeds int32", s, d);
  }
  const int64_t B = f0.d[0], V = f0.d[1], C = f0.d[2];
  if (V == 0 || V > kSvsMaxViews) return why->fail("%lld views; 1 to %d are supported", static_cast<long long>(V), kSvsMaxViews);
  const Dims& index = dims_of(in[S]);
  if (index.nbDims != kPixelIndexRank) return why->fail("pixel_index has rank %d, expected 4", index.nbDims);
  if (!agree(index.d[0], B) || !agree(index.d[1], V)) return why->fail("pixel_index (B, V) differ from features");
  if (!agree(index.d[2], S)) return why->fail("pixel_index dim 2 is %lld, num_scales is %d", static_cast<long long>(index.d[2]), S);
  if (!agree(index.d[3], config.voxels()))
    return why->fail("pixel_index has N = %lld voxels, grid %dx%dx%d has %lld", static_cast<long long>(index.d[3]),
                     config.grid[0], config.grid[1], config.grid[2], static_cast<long long>(config.voxels()));
  if (nb_inputs == S + 1 + kGateInputs) {
    const Dims& prob = dims_of(in[S + 1]);
    const Dims& coords = dims_of(in[S + 2]);
    if (prob.nbDims != kDepthProbRank) return why->fail("depth_prob has rank %d, expected 5", prob.nbDims);
    if (!agree(prob.d[0], B) || !agree(prob.d[1], V)) return why->fail("depth_prob (B, V) differ from features");
    for (int d = 2; d < kDepthProbRank; ++d)
      if (prob.d[d] > kInt32Max) return why->fail("depth_prob dim %d exceeds int32", d);
    if (coords.nbDims != kDepthCoordsRank) return why->fail("depth_coords has rank %d, expected 4", coords.nbDims);
    if (!agree(coords.d[0], B) || !agree(coords.d[1], V) || !agree(coords.d[2], config.voxels()) ||
        !agree(coords.d[3], kSvsCoordDims))
      return why->fail("depth_coords must be (B, V, N, 3)");
  }
  const Dims& o = dims_of(out[0]);
  if (o.nbDims != kOutputRank) return why->fail("output has rank %d, expected 5", o.nbDims);
  if (!agree(o.d[0], B) || !agree(o.d[1], C) || !agree(o.d[2], config.grid[0]) || !agree(o.d[3], config.grid[1]) ||
      !agree(o.d[4], config.grid[2]))
    return why->fail("output must be (B, C, X, Y, Z)");
  return true;
}

// --- the plugin -------------------------------------------------------------------------
class SvsPlugin final : public nvinfer1::IPluginV3,
                        public nvinfer1::IPluginV3OneCore,
                        public nvinfer1::IPluginV3OneBuild,
                        public nvinfer1::IPluginV3OneRuntime {
 public:
  explicit SvsPlugin(const SvsPluginConfig& config) noexcept : config_(config) {}
  // The serialised fields point into the object that built them, so a copy rebuilds its own.
  SvsPlugin(const SvsPlugin& other) noexcept : config_(other.config_) {}
  SvsPlugin& operator=(const SvsPlugin&) = delete;
  ~SvsPlugin() override = default;

  // IPluginV3
  nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override {
    switch (type) {
      case nvinfer1::PluginCapabilityType::kCORE:
        return static_cast<nvinfer1::IPluginV3OneCore*>(this);
      case nvinfer1::PluginCapabilityType::kBUILD:
        return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
      case nvinfer1::PluginCapabilityType::kRUNTIME:
        return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
  }

  nvinfer1::IPluginV3* clone() noexcept override {
    SvsPlugin* copy = new (std::nothrow) SvsPlugin(*this);
    if (copy == nullptr) logger().log(Severity::kERROR, "clone: out of memory");
    return copy;
  }

  // IPluginV3OneCore
  const char* getPluginName() const noexcept override { return kPluginName; }
  const char* getPluginVersion() const noexcept override { return kPluginVersion; }
  const char* getPluginNamespace() const noexcept override { return kPluginNamespace; }

  // IPluginV3OneBuild
  int32_t configurePlugin(const DynamicPluginTensorDesc* in, int32_t nbInputs, const DynamicPluginTensorDesc* out,
                          int32_t nbOutputs) noexcept override {
    return remember_shapes(in, nbInputs, out, nbOutputs, "configurePlugin");
  }

  // const since TensorRT 10.0 (and required so by TensorRT 11's headers).
  int32_t getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, const DataType* inputTypes,
                             int32_t nbInputs) const noexcept override {
    if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != 1 ||
        !input_count_ok(nbInputs, config_.num_scales)) {
      logger().log(Severity::kERROR, "getOutputDataTypes: %d inputs / %d outputs do not fit num_scales = %d",
                   nbInputs, nbOutputs, config_.num_scales);
      return 1;
    }
    if (inputTypes[0] != DataType::kFLOAT && inputTypes[0] != DataType::kHALF) {
      logger().log(Severity::kERROR, "features must be float32 or float16 (DataType %d)",
                   static_cast<int32_t>(inputTypes[0]));
      return 1;
    }
    outputTypes[0] = inputTypes[0];
    return 0;
  }

  int32_t getOutputShapes(const DimsExprs* inputs, int32_t nbInputs, const DimsExprs* /*shapeInputs*/,
                          int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
                          nvinfer1::IExprBuilder& exprBuilder) noexcept override {
    if (inputs == nullptr || outputs == nullptr || nbOutputs != 1 || !input_count_ok(nbInputs, config_.num_scales)) {
      logger().log(Severity::kERROR, "getOutputShapes: %d inputs / %d outputs do not fit num_scales = %d (%d or %d inputs)",
                   nbInputs, nbOutputs, config_.num_scales, config_.num_scales + 1,
                   config_.num_scales + 1 + kGateInputs);
      return 1;
    }
    if (inputs[0].nbDims != kFeatureRank) {
      logger().log(Severity::kERROR, "getOutputShapes: features[0] has rank %d, expected 5", inputs[0].nbDims);
      return 1;
    }
    outputs[0].nbDims = kOutputRank;
    outputs[0].d[0] = inputs[0].d[0];  // B
    outputs[0].d[1] = inputs[0].d[2];  // C
    for (int d = 0; d < 3; ++d) outputs[0].d[2 + d] = exprBuilder.constant(config_.grid[d]);
    return 0;
  }

  // Inputs are numbered 0..nbInputs-1, the output is nbInputs; a decision may look at
  // inOut[0..pos] only.
  bool supportsFormatCombination(int32_t pos, const DynamicPluginTensorDesc* inOut, int32_t nbInputs,
                                 int32_t nbOutputs) noexcept override {
    const int32_t S = config_.num_scales;
    if (inOut == nullptr || nbOutputs != 1 || !input_count_ok(nbInputs, S) || pos < 0 || pos >= nbInputs + nbOutputs)
      return false;
    const PluginTensorDesc& desc = inOut[pos].desc;
    if (desc.format != nvinfer1::TensorFormat::kLINEAR) return false;
    if (pos == 0) return desc.type == DataType::kFLOAT || desc.type == DataType::kHALF;
    if (pos < S) return desc.type == inOut[0].desc.type;   // every scale in features[0]'s dtype
    if (pos == S) return desc.type == DataType::kINT32;     // pixel_index
    if (pos < nbInputs) return desc.type == DataType::kFLOAT;  // depth_prob, depth_coords
    return desc.type == inOut[0].desc.type;                 // output
  }

  int32_t getNbOutputs() const noexcept override { return 1; }
  // No workspace: IPluginV3OneBuild::getWorkspaceSize's default (0) stands.

  // IPluginV3OneRuntime
  int32_t onShapeChange(const PluginTensorDesc* in, int32_t nbInputs, const PluginTensorDesc* out,
                        int32_t nbOutputs) noexcept override {
    return remember_shapes(in, nbInputs, out, nbOutputs, "onShapeChange");  // a check; enqueue needs none
  }

  int32_t enqueue(const PluginTensorDesc* inputDesc, const PluginTensorDesc* outputDesc, const void* const* inputs,
                  void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept override {
    const int32_t S = config_.num_scales;
    Reason why;
    if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr) {
      logger().log(Severity::kERROR, "enqueue: null descriptors or pointers");
      return 1;
    }
    // enqueue is not told the input count: the serialised gate flag gives it.
    if (config_.gated == kGateUnknown) {
      logger().log(Severity::kERROR, "enqueue: the gate is unknown (the plugin was never configured)");
      return 1;
    }
    if (!check_shapes(config_, inputDesc, config_.num_inputs(), outputDesc, 1, &why)) {
      logger().log(Severity::kERROR, "enqueue: %s", why.text);
      return 1;
    }
    const DataType dtype = inputDesc[0].type;
    if ((dtype != DataType::kFLOAT && dtype != DataType::kHALF) || outputDesc[0].type != dtype) {
      logger().log(Severity::kERROR, "enqueue: features and output must share float32 or float16");
      return 1;
    }
    const Dims& f0 = inputDesc[0].dims;
    SvsParams params;
    std::memset(&params, 0, sizeof(params));
    params.batch = static_cast<int32_t>(f0.d[0]);
    params.views = static_cast<int32_t>(f0.d[1]);
    params.channels = static_cast<int32_t>(f0.d[2]);
    params.scales = S;
    for (int32_t s = 0; s < S; ++s) {
      params.features[s] = inputs[s];
      params.feature_height[s] = static_cast<int32_t>(inputDesc[s].dims.d[3]);
      params.feature_width[s] = static_cast<int32_t>(inputDesc[s].dims.d[4]);
    }
    params.pixel_index = static_cast<const int32_t*>(inputs[S]);
    params.voxels = inputDesc[S].dims.d[3];
    if (params.voxels != config_.voxels()) {  // check_shapes did this too; N = X*Y*Z is the contract
      logger().log(Severity::kERROR, "enqueue: N = %lld != X*Y*Z = %lld", static_cast<long long>(params.voxels),
                   static_cast<long long>(config_.voxels()));
      return 1;
    }
    if (config_.gated == 1) {
      const Dims& prob = inputDesc[S + 1].dims;
      params.depth_prob = static_cast<const float*>(inputs[S + 1]);
      params.depth_coords = static_cast<const float*>(inputs[S + 2]);
      params.depth_bins = static_cast<int32_t>(prob.d[2]);
      params.depth_height = static_cast<int32_t>(prob.d[3]);
      params.depth_width = static_cast<int32_t>(prob.d[4]);
    }
    params.gate_scale = config_.gate_scale;
    params.feature_dtype = dtype == DataType::kHALF ? kSvsFloat16 : kSvsFloat32;
    if (params.batch == 0 || params.channels == 0) return 0;  // empty output: nothing to write
    const int32_t status = occdepth_svs_forward_cuda(&params, outputs[0], static_cast<void*>(stream));
    if (status != 0) {
      logger().log(Severity::kERROR, "occdepth_svs_forward_cuda returned %d (%s)", status,
                   status < 0 ? "bad parameters (SvsStatus)" : cudaGetErrorString(static_cast<cudaError_t>(status)));
      return status;
    }
    return 0;
  }

  nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept override {
    return clone();  // no per-context resources
  }

  const PluginFieldCollection* getFieldsToSerialize() noexcept override {
    if (config_.gated == kGateUnknown)  // the engine would not deserialise: say why now
      logger().log(Severity::kERROR, "getFieldsToSerialize: the plugin was never configured, the gate is unknown");
    serial_fields_[0] = PluginField(kFieldGrid, config_.grid, PluginFieldType::kINT32, 3);
    serial_fields_[1] = PluginField(kFieldGateScale, &config_.gate_scale, PluginFieldType::kFLOAT32, 1);
    serial_fields_[2] = PluginField(kFieldNumScales, &config_.num_scales, PluginFieldType::kINT32, 1);
    serial_fields_[3] = PluginField(kFieldGated, &config_.gated, PluginFieldType::kINT32, 1);
    serial_collection_.nbFields = kNumSerialFields;
    serial_collection_.fields = serial_fields_.data();
    return &serial_collection_;
  }

 private:
  template <typename Desc>
  int32_t remember_shapes(const Desc* in, int32_t nb_inputs, const Desc* out, int32_t nb_outputs,
                          const char* where) noexcept {
    Reason why;
    if (in == nullptr || out == nullptr) {
      logger().log(Severity::kERROR, "%s: null tensor descriptors", where);
      return 1;
    }
    if (!check_shapes(config_, in, nb_inputs, out, nb_outputs, &why)) {
      logger().log(Severity::kERROR, "%s: %s", where, why.text);
      return 1;
    }
    const int32_t gated = nb_inputs == config_.num_scales + 1 + kGateInputs ? 1 : 0;
    if (config_.gated != kGateUnknown && config_.gated != gated) {
      logger().log(Severity::kERROR, "%s: %d inputs, but the plugin was configured %s the gate", where, nb_inputs,
                   config_.gated == 1 ? "with" : "without");
      return 1;
    }
    config_.gated = gated;  // serialised, so a deserialised plugin knows its inputs
    return 0;
  }

  SvsPluginConfig config_;
  std::array<PluginField, kNumSerialFields> serial_fields_;
  PluginFieldCollection serial_collection_;
};

// --- the creator ------------------------------------------------------------------------
class SvsPluginCreator final : public nvinfer1::IPluginCreatorV3One {
 public:
  SvsPluginCreator() noexcept {
    // The names the ONNX parser looks up on the node (their data is unused here).
    field_names_[0] = PluginField(kFieldGrid, nullptr, PluginFieldType::kINT32, 3);
    field_names_[1] = PluginField(kFieldGateScale, nullptr, PluginFieldType::kFLOAT32, 1);
    field_names_[2] = PluginField(kFieldNumScales, nullptr, PluginFieldType::kINT32, 1);
    field_collection_.nbFields = kNumNodeFields;
    field_collection_.fields = field_names_.data();
  }

  const char* getPluginName() const noexcept override { return kPluginName; }
  const char* getPluginVersion() const noexcept override { return kPluginVersion; }
  const char* getPluginNamespace() const noexcept override { return kPluginNamespace; }
  const PluginFieldCollection* getFieldNames() noexcept override { return &field_collection_; }

  // kBUILD: the fields come from the ONNX node (or the network builder); kRUNTIME: from
  // getFieldsToSerialize(). Bad fields: nullptr and a logged error, never an exception.
  nvinfer1::IPluginV3* createPlugin(const char* name, const PluginFieldCollection* fc,
                                    nvinfer1::TensorRTPhase phase) noexcept override {
    SvsPluginConfig config;
    Reason why;
    const bool ok = parse_fields(fc, &config, &why) &&
                    (phase == nvinfer1::TensorRTPhase::kBUILD || config.gated != kGateUnknown ||
                     why.fail("field '%s' is missing: the engine was built by an older plugin; rebuild it",
                              kFieldGated));
    if (!ok) {
      logger().log(Severity::kERROR, "createPlugin(%s, %s phase): %s", name != nullptr ? name : "",
                   phase == nvinfer1::TensorRTPhase::kBUILD ? "build" : "runtime", why.text);
      return nullptr;
    }
    SvsPlugin* plugin = new (std::nothrow) SvsPlugin(config);
    if (plugin == nullptr) logger().log(Severity::kERROR, "createPlugin: out of memory");
    return plugin;
  }

 private:
  std::array<PluginField, kNumNodeFields> field_names_;
  PluginFieldCollection field_collection_;
};

}  // namespace trt
}  // namespace occdepth

// --- library entry points: IPluginRegistry::loadLibrary, trtexec --dynamicPlugins -------
OCCDEPTH_TRT_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
  occdepth::trt::logger().set_finder(finder);
}

OCCDEPTH_TRT_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
  static occdepth::trt::SvsPluginCreator creator;
  static nvinfer1::IPluginCreatorInterface* const creators[] = {&creator};
  nbCreators = 1;
  return creators;
}
