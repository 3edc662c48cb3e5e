#include "cleave/edge_server/batch_runner.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "cleave/common/bundle.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/common/torchscript_io.h"
#include "cleave/edge_server/edge_metrics.h"

namespace cleave::edge_server {
namespace {

using Clock = RequestContext::Clock;

uint64_t Micros(Clock::duration duration) {
  return static_cast<uint64_t>(std::max<int64_t>(
      0, std::chrono::duration_cast<std::chrono::microseconds>(duration).count()));
}

double Seconds(Clock::duration duration) { return std::chrono::duration<double>(duration).count(); }

// Answers `job` with `status` and counts it.
void Finish(BatchJob& job, const absl::Status& status) {
  if (job.metrics != nullptr) {
    job.metrics->RecordRequest(job.cut, status.code(), Seconds(Clock::now() - job.context.arrival));
  }
  job.done(status);
}

// Splits each batched output back into the jobs' parts along dimension 0. Returns false when
// an output has no batch dimension to split (the caller then runs the jobs one by one).
bool SplitOutputs(const std::vector<at::Tensor>& outputs, const std::vector<int64_t>& sizes,
                  int64_t total, std::vector<std::vector<at::Tensor>>* parts) {
  for (const at::Tensor& output : outputs) {
    if (output.dim() == 0 || output.size(0) != total) return false;
  }
  parts->assign(sizes.size(), {});
  for (const at::Tensor& output : outputs) {
    int64_t offset = 0;
    for (size_t r = 0; r < sizes.size(); ++r) {
      (*parts)[r].push_back(output.slice(0, offset, offset + sizes[r]));
      offset += sizes[r];
    }
  }
  return true;
}

absl::StatusOr<std::vector<at::Tensor>> Forward(const common::Bundle& bundle, size_t first,
                                                const at::Tensor& input) {
  CLEAVE_ASSIGN_OR_RETURN(c10::IValue output,
                          bundle.RunSegments(first, bundle.num_loaded_segments() - 1, {input}));
  std::vector<at::Tensor> tensors;
  CLEAVE_RETURN_IF_ERROR(common::FlattenTensors(output, &tensors));
  return tensors;
}

// The jobs of a batch that are to be computed, with their decoded activations.
struct Inputs {
  std::vector<BatchJob*> jobs;
  std::vector<at::Tensor> tensors;
  std::vector<int64_t> sizes;  // samples per job (dimension 0)
};

// Answers the jobs that are not to be computed (cancelled, expired, an activation that does
// not decode or fit the cut) and decodes the rest.
Inputs Decode(std::vector<BatchJob>& batch, Clock::time_point start,
              const common::DecodeLimits& limits) {
  Inputs inputs;
  for (BatchJob& job : batch) {
    JobTimings& timings = job.result->timings;
    timings.queue_us = Micros(start - job.context.arrival);
    if (job.context.cancelled()) {
      Finish(job, absl::CancelledError(absl::StrCat("request ", job.request_id, " cancelled")));
      continue;
    }
    if (start > job.context.deadline) {
      Finish(job, absl::DeadlineExceededError(absl::StrCat("request ", job.request_id,
                                                           " expired after ", timings.queue_us,
                                                           " us in the queue; not computed")));
      continue;
    }
    const Clock::time_point decode_start = Clock::now();
    auto activation = common::DecodeFrame(job.activation, limits);
    if (!activation.ok()) {
      Finish(job, absl::InvalidArgumentError(absl::StrCat("activation for cut ", job.cut, ": ",
                                                          activation.status().message())));
      continue;
    }
    timings.decode_us = Micros(Clock::now() - decode_start);
    if (absl::Status fits = job.bundle->CheckActivation(job.cut, *activation); !fits.ok()) {
      Finish(job, fits);
      continue;
    }
    if (job.metrics != nullptr) {
      job.metrics->RecordBytes(
          static_cast<double>(job.activation.size()),
          static_cast<double>(activation->numel() * activation->element_size()));
    }
    inputs.sizes.push_back(activation->dim() > 0 ? activation->size(0) : 1);
    inputs.tensors.push_back(*std::move(activation));
    inputs.jobs.push_back(&job);
  }
  return inputs;
}

// Encodes `tensors` into the job's result and answers it.
void Encode(BatchJob& job, const std::vector<at::Tensor>& tensors) {
  const Clock::time_point encode_start = Clock::now();
  absl::Status encoded = absl::OkStatus();
  for (const at::Tensor& tensor : tensors) {
    auto frame = common::EncodeFrame(tensor);
    if (!frame.ok()) {
      encoded = frame.status();
      break;
    }
    job.result->outputs.push_back(*std::move(frame));
  }
  job.result->timings.encode_us = Micros(Clock::now() - encode_start);
  Finish(job, encoded);
}

}  // namespace

void BatchRunner::PrepareThread() { at::init_num_threads(); }

void BatchRunner::Run(std::vector<BatchJob> batch) const {
  if (batch.empty()) return;
  const Clock::time_point start = Clock::now();
  const common::Bundle& bundle = *batch.front().bundle;
  const int cut = batch.front().cut;
  Inputs inputs = Decode(batch, start, limits_);
  if (inputs.jobs.empty()) return;
  auto first = bundle.SegmentStartingAt(cut);
  if (!first.ok()) {
    for (BatchJob* job : inputs.jobs) Finish(*job, first.status());
    return;
  }

  // One forward for the whole batch; jobs whose outputs cannot be split run one by one.
  const Clock::time_point compute_start = Clock::now();
  std::vector<absl::StatusOr<std::vector<at::Tensor>>> results;
  std::vector<std::vector<at::Tensor>> parts;
  int64_t total = 0;
  for (int64_t size : inputs.sizes) total += size;
  bool batched = false;
  if (inputs.jobs.size() > 1) {
    auto outputs = Forward(bundle, *first, at::cat(inputs.tensors, 0));
    batched = outputs.ok() && SplitOutputs(*outputs, inputs.sizes, total, &parts);
  }
  if (batched) {
    for (auto& part : parts) results.emplace_back(std::move(part));
  } else {
    for (const at::Tensor& input : inputs.tensors)
      results.push_back(Forward(bundle, *first, input));
  }
  const Clock::time_point compute_end = Clock::now();
  const auto batch_size = batched ? static_cast<uint32_t>(inputs.jobs.size()) : 1;
  const BundleMetrics* metrics = batch.front().metrics.get();
  if (metrics != nullptr) metrics->RecordBatch(static_cast<int>(batch_size));

  for (size_t r = 0; r < inputs.jobs.size(); ++r) {
    BatchJob& job = *inputs.jobs[r];
    job.result->timings.compute_us = Micros(compute_end - compute_start);
    job.result->timings.batch_size = batch_size;
    if (metrics != nullptr) {
      metrics->RecordComputed(Seconds(compute_start - job.context.arrival),
                              Seconds(compute_end - compute_start));
    }
    if (results[r].ok()) {
      Encode(job, *results[r]);
    } else {
      Finish(job, results[r].status());
    }
  }
}

}  // namespace cleave::edge_server
