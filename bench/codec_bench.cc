// Activation codec benchmark on real activations: the reference Fashion-MNIST model at each
// module-level cut over the 10k test images. For every codec: bytes per element and ratio to
// fp32, encode / decode throughput (GB/s of fp32 input, one thread, one frame per image as
// a device sends them), the model's test accuracy when every image crosses the codec at that
// cut, and the empirical order-0 entropy of the quantized symbols (the lossless limit for
// that quantization) next to what zstd achieves.
//
// With --resnet18, the same at ResNet-18's stage boundaries at 224x224 (seeded random weights,
// as no trained ones can be downloaded here; the inputs are Fashion-MNIST test images scaled
// to 224x224 on three channels, so activations carry real image structure): sizes and speeds
// only, no accuracy.
//
//   codec_bench --model MODEL.pt [--resnet18 RESNET.pt] [--data DIR] [--images 10000]
//               [--json FILE]
#include <ATen/Parallel.h>
#include <torch/script.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <optional>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_report.h"
#include "cleave/common/idx_dataset.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/common/text_table.h"
#include "cleave/partitioner/calibration.h"
#include "cleave/partitioner/model_graph.h"

namespace {

using cleave::common::ClipRange;
using cleave::common::Codec;
using cleave::common::CodecSpec;
using Clock = std::chrono::steady_clock;

struct Variant {
  std::string label;
  Codec codec;
  int zstd_level;
  bool calibrated;
};

const std::vector<Variant> kVariants = {
    {"raw fp32", Codec::kRaw, 0, false},
    {"raw+zstd1", Codec::kRaw, 1, false},
    {"fp16", Codec::kFloat16, 0, false},
    {"fp16+zstd1", Codec::kFloat16, 1, false},
    {"bf16", Codec::kBFloat16, 0, false},
    {"int8 dynamic", Codec::kInt8, 0, false},
    {"int8 dynamic+zstd1", Codec::kInt8, 1, false},
    {"int8 clip", Codec::kInt8, 0, true},
    {"int8 clip+zstd1", Codec::kInt8, 1, true},
    {"int8 clip+zstd3", Codec::kInt8, 3, true},
    {"int8 clip+zstd-1", Codec::kInt8, -1, true},
    {"int8 clip+zstd-3", Codec::kInt8, -3, true},
    {"int8 clip+zstd-5", Codec::kInt8, -5, true},
    {"int8 clip+zstd-7", Codec::kInt8, -7, true},
    {"int8-channel clip+zstd1", Codec::kInt8PerChannel, 1, true},
    {"int4 clip", Codec::kInt4, 0, true},
    {"int4 clip+zstd1", Codec::kInt4, 1, true},
};

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Order-0 entropy in bits per symbol of a histogram.
double Entropy(const at::Tensor& counts) {
  const at::Tensor p = counts.to(at::kDouble) / counts.sum().item<double>();
  const at::Tensor nonzero = p.masked_select(p > 0);
  return -(nonzero * nonzero.log2()).sum().item<double>();
}

// The symbols an affine codec produces for `x` (one image) with ranges `ranges`, or its own
// min/max when `ranges` is empty; mirrors frame_codec.cc for the entropy measurement.
at::Tensor AffineSymbols(const at::Tensor& x, Codec codec, const std::vector<ClipRange>& ranges) {
  const int levels = codec == Codec::kInt4 ? 15 : 255;
  at::Tensor lo, hi;
  if (codec == Codec::kInt8PerChannel) {
    std::vector<int64_t> view(x.dim(), 1);
    view[1] = x.size(1);
    if (ranges.empty()) {
      const at::Tensor channels = x.transpose(0, 1).reshape({x.size(1), -1});
      lo = std::get<0>(channels.min(1)).view(view);
      hi = std::get<0>(channels.max(1)).view(view);
    } else {
      std::vector<float> low, high;
      for (const ClipRange& range : ranges) {
        low.push_back(range.min);
        high.push_back(range.max);
      }
      lo = at::tensor(low).view(view);
      hi = at::tensor(high).view(view);
    }
  } else {
    lo = ranges.empty() ? x.min() : at::scalar_tensor(ranges[0].min);
    hi = ranges.empty() ? x.max() : at::scalar_tensor(ranges[0].max);
  }
  const at::Tensor scale = at::where(hi > lo, (hi - lo) / levels, at::ones_like(hi));
  return ((at::minimum(at::maximum(x, lo), hi) - lo) / scale + 0.5).floor().to(at::kLong);
}

struct Measurement {
  double bytes = 0, payload_bytes = 0, elements = 0;
  double encode_seconds = 0, decode_seconds = 0;
  int64_t correct = 0;
  at::Tensor histogram;  // symbol counts, for affine and 16-bit codecs
};

// Where a model's activations come from and how its accuracy is judged.
struct Workload {
  std::string name;
  const cleave::partitioner::ModelGraph* model = nullptr;
  at::Tensor inputs;                 // [N, ...] test inputs
  std::optional<at::Tensor> labels;  // accuracy needs labels; random inputs have none
  at::Tensor calibration;            // inputs the clip ranges are calibrated on
  std::vector<int> cut_ids;          // where to measure
};

struct Options {
  double percentile = 99.99;
};

// Measures every codec variant at every cut of `work`: one frame per input, as a device sends
// them. Appends JSON rows and table rows.
// Long on purpose: one workload measured codec by codec in a fixed order, each row built where
// it is measured, so the table and the JSON cannot drift apart.
absl::Status MeasureWorkload(const Workload& work, const Options& options,
                             std::vector<nlohmann::json>* rows, cleave::common::TextTable* table) {
  const int64_t images = work.inputs.size(0);
  double baseline_accuracy = -1;
  for (int id : work.cut_ids) {
    CLEAVE_ASSIGN_OR_RETURN(auto cut, work.model->FindCut(id));
    CLEAVE_ASSIGN_OR_RETURN(auto segments, work.model->Split({id}));
    torch::jit::Module tail = segments[1];
    std::vector<at::Tensor> parts;  // activations at the cut, in batches
    for (int64_t begin = 0; begin < images; begin += 500) {
      CLEAVE_ASSIGN_OR_RETURN(
          auto activations,
          work.model->ActivationsAt({id},
                                    {work.inputs.slice(0, begin, std::min(images, begin + 500))}));
      parts.push_back(activations[0]);
    }
    const at::Tensor activations = at::cat(parts, 0);
    std::vector<std::vector<ClipRange>> calibrated(3);
    for (Codec codec : {Codec::kInt8, Codec::kInt8PerChannel, Codec::kInt4}) {
      CLEAVE_ASSIGN_OR_RETURN(
          auto ranges, cleave::partitioner::CalibrateClipRanges(*work.model, {id}, work.calibration,
                                                                codec, {options.percentile, 250}));
      calibrated[static_cast<int>(codec) - 3] = ranges[0];
    }
    for (const Variant& variant : kVariants) {
      if (variant.codec == Codec::kInt8PerChannel && activations.dim() < 2) continue;
      CodecSpec spec{variant.codec, variant.zstd_level, {}};
      if (variant.calibrated) spec.ranges = calibrated[static_cast<int>(variant.codec) - 3];
      Measurement m;
      std::vector<at::Tensor> decoded;
      decoded.reserve(images);
      for (int64_t i = 0; i < images; ++i) {
        const at::Tensor x = activations.slice(0, i, i + 1).contiguous();
        const Clock::time_point encode_start = Clock::now();
        CLEAVE_ASSIGN_OR_RETURN(std::string frame, cleave::common::EncodeFrame(x, spec));
        m.encode_seconds += Seconds(encode_start);
        const Clock::time_point decode_start = Clock::now();
        CLEAVE_ASSIGN_OR_RETURN(at::Tensor back, cleave::common::DecodeFrame(frame));
        m.decode_seconds += Seconds(decode_start);
        decoded.push_back(std::move(back));
        m.bytes += static_cast<double>(frame.size());
        m.payload_bytes += static_cast<double>(cleave::common::ParseFrame(frame)->payload.size());
        m.elements += static_cast<double>(x.numel());
        if (variant.zstd_level != 0) continue;  // same symbols as the variant without zstd
        at::Tensor symbols;
        if (cleave::common::IsAffineCodec(variant.codec)) {
          symbols = AffineSymbols(x, variant.codec, spec.ranges).flatten();
        } else if (variant.codec == Codec::kFloat16 || variant.codec == Codec::kBFloat16) {
          symbols = (variant.codec == Codec::kFloat16 ? x.to(at::kHalf) : x.to(at::kBFloat16))
                        .view(at::kShort)
                        .to(at::kLong)
                        .flatten() +
                    32768;
        }
        if (symbols.defined()) {
          const at::Tensor counts = at::bincount(symbols, {}, 65536);
          m.histogram = m.histogram.defined() ? m.histogram + counts : counts;
        }
      }
      std::optional<double> accuracy;
      if (work.labels) {
        c10::InferenceMode inference;
        const at::Tensor all = at::cat(decoded, 0);
        for (int64_t begin = 0; begin < images; begin += 500) {
          const int64_t end = std::min(images, begin + 500);
          const at::Tensor logits = tail.forward({all.slice(0, begin, end)}).toTensor();
          m.correct += logits.argmax(1).eq(work.labels->slice(0, begin, end)).sum().item<int64_t>();
        }
        accuracy = static_cast<double>(m.correct) / static_cast<double>(images);
        if (baseline_accuracy < 0) baseline_accuracy = *accuracy;  // raw fp32 is lossless
      }
      const double fp32_bytes = 4 * m.elements;
      const double entropy = m.histogram.defined() ? Entropy(m.histogram) : NAN;
      const double zstd_bits = variant.zstd_level != 0 ? 8 * m.payload_bytes / m.elements : NAN;
      nlohmann::json row = {{"model", work.name},
                            {"cut", cut.info.name},
                            {"cut_id", id},
                            {"shape", cut.info.tensor.shape},
                            {"codec", variant.label},
                            {"bytes_per_element", m.bytes / m.elements},
                            {"ratio_vs_fp32", fp32_bytes / m.bytes},
                            {"encode_gb_per_s", fp32_bytes / m.encode_seconds / 1e9},
                            {"decode_gb_per_s", fp32_bytes / m.decode_seconds / 1e9}};
      if (accuracy) {
        row["accuracy"] = *accuracy;
        row["accuracy_delta_pp"] = 100 * (*accuracy - baseline_accuracy);
      }
      if (!std::isnan(entropy)) row["entropy_bits_per_element"] = entropy;
      if (!std::isnan(zstd_bits)) row["zstd_bits_per_element"] = zstd_bits;
      rows->push_back(row);
      table->AddRow(
          {work.name, cut.info.name, variant.label, absl::StrFormat("%.3f", m.bytes / m.elements),
           absl::StrFormat("%.1fx", fp32_bytes / m.bytes),
           absl::StrFormat("%.2f", fp32_bytes / m.encode_seconds / 1e9),
           absl::StrFormat("%.2f", fp32_bytes / m.decode_seconds / 1e9),
           accuracy ? absl::StrFormat("%.2f%%", 100 * *accuracy) : "-",
           accuracy ? absl::StrFormat("%+.2f", 100 * (*accuracy - baseline_accuracy)) : "-",
           std::isnan(entropy) ? "" : absl::StrFormat("%.3f", entropy),
           std::isnan(zstd_bits) ? "" : absl::StrFormat("%.3f", zstd_bits)});
    }
  }
  return absl::OkStatus();
}

absl::Status Run(const std::string& model_path, const std::string& resnet_path,
                 const std::string& data, int64_t images, int64_t calibration_images,
                 int64_t resnet_images, const Options& options, nlohmann::json* report) {
  CLEAVE_ASSIGN_OR_RETURN(auto model,
                          cleave::partitioner::ModelGraph::Load(model_path, {{1, 1, 28, 28}}));
  CLEAVE_ASSIGN_OR_RETURN(auto test, cleave::common::LoadFashionMnist(data, "t10k", images));
  CLEAVE_ASSIGN_OR_RETURN(auto train,
                          cleave::common::LoadFashionMnist(data, "train", calibration_images));
  Workload reference{"reference", model.get(), test.images, test.labels, train.images, {}};
  for (const auto& cut : model->Cuts(cleave::partitioner::Granularity::kModule)) {
    if (cut.info.id != cleave::common::kInputCutId) reference.cut_ids.push_back(cut.info.id);
  }
  std::vector<nlohmann::json> rows;
  cleave::common::TextTable table({"model", "cut", "codec", "bytes/elem", "vs fp32", "encode GB/s",
                                   "decode GB/s", "accuracy", "delta pp", "entropy b/elem",
                                   "zstd b/elem"});
  CLEAVE_RETURN_IF_ERROR(MeasureWorkload(reference, options, &rows, &table));
  if (!resnet_path.empty()) {
    // Accuracy means nothing without trained weights: sizes and speeds only.
    CLEAVE_ASSIGN_OR_RETURN(auto resnet,
                            cleave::partitioner::ModelGraph::Load(resnet_path, {{1, 3, 224, 224}}));
    const auto scaled = [](const at::Tensor& images) {
      return at::upsample_bilinear2d(images, {224, 224}, false)
          .expand({-1, 3, -1, -1})
          .contiguous();
    };
    resnet_images = std::min<int64_t>(resnet_images, test.images.size(0));
    Workload work{"resnet18",
                  resnet.get(),
                  scaled(test.images.slice(0, 0, resnet_images)),
                  std::nullopt,
                  scaled(train.images.slice(0, 0, std::min<int64_t>(16, train.images.size(0)))),
                  {}};
    CLEAVE_ASSIGN_OR_RETURN(work.cut_ids,
                            resnet->ResolveCuts({"layer1", "layer2", "layer3", "layer4"}));
    CLEAVE_RETURN_IF_ERROR(MeasureWorkload(work, options, &rows, &table));
  }
  (*report)["results"] = rows;
  std::cout << table.Render()
            << "entropy: order-0 entropy of the codec's symbols over all inputs (the lossless "
               "limit for that quantization); zstd b/elem: the payload zstd actually sent; "
               "throughput: GB/s of fp32 input, one thread\n";
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"codec_bench: activation codecs on real activations"};
  std::string model_path, resnet_path, data = cleave::common::kFashionMnistDir;
  std::string json_path = "codec_bench.json";
  int64_t images = 10000, calibration_images = 2000, resnet_images = 32;
  Options options;
  app.add_option("--model", model_path, "trained reference model (cleave train-reference)")
      ->required();
  app.add_option("--resnet18", resnet_path, "ResNet-18 TorchScript (bench/export_torchvision.py)");
  app.add_option("--data", data, "Fashion-MNIST folder")->default_val(data);
  app.add_option("--images", images, "test images")->default_val(images);
  app.add_option("--resnet-images", resnet_images, "test images (scaled to 224x224) for ResNet-18")
      ->default_val(resnet_images);
  app.add_option("--calibration-images", calibration_images, "training images for clip ranges")
      ->default_val(calibration_images);
  app.add_option("--clip-percentile", options.percentile, "calibration percentile")
      ->default_val(options.percentile);
  app.add_option("--json", json_path, "where to write the JSON report")->default_val(json_path);
  CLI11_PARSE(app, argc, argv);
  at::set_num_threads(1);  // throughput is per core
  nlohmann::json report = cleave::bench::ReportHeader("codec_bench", argc, argv);
  report["images"] = images;
  report["clip_percentile"] = options.percentile;
  if (absl::Status status = Run(model_path, resnet_path, data, images, calibration_images,
                                resnet_images, options, &report);
      !status.ok()) {
    std::cerr << "codec_bench: error: " << status.message() << "\n";
    return 1;
  }
  return cleave::bench::WriteJsonReport(report, json_path) ? 0 : 1;
}
