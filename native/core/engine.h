#pragma once
// The device-independent half of every fused optimizer: the param list, per-param state
// (fp32 state buffers, fp32 masters, step counts), validation, and the launch plan handed
// to a backend (the contract of native/common/backend.h, one for both devices). Algo
// (algorithms.h) supplies the math-specific parts. Everything a step
// needs is checked before anything is written, so a rejected step changes nothing.
#include <atomic>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../common/half_convert.h"
#include "../common/grad_transform.h"
#include "../common/metrics.h"
#include "../common/stochastic_rounding.h"
#include "../common/state_codec.h"
#include "../common/state_dtype.h"
#include "../common/backend.h"
#include "../cpu/chunk_runner.h"
#include "../cuda/cuda_backend.h"
#include "algorithms.h"
#include "memory_ranges.h"
#include "errors.h"
#include "tensor.h"

namespace fo {

template <typename Algo>
class Engine {
 public:
  using Hyper = typename Algo::Hyper;
  using Slot = typename Algo::Slot;
  using Plan = typename Algo::Plan;
  static constexpr int kStates = Algo::kStates;

  struct ParamOptions {
    bool master_weights = true;  // fp32 master for float16/bfloat16 params
    double lr_ratio = 1.0;       // scales the step (AdamWDL), not the decoupled decay
    bool apply_decay = true;     // decoupled weight decay for this param
    StateFormat state;           // the group's stateDtype (a small param may keep fp32)
  };

  // What a step does to the grads first, and how half params are rounded.
  struct StepControl {
    GradPrepass prepass;        // GradScaler unscale + inf check, clipping by norm
    float clip_lo = -INFINITY;  // clipping by value
    float clip_hi = INFINITY;
    bool stochastic_rounding = false;  // bfloat16 params from fp32 values
    bool needs_prepass() const { return prepass.check_finite || prepass.clip != ClipMode::None; }
  };

  // A step validated and ready to run; nothing of it is committed until commit(). Step
  // counts, masters' versions and the rounding counter move only once the step's device
  // work was queued, so a step that throws leaves the optimizer as it was (or, when it
  // failed with part of its work queued, refusing to continue: broken()).
  struct PreparedStep {
    enum class Outcome { NotRun, Queued, NothingQueued, PartlyQueued };
    std::vector<Slot> slots;
    std::vector<std::shared_ptr<Storage>> pinned;
    std::vector<int> stepped;  // params that have a grad this step
    bool skipped = false;      // the prepass found an inf/NaN grad: nothing changes
    bool use_prepass = false;
    bool rounds = false;  // stochastic rounding: the counter advances with the step
    Outcome outcome = Outcome::NotRun;
    std::string error;
  };

  // A param's state as a state dict holds it: each buffer in its encoding (`format`, the
  // bytes of state_buffer_bytes), masters in fp32.
  struct ParamState {
    int64_t step = 0;
    bool has_state = false;
    StateFormat format;
    std::vector<uint8_t> states[kStates];
    std::vector<float> master;
    // Which buffers are given (a param with 0 elements has empty ones that are still there).
    bool present[kStates] = {};
    bool has_master = false;
  };

  explicit Engine(Device device) : device_(device), backend_(make_backend(device)) {}

  Device device() const { return device_; }
  int param_count() const { return int(params_.size()); }
  bool busy() const { return busy_; }
  // How many times the launch plan was rebuilt and handed to the backend (for tests and
  // benchmarks: hyperparameter changes must not cause one).
  int64_t plan_uploads() const { return plan_uploads_; }

  struct NewParam {
    std::shared_ptr<Tensor> data;
    std::string name;
    ParamOptions options;
  };

  // Adds params to param group `group`, all or none: each is checked (present, alive, on
  // this device, not over the memory of a param held already or earlier in the list) before
  // any is added. O(log n) per param (param_ranges_), so an optimizer of n params is built in
  // O(n log n). Returns the index of the first.
  int add_params(std::vector<NewParam> list, int group) {
    if (group < 0) throw RangeError("param group index must be >= 0");
    if (list.size() > size_t(INT32_MAX) - params_.size())
      throw RangeError("an optimizer holds at most 2^31 - 1 params");
    for (const NewParam& n : list)
      if (!valid_quant_block(n.options.state.block))
        throw RangeError("param '" + n.name + "': the 8-bit state block size must be 256 or 2048, got " +
                         std::to_string(n.options.state.block));
    params_.reserve(params_.size() + list.size());  // the pushes below cannot throw
    for (size_t i = 0; i < list.size(); ++i) {
      try {
        check_new_param(list, i);  // and records its memory
      } catch (...) {
        for (size_t j = 0; j < i; ++j) param_ranges_.erase(range_of(*list[j].data), list[j].data->storage->owned());
        throw;
      }
    }
    const int first = int(params_.size());
    for (NewParam& n : list) {
      Param p;
      p.data = std::move(n.data);
      p.group = group;
      p.name = std::move(n.name);
      p.options = n.options;
      p.options.master_weights = n.options.master_weights && p.data->dtype != DType::Float32;
      p.options.state.dtype = effective_state_dtype(p.options.state.dtype, p.data->numel);
      params_.push_back(std::move(p));
    }
    return first;
  }

  int add_param(std::shared_ptr<Tensor> data, int group, std::string name, ParamOptions options) {
    std::vector<NewParam> one;
    one.push_back({std::move(data), std::move(name), options});
    return add_params(std::move(one), group);
  }

  // Bytes this engine holds beyond the tensors it was given: state buffers, masters and row
  // lists while they are alive (device or host), plus the host bookkeeping (the param list,
  // the launch plan, its key and the backend's copy of it, estimated). The addon reports
  // this figure to V8 so that dropped optimizers are collected under memory pressure.
  int64_t memory_bytes() const {
    return owned_bytes_->load() +
           int64_t(params_.capacity() * sizeof(Param) + param_ranges_.size() * 48 +
                   plan_key_.capacity() * sizeof(uint64_t)) +
           table_bytes_;
  }

  // Bytes of optimizer state (the state buffers in their dtypes; not masters or tables).
  int64_t state_bytes() const {
    int64_t total = 0;
    for (const Param& p : params_)
      for (const auto& s : p.states)
        if (s) total += int64_t(s->bytes());
    return total;
  }

  int64_t param_numel(int index) const {
    check_index(index);
    return params_[size_t(index)].data->numel;
  }

  // The encoding param `index` keeps its state in (after the small-tensor rule).
  StateFormat state_format(int index) const {
    check_index(index);
    return params_[size_t(index)].options.state;
  }

  // Changes the encoding of a param's state (its group's stateDtype changed): existing state
  // buffers are converted through fp32 at once; new ones are created in it.
  void set_state_format(int index, StateFormat wanted) {
    check_index(index);
    if (busy_) throw std::runtime_error("cannot change the state dtype while stepAsync() is running");
    check_no_checkpoint_io("change the state dtype");
    Param& p = params_[size_t(index)];
    if (!valid_quant_block(wanted.block))
      throw RangeError("param '" + p.name + "': the 8-bit state block size must be 256 or 2048, got " +
                       std::to_string(wanted.block));
    wanted.dtype = effective_state_dtype(wanted.dtype, p.data->numel);
    const StateFormat old = p.options.state;
    if (old.dtype == wanted.dtype && (old.dtype != StateDType::Uint8 || old.block == wanted.block)) return;
    if (p.rows && wanted.dtype != StateDType::Float32) throw TypeError(sparse_low_bit_message(p));
    synchronize();
    std::shared_ptr<Storage> converted[kStates];
    for (int k = 0; k < kStates; ++k)
      if (p.states[k]) converted[k] = convert_buffer(p.states[k], old, wanted, p.data->numel, Algo::state_signed(k));
    for (int k = 0; k < kStates; ++k)
      if (converted[k]) p.states[k] = std::move(converted[k]);
    p.options.state = wanted;
  }

  // Frees the state buffers, masters and launch tables and lets go of the tensors: at once,
  // or when the running stepAsync() finishes. The addon refuses every later call.
  void dispose() {
    disposed_ = true;
    if (!busy_) release();
  }
  bool disposed() const { return disposed_; }

  // Safe while a stepAsync() runs: the running step uses its own copy of the plan.
  void set_grad(int index, std::shared_ptr<Tensor> grad) {
    check_index(index);
    Param& p = params_[size_t(index)];
    p.grad = std::move(grad);  // checked at every step
    grads_changed_ = true;
    p.rows.reset();
    p.row_count = p.row_width = 0;
  }

  // A row-sparse grad (lazy mode): values holds rows.size() rows of row_width elements, and
  // row r of it updates row rows[r] of the param; other rows keep their values and state.
  // Rows must be in range and distinct (two updates of one row would race).
  void set_sparse_grad(int index, std::shared_ptr<Tensor> values, const std::vector<int32_t>& rows, int64_t row_width) {
    check_index(index);
    Param& p = params_[size_t(index)];
    const std::string who = "param '" + p.name + "': row-sparse grad";
    if (!values) throw TypeError(who + " has no values");
    if (row_width <= 0 || p.data->numel % row_width != 0)
      throw RangeError(who + ": a row of " + std::to_string(row_width) + " elements does not divide the param's " +
                       std::to_string(p.data->numel));
    if (values->numel != int64_t(rows.size()) * row_width)
      throw RangeError(who + ": values has " + std::to_string(values->numel) + " elements, expected " +
                       std::to_string(rows.size()) + " rows of " + std::to_string(row_width));
    const int64_t param_rows = p.data->numel / row_width;
    std::vector<bool> seen(size_t(param_rows), false);
    for (size_t r = 0; r < rows.size(); ++r) {
      const int32_t row = rows[r];
      if (row < 0 || row >= param_rows)
        throw RangeError(who + ": rows[" + std::to_string(r) + "] = " + std::to_string(row) + " is outside [0, " +
                         std::to_string(param_rows) + ")");
      if (seen[size_t(row)]) throw RangeError(who + ": row " + std::to_string(row) + " appears twice");
      seen[size_t(row)] = true;
    }
    auto storage = counted(Storage::allocate(device_, rows.size() * sizeof(int32_t)));
    if (!rows.empty()) {
      if (device_ == Device::CPU)
        std::memcpy(storage->data_unchecked(), rows.data(), rows.size() * sizeof(int32_t));
      else
        cuda::copy_host_to_device(storage->data_unchecked(), rows.data(), rows.size() * sizeof(int32_t));
    }
    p.grad = std::move(values);
    grads_changed_ = true;
    p.rows = std::move(storage);
    p.row_count = int64_t(rows.size());
    p.row_width = row_width;
  }

  void set_lazy_mode(bool on) { lazy_mode_ = on; }

  // Validates hyperparameters (one entry per group) and every bound tensor, creates
  // missing state, uploads the plan if it changed, and commits the new step counts.
  // for_async pins every tensor the step touches and marks the engine busy until finish().
  // A step whose grads hold an inf/NaN under check_finite comes back skipped: no step count,
  // param, master or moment changes (the check runs before any update, on the host for the
  // CPU and with one synchronisation on CUDA).
  std::unique_ptr<PreparedStep> prepare(const std::vector<Hyper>& groups, bool for_async,
                                        const StepControl& control = StepControl{}) {
    if (busy_) throw std::runtime_error("a stepAsync() is still running: await it before stepping again");
    check_no_checkpoint_io("step");
    check_usable();
    check_control(control);
    validate(groups);
    create_state(groups);
    auto prepared = std::make_unique<PreparedStep>();
    std::vector<Plan> plan = build_plan(groups, 1, prepared->slots);
    const bool rounds = control.stochastic_rounding || steps_bf16_state();
    for (Slot& s : prepared->slots) apply_control(s, control, rounds);
    bind_plan(plan);
    if (control.needs_prepass()) {
      prepared->use_prepass = true;
      backend_->prepare_grads(control.prepass);
      if (control.prepass.check_finite && backend_->read_found_inf()) {
        prepared->skipped = true;
        return prepared;
      }
    }
    prepared->rounds = rounds;
    for (size_t i = 0; i < params_.size(); ++i) {
      Param& p = params_[i];
      if (!p.grad) continue;
      prepared->stepped.push_back(int(i));
      if (!for_async) continue;
      std::shared_ptr<Storage> used[] = {p.data->storage, p.grad->storage, p.master, p.rows};
      for (const auto& s : used) pin(s, *prepared);
      for (const auto& s : p.states) pin(s, *prepared);
    }
    if (for_async) busy_ = true;
    return prepared;
  }

  // Runs the update (CPU: on the thread pool, returns when done; CUDA: enqueues) and
  // records how far it got; never throws. Safe on another thread for a prepared async step.
  void execute(PreparedStep& step) noexcept {
    if (step.skipped) return;
    try {
      backend_->launch(step.slots.data(), int(step.slots.size()), step.use_prepass);
      step.outcome = PreparedStep::Outcome::Queued;
    } catch (const NothingLaunched& e) {
      step.outcome = PreparedStep::Outcome::NothingQueued;
      step.error = e.what();
    } catch (const std::exception& e) {
      // The CPU backend runs all or nothing (it throws NothingLaunched); only a CUDA step can
      // fail part way.
      step.outcome = PreparedStep::Outcome::PartlyQueued;
      step.error = e.what();
    }
  }

  // Makes a step that ran count: its params' step counts, their masters' versions and the
  // rounding counter move. A step that queued nothing changes nothing and throws its error;
  // one that queued part of its work leaves the optimizer broken() and throws.
  void commit(PreparedStep& step) {
    using Outcome = typename PreparedStep::Outcome;
    if (step.skipped) return;
    if (step.outcome == Outcome::NothingQueued) throw std::runtime_error(step.error);
    if (step.outcome == Outcome::PartlyQueued) {
      broken_ = "a step failed after part of its work was queued on the GPU (" + step.error + ")";
      throw std::runtime_error(broken_message());
    }
    if (step.rounds) ++rng_counter_;
    for (int i : step.stepped) {
      Param& p = params_[size_t(i)];
      ++p.step;
      p.state_written = p.states[0] != nullptr;
      // The step wrote the param: a new version, so another optimizer holding it re-seeds
      // its master from the value written here instead of restoring a stale one.
      p.data->storage->bump_version();
      if (p.master) p.master_version = p.data->storage->version();
    }
  }

  // A step whose device work was partly queued leaves params, moments and step counts out of
  // step with each other: every later step, metrics or state read is refused until a state
  // dict is loaded (set_state clears it).
  bool broken() const { return !broken_.empty(); }
  // The message a refused operation gives (empty when not broken).
  std::string broken_reason() const { return broken_.empty() ? std::string() : broken_message(); }

  // Stochastic rounding's random stream: a seed and a counter of rounded steps, saved in
  // state dicts so a resumed run draws the same bits.
  uint64_t rng_seed() const { return rng_seed_; }
  uint64_t rng_counter() const { return rng_counter_; }
  void set_rng(uint64_t seed, uint64_t counter) {
    if (busy_) throw std::runtime_error("cannot change the rounding seed while stepAsync() is running");
    check_no_checkpoint_io("change the rounding seed");
    rng_seed_ = seed;
    rng_counter_ = counter;
  }

  // Ends an asynchronous step on the JavaScript thread: releases its pins and the busy mark,
  // then commits it (throwing as commit does).
  void finish(PreparedStep& step) {
    for (auto& s : step.pinned) s->unpin();
    step.pinned.clear();
    busy_ = false;
    if (disposed_) {
      release();  // nothing is left to commit to
      return;
    }
    commit(step);
  }

  void synchronize() {
    if (backend_) backend_->synchronize();  // none after dispose()
  }

  // CUDA: later steps wait on the device (the host never waits) for `event`, a cudaEvent_t
  // of the caller's, e.g. recorded after the kernels that produced the grads on another stream.
  void wait_for_event(void* event) {
    if (device_ == Device::CUDA && !event) throw TypeError("waitFor: the event is null");
    backend_->wait_for_event(event);  // the CPU's refuses
  }

  // The CUDA stream the steps run on (a cudaStream_t), null on the CPU.
  void* cuda_stream() const { return backend_ ? backend_->stream() : nullptr; }

  // Metric sums of every param that has a grad and state, from the current state and grad;
  // "update" is what the next step would subtract. {index, sums} pairs, in param order.
  std::vector<std::pair<int, MetricSums>> metrics(const std::vector<Hyper>& groups) {
    if (busy_) throw std::runtime_error("cannot compute metrics while stepAsync() is running");
    check_usable();
    validate(groups);
    // The next step re-syncs a master whose half param was written since: so do the metrics.
    for (Param& p : params_)
      if (p.grad && has_stepped(p) && p.master && p.master_version != p.data->storage->version())
        sync_master_from_param(p);
    std::vector<Slot> slots;
    std::vector<int> indices;
    std::vector<std::shared_ptr<Storage>> scratch;
    std::vector<Plan> plan = build_plan(groups, 1, slots, &indices, /*only_with_state=*/true, &scratch);
    bind_plan(plan);
    std::vector<MetricSums> sums(plan.size());
    if (!plan.empty()) backend_->metrics(slots.data(), int(slots.size()), sums.data());
    std::vector<std::pair<int, MetricSums>> out;
    for (size_t i = 0; i < plan.size(); ++i) out.emplace_back(indices[i], sums[i]);
    return out;
  }

  ParamState get_state(int index) {
    check_index(index);
    if (busy_) throw std::runtime_error("cannot read optimizer state while stepAsync() is running");
    synchronize();
    Param& p = params_[size_t(index)];
    ParamState st;
    st.step = p.step;
    st.has_state = p.step > 0 && p.states[0];
    if (!st.has_state) return st;
    const int64_t n = p.data->numel;
    st.format = p.options.state;
    for (int k = 0; k < kStates; ++k) {
      st.states[k] = read_bytes(p.states[k]);
      st.present[k] = p.states[k] != nullptr;
    }
    st.master = read_floats(p.master, n);
    st.has_master = p.master != nullptr;
    return st;
  }

  // Replaces a param's state; vectors must have the param's element count (optional ones
  // may be empty). Validated before anything is written. A given master also rewrites the
  // half param from it, so param and master agree.
  void set_state(int index, const ParamState& st) {
    check_index(index);
    if (busy_) throw std::runtime_error("cannot load optimizer state while stepAsync() is running");
    Param& p = params_[size_t(index)];
    check_no_checkpoint_io("load optimizer state");
    check_state(p, st);
    synchronize();
    const int64_t n = p.data->numel;
    for (int k = 0; k < kStates; ++k) {
      if (!st.present[k]) continue;
      if (!p.states[k]) p.states[k] = new_state_buffer(n, p.options.state);
      write_state(p.states[k], st.states[k], st.format, p.options.state, n, Algo::state_signed(k));
    }
    p.state_written = st.present[0];
    if (p.options.master_weights) {
      if (!p.master) p.master = new_master_buffer(n);
      if (st.has_master) {
        write_floats(p.master, st.master);
        write_float32(*p.data, st.master.data());  // the param is the master, rounded
        p.master_version = p.data->storage->version();
      } else {
        sync_master_from_param(p);  // no saved master: start from the param's value
      }
    }
    p.step = st.step;
    broken_.clear();  // loading a state dict restores every param (TypeScript's loadStateDict)
  }

  // Checks a state without applying it (for validating a whole dict first).
  void check_state(int index, const ParamState& st) {
    check_index(index);
    check_state(params_[size_t(index)], st);
  }

  // ---- Checkpoint I/O (native/checkpoint, src/checkpoint): a param's buffers without host
  // copies, so state streams between memory and files tensor by tensor.
  struct StateBuffers {
    int64_t step = 0;
    bool has_state = false;
    StateFormat format;  // the encoding of `states`
    std::shared_ptr<Storage> states[kStates];
    std::shared_ptr<Storage> master;
    // stage_load: created for the load (not yet the optimizer's, so they may be filled while
    // the file is still being checked).
    bool fresh[kStates] = {};
    bool fresh_master = false;
  };

  // While a checkpoint reads or writes this optimizer's buffers (counted), steps and state
  // changes are refused.
  void begin_checkpoint_io() {
    if (busy_) throw std::runtime_error("a stepAsync() is running: await it before saving or loading a checkpoint");
    ++checkpoint_io_;
  }
  void end_checkpoint_io() {
    if (checkpoint_io_ > 0) --checkpoint_io_;
  }

  // The buffers a save writes (call synchronize() first). A master whose half param was
  // written since the last step is re-synced from it first, as the next step would do (and
  // metrics() does), so the file holds what the next step would use.
  StateBuffers state_buffers(int index) {
    check_index(index);
    Param& p = params_[size_t(index)];
    check_usable();  // a broken state must not be saved
    StateBuffers b;
    b.step = p.step;
    b.has_state = p.step > 0 && p.states[0];
    if (!b.has_state) return b;
    if (p.master && p.master_version != p.data->storage->version()) sync_master_from_param(p);
    b.format = p.options.state;
    for (int k = 0; k < kStates; ++k) b.states[k] = p.states[k];
    b.master = p.master;
    return b;
  }

  // A load in three parts. stage_load returns the buffers to read into, in the file's
  // encoding `file_format`: the param's own when it keeps that encoding, or new zero-filled
  // ones held aside (the optimizer is unchanged until commit_load, which converts them to
  // the param's encoding when it differs).
  StateBuffers stage_load(int index, const bool (&states)[kStates], bool master, StateFormat file_format) {
    check_index(index);
    Param& p = params_[size_t(index)];
    if (master && !p.options.master_weights)
      throw RangeError("state of param '" + p.name + "': only half params with master weights have a master");
    if (!valid_quant_block(file_format.block))
      throw RangeError("state of param '" + p.name + "': the 8-bit state block size must be 256 or 2048, got " +
                       std::to_string(file_format.block));
    const int64_t n = p.data->numel;
    const bool same = same_format(file_format, p.options.state);
    StateBuffers b;
    b.format = file_format;
    p.staged_format = file_format;
    for (int k = 0; k < kStates; ++k) {
      if (!states[k]) continue;
      const bool own = same && p.states[k];
      if (!own && !p.staged_states[k]) p.staged_states[k] = new_state_buffer(n, file_format);
      b.states[k] = own ? p.states[k] : p.staged_states[k];
      b.fresh[k] = !own;
    }
    if (master) {
      if (!p.master && !p.staged_master) p.staged_master = new_master_buffer(n);
      b.master = p.master ? p.master : p.staged_master;
      b.fresh_master = !p.master;
    }
    return b;
  }

  // Attaches the staged buffers and sets the step count. param_loaded: the half param was
  // read from the file as well, so a loaded master and the param agree; otherwise the param
  // is rounded from the loaded master. A half param with master weights and no saved master
  // re-seeds its master from its value.
  void commit_load(int index, int64_t step, bool master_loaded, bool param_loaded) {
    check_index(index);
    Param& p = params_[size_t(index)];
    if (step < 0) throw RangeError("state of param '" + p.name + "': step must be >= 0");
    for (int k = 0; k < kStates; ++k)
      if (p.staged_states[k] && !same_format(p.staged_format, p.options.state))
        p.staged_states[k] =
            convert_buffer(p.staged_states[k], p.staged_format, p.options.state, p.data->numel, Algo::state_signed(k));
    for (int k = 0; k < kStates; ++k)
      if (p.staged_states[k]) p.states[k] = std::move(p.staged_states[k]);
    p.state_written = p.states[0] != nullptr;
    if (p.staged_master) p.master = std::move(p.staged_master);
    if (p.options.master_weights) {
      if (!p.master) p.master = new_master_buffer(p.data->numel);
      if (!master_loaded) {
        sync_master_from_param(p);
      } else if (!param_loaded) {
        const std::vector<float> values = read_floats(p.master, p.data->numel);
        write_float32(*p.data, values.data());
      }
      p.master_version = p.data->storage->version();
    }
    p.step = step;
    broken_.clear();  // a checkpoint load commits or resets every param (src/checkpoint/load.ts)
  }

  // Drops the buffers stage_load created (a failed or abandoned load).
  void abort_load(int index) {
    check_index(index);
    Param& p = params_[size_t(index)];
    for (auto& s : p.staged_states) s.reset();
    p.staged_master.reset();
  }

  // A param the loaded state has nothing for starts afresh, as in torch: no state buffers,
  // step 0 (a master is re-seeded from the param at its next step).
  void reset_state(int index) {
    check_index(index);
    Param& p = params_[size_t(index)];
    for (auto& s : p.states) s.reset();
    p.state_written = false;
    p.step = 0;
    broken_.clear();
  }

 private:
  void check_no_checkpoint_io(const char* what) const {
    if (checkpoint_io_ > 0)
      throw std::runtime_error(std::string("cannot ") + what +
                               " while a checkpoint save or load is reading or writing this optimizer: await it first");
  }

  struct Param {
    std::shared_ptr<Tensor> data;
    std::shared_ptr<Tensor> grad;
    int group = 0;
    std::string name;
    ParamOptions options;
    int64_t step = 0;
    std::shared_ptr<Storage> master;
    std::shared_ptr<Storage> states[kStates];
    uint64_t master_version = 0;    // data's version when the master was last synced
    bool state_written = false;     // states[0] holds a step's (or a loaded state's) values
    std::shared_ptr<Storage> rows;  // row-sparse grad: the rows it updates (on the device)
    int64_t row_count = 0, row_width = 0;
    std::shared_ptr<Storage> staged_states[kStates];  // a checkpoint load's new buffers
    StateFormat staged_format;                        // their encoding (the file's)
    std::shared_ptr<Storage> staged_master;
  };

  // Whether the param has taken a step since its state was last reset (metrics report those):
  // it has state buffers, or stepped with none (SGD without momentum keeps none).
  static bool has_stepped(const Param& p) { return p.states[0] != nullptr || p.step > 0; }

  void check_usable() const {
    if (!broken_.empty()) throw std::runtime_error(broken_message());
  }

  std::string broken_message() const {
    return "this optimizer's state is inconsistent: " + broken_ +
           ". Load a state dict or checkpoint (loadStateDict / loadCheckpoint) to continue";
  }

  // add_params' checks of list[i] (which will be params_[params_.size() + i]); then its memory
  // is recorded (add_params forgets it on failure). Two params over the same memory (the same
  // tensor twice, or overlapping device-pointer views) would be updated twice, by concurrent
  // blocks on a GPU.
  void check_new_param(const std::vector<NewParam>& list, size_t i) {
    const NewParam& n = list[i];
    const std::string& name = n.name;
    if (!n.data) throw TypeError("param '" + name + "': data is missing");
    if (n.data->storage->disposed()) throw std::runtime_error("param '" + name + "' data has been disposed");
    if (n.data->device() != device_)
      throw TypeError("param '" + name + "' is on " + device_name(n.data->device()) + " but the optimizer runs on " +
                      device_name(device_));
    if (!std::isfinite(n.options.lr_ratio) || n.options.lr_ratio < 0)
      throw RangeError("param '" + name + "': lr ratio must be a finite number >= 0, got " +
                       std::to_string(n.options.lr_ratio));
    const MemoryRange range = range_of(*n.data);
    if (const int other = param_ranges_.overlapping(range); other >= 0) {
      const size_t k = size_t(other);
      const Tensor& t = k < params_.size() ? *params_[k].data : *list[k - params_.size()].data;
      if (t.storage == n.data->storage) throw TypeError("param '" + name + "' appears twice in the optimizer");
      const std::string& other_name = k < params_.size() ? params_[k].name : list[k - params_.size()].name;
      throw TypeError("param '" + name + "' overlaps the memory of param '" + other_name + "'");
    }
    param_ranges_.insert(range, int(params_.size() + i), n.data->storage->owned());
  }

  void check_index(int index) const {
    if (index < 0 || size_t(index) >= params_.size())
      throw RangeError("param index " + std::to_string(index) + " is out of range");
  }

  static void check_control(const StepControl& c) {
    const GradPrepass& p = c.prepass;
    if (!std::isfinite(p.inv_scale) || p.inv_scale <= 0)
      throw RangeError("grad scale must be a finite number > 0, got 1/" + std::to_string(p.inv_scale));
    if (p.clip != ClipMode::None && p.clip != ClipMode::GlobalNorm && p.clip != ClipMode::TensorNorm)
      throw RangeError("unknown clip mode " + std::to_string(int(p.clip)));
    if (p.clip != ClipMode::None && !(std::isfinite(p.max_norm) && p.max_norm > 0))
      throw RangeError("clip max norm must be a finite number > 0, got " + std::to_string(p.max_norm));
    if (std::isnan(c.clip_lo) || std::isnan(c.clip_hi) || c.clip_lo > c.clip_hi)
      throw RangeError("clip value bounds must satisfy min <= max");
  }

  // rounds: this step draws random bits (bf16 params with stochastic rounding, or bf16 state).
  void apply_control(Slot& s, const StepControl& c, bool rounds) const {
    s.grad = GradTransform{c.prepass.inv_scale, c.clip_lo, c.clip_hi};
    if (c.stochastic_rounding) s.flags |= kStochasticRounding;
    if (rounds) {
      // The step's key: the seed mixed with the counter of the step being taken.
      s.rng_key0 = uint32_t(rng_seed_) ^ mix32(uint32_t(rng_seed_ >> 32));
      s.rng_key1 = uint32_t(rng_counter_ + 1) ^ mix32(uint32_t((rng_counter_ + 1) >> 32) + 0x68e31da4u);
    }
  }

  void validate(const std::vector<Hyper>& groups) const {
    for (size_t g = 0; g < groups.size(); ++g) Algo::check(groups[g], "param group " + std::to_string(g));
    for (const Param& p : params_) {
      if (size_t(p.group) >= groups.size())
        throw RangeError("param '" + p.name + "' belongs to param group " + std::to_string(p.group) + " but only " +
                         std::to_string(groups.size()) + " groups were given");
      if (p.data->storage->disposed()) throw std::runtime_error("param '" + p.name + "' data has been disposed");
      if (!p.grad) continue;
      const Tensor& g = *p.grad;
      if (g.storage->disposed()) throw std::runtime_error("param '" + p.name + "' grad has been disposed");
      if (p.rows && !lazy_mode_)
        throw TypeError("param '" + p.name + "' has a row-sparse grad: construct the optimizer with lazyMode: true");
      if (p.rows && p.options.state.dtype != StateDType::Float32) throw TypeError(sparse_low_bit_message(p));
      if (p.rows && g.numel != p.row_count * p.row_width)
        throw RangeError("param '" + p.name + "': row-sparse grad values have " + std::to_string(g.numel) +
                         " elements, expected " + std::to_string(p.row_count * p.row_width));
      if (!p.rows && g.numel != p.data->numel)
        throw RangeError("param '" + p.name + "': grad has " + std::to_string(g.numel) +
                         " elements but the param has " + std::to_string(p.data->numel));
      if (g.dtype != DType::Float32 && g.dtype != p.data->dtype)
        throw TypeError("param '" + p.name + "': grad dtype " + dtype_name(g.dtype) +
                        " must be float32 or the param's dtype " + dtype_name(p.data->dtype));
      if (g.device() != device_)
        throw TypeError("param '" + p.name + "': grad is on " + device_name(g.device()) + " but the param is on " +
                        device_name(device_));
    }
    if (grads_changed_) check_grad_overlaps();
  }

  // A grad shared by two params, or overlapping a param's memory, would be read while another
  // block writes it (and clipped or unscaled twice). Owned tensors are separate allocations,
  // so only the same storage twice can overlap: an O(n) check. Device-pointer views
  // (foreign storages) may overlap anything, which takes an ordered pass.
  void check_grad_overlaps() const {
    std::unordered_map<const Storage*, int> seen, data_of;  // grad and data storages -> param
    bool any_foreign = param_ranges_.any_foreign();
    for (size_t i = 0; i < params_.size(); ++i) data_of.emplace(params_[i].data->storage.get(), int(i));
    for (size_t i = 0; i < params_.size(); ++i) {
      const Param& p = params_[i];
      if (!p.grad) continue;
      const Storage* g = p.grad->storage.get();
      any_foreign |= !g->owned();
      if (g == p.data->storage.get()) throw TypeError("param '" + p.name + "': its grad is its own data tensor");
      if (const auto d = data_of.find(g); d != data_of.end())
        throw TypeError("param '" + p.name + "': its grad overlaps the memory of param '" +
                        params_[size_t(d->second)].name + "'");
      const auto found = seen.emplace(g, int(i));
      if (!found.second)
        throw TypeError("param '" + p.name + "': its grad is also the grad of param '" +
                        params_[size_t(found.first->second)].name + "'");
    }
    if (any_foreign) {
      RangeSet grads;
      for (size_t i = 0; i < params_.size(); ++i) {
        const Param& p = params_[i];
        if (!p.grad) continue;
        const MemoryRange r = range_of(*p.grad);
        if (const int other = grads.overlapping(r); other >= 0)
          throw TypeError("param '" + p.name + "': its grad overlaps the grad of param '" +
                          params_[size_t(other)].name + "'");
        if (const int other = param_ranges_.overlapping(r); other >= 0)
          throw TypeError("param '" + p.name + "': its grad overlaps the memory of param '" +
                          params_[size_t(other)].name + "'");
        grads.insert(r, int(i), p.grad->storage->owned());
      }
    }
    grads_changed_ = false;
  }

  // Allocation may throw; no step count has moved yet.
  void create_state(const std::vector<Hyper>& groups) {
    for (Param& p : params_) {
      if (!p.grad) continue;
      const int64_t n = p.data->numel;
      for (int k = 0; k < kStates; ++k)
        if (!p.states[k] && Algo::state_needed(k, groups[size_t(p.group)])) {
          p.states[k] = new_state_buffer(n, p.options.state);
          if (k == 0) p.state_written = false;
        }
      if (p.options.master_weights) {
        if (!p.master) p.master = new_master_buffer(n);
        if (p.master_version != p.data->storage->version() || p.step == 0) sync_master_from_param(p);
      }
    }
  }

  // One slot per distinct (group, step count, lr ratio, decay switch) among the params
  // that step; step_increment 1: the counts this step will have.
  std::vector<Plan> build_plan(const std::vector<Hyper>& groups, int64_t step_increment, std::vector<Slot>& slots,
                               std::vector<int>* indices = nullptr, bool only_with_state = false,
                               std::vector<std::shared_ptr<Storage>>* scratch = nullptr) {
    struct Key {
      int group;
      int64_t step;
      double ratio;
      bool decay;
      bool first;  // Algo::kFirstStepInSlot: the state buffers have not been written by a step
    };
    std::vector<Key> keys;
    std::vector<Plan> plan;
    plan.reserve(params_.size());
    for (size_t i = 0; i < params_.size(); ++i) {
      Param& p = params_[i];
      if (!p.grad || (only_with_state && (!has_stepped(p) || p.rows))) continue;  // metrics: dense only
      const Hyper& h = groups[size_t(p.group)];
      const int64_t step = p.step + step_increment;
      const bool first = Algo::kFirstStepInSlot && (!p.states[0] || !p.state_written);
      int slot = -1;
      for (size_t k = 0; k < keys.size(); ++k)
        if (keys[k].group == p.group && keys[k].step == step && keys[k].ratio == p.options.lr_ratio &&
            keys[k].decay == p.options.apply_decay && keys[k].first == first)
          slot = int(k);
      if (slot < 0) {
        slot = int(keys.size());
        keys.push_back({p.group, step, p.options.lr_ratio, p.options.apply_decay, first});
        slots.push_back(Algo::make_slot(h, step, p.options.lr_ratio, p.options.apply_decay, first));
      }
      PlanBase base{p.data->storage->data_unchecked(),
                    p.grad->storage->data_unchecked(),
                    p.master ? static_cast<float*>(p.master->data_unchecked()) : nullptr,
                    p.rows ? p.grad->numel : p.data->numel,
                    slot,
                    p.data->dtype,
                    p.grad->dtype,
                    uint32_t(i),
                    p.rows ? static_cast<const int32_t*>(p.rows->data_unchecked()) : nullptr,
                    p.row_width,
                    p.options.state};
      void* states[kStates];
      for (int k = 0; k < kStates; ++k) states[k] = p.states[k] ? p.states[k]->data_unchecked() : nullptr;
      if (scratch)  // metrics: zero buffers a step would create, not kept in the state
        for (int k = 0; k < kStates; ++k)
          if (!states[k] && Algo::state_needed(k, h)) {
            scratch->push_back(new_state_buffer(p.data->numel, p.options.state));
            states[k] = scratch->back()->data_unchecked();
          }
      plan.push_back(Algo::make_plan(base, states, h));
      if (indices) indices->push_back(int(i));
    }
    return plan;
  }

  // Plans are compared field by field through a flat key (struct padding is not data).
  static std::vector<uint64_t> key_of(const std::vector<Plan>& plan) {
    std::vector<uint64_t> key;
    key.reserve(plan.size() * (sizeof(Plan) / 8 + 1));
    for (const Plan& t : plan) {
      key.push_back(reinterpret_cast<uintptr_t>(t.param));
      // A dense grad's pointer travels per step (set_grads): a new grad tensor each step must
      // not rebuild the table. A row-sparse grad's rows and sizes are part of the table.
      key.push_back(t.rows ? reinterpret_cast<uintptr_t>(t.grad) : 0);
      key.push_back(reinterpret_cast<uintptr_t>(t.master));
      key.push_back(uint64_t(t.numel));
      key.push_back(uint64_t(uint32_t(t.slot)) | uint64_t(t.param_dtype) << 32 | uint64_t(t.grad_dtype) << 40);
      key.push_back(reinterpret_cast<uintptr_t>(t.rows));
      key.push_back(uint64_t(t.row_width));
      key.push_back(uint64_t(t.state.dtype) | uint64_t(uint32_t(t.state.block)) << 32);
      for (const void* state : Algo::state_pointers(t)) key.push_back(reinterpret_cast<uintptr_t>(state));
    }
    return key;
  }

  // Hands the plan to the backend: the whole table when it changed, else only the grads.
  void bind_plan(const std::vector<Plan>& plan) {
    std::vector<uint64_t> key = key_of(plan);
    if (!plan_uploaded_ || key != plan_key_) {
      plan_uploaded_ = false;  // a failed upload must not leave the old key standing
      backend_->set_tensors(plan);
      plan_key_ = std::move(key);
      plan_uploaded_ = true;
      ++plan_uploads_;
      table_bytes_ = int64_t(plan.size() * sizeof(Plan) * 2);  // the backend's tables, about
      return;
    }
    std::vector<const void*> grads(plan.size());
    for (size_t i = 0; i < plan.size(); ++i) grads[i] = plan[i].grad;
    backend_->set_grads(grads);
  }

  static void pin(const std::shared_ptr<Storage>& s, PreparedStep& step) {
    if (!s) return;
    s->pin();
    step.pinned.push_back(s);
  }

  void check_state(const Param& p, const ParamState& st) const {
    const size_t n = size_t(p.data->numel);
    const std::string who = "state of param '" + p.name + "'";
    if (st.step < 0) throw RangeError(who + ": step must be >= 0");
    if (!valid_quant_block(st.format.block))
      throw RangeError(who + ": the 8-bit state block size must be 256 or 2048, got " +
                       std::to_string(st.format.block));
    const size_t bytes = size_t(state_buffer_bytes(st.format, int64_t(n)));
    for (int k = 0; k < kStates; ++k) {
      const size_t len = st.states[k].size();
      if (!st.present[k] && !Algo::state_required(k)) continue;
      if (!st.present[k]) throw RangeError(who + ": " + Algo::state_name(k) + " is missing");
      if (len != bytes)
        throw RangeError(who + ": " + Algo::state_name(k) + " has " + std::to_string(len) + " bytes; a " +
                         kStateDTypeNames[int(st.format.dtype)] + " state of the param's " + std::to_string(n) +
                         " elements has " + std::to_string(bytes));
    }
    if (st.has_master && (st.master.size() != n || !p.options.master_weights))
      throw RangeError(who + ": master must have " + std::to_string(n) +
                       " elements, and only half params with master weights have one");
    p.data->storage->data(("param '" + p.name + "' data").c_str());
  }

  std::shared_ptr<Storage> new_state_buffer(int64_t numel, const StateFormat& f) {
    return counted(Storage::allocate(device_, size_t(state_buffer_bytes(f, numel))));
  }
  std::shared_ptr<Storage> new_master_buffer(int64_t numel) {
    return counted(Storage::allocate(device_, size_t(numel) * sizeof(float)));
  }

  static bool same_format(const StateFormat& a, const StateFormat& b) {
    return a.dtype == b.dtype && (a.dtype != StateDType::Uint8 || a.block == b.block);
  }

  // Row-sparse steps update scattered rows; bf16 and 8-bit state are coded in contiguous
  // blocks (an 8-bit block shares one scale), which such a step would have to rewrite whole.
  static std::string sparse_low_bit_message(const Param& p) {
    return "param '" + p.name + "': row-sparse grads (lazyMode) need float32 state, but its group has stateDtype '" +
           kStateDTypeNames[int(p.options.state.dtype)] + "'";
  }

  // Whether a param that steps now keeps bfloat16 state (its rounding draws random bits).
  bool steps_bf16_state() const {
    for (const Param& p : params_)
      if (p.grad && p.options.state.dtype == StateDType::BFloat16) return true;
    return false;
  }

  // A new buffer holding `from`'s values in encoding `to` (through fp32, on the host).
  std::shared_ptr<Storage> convert_buffer(const std::shared_ptr<Storage>& from, const StateFormat& from_format,
                                          const StateFormat& to, int64_t n, bool is_signed) {
    std::vector<uint8_t> raw = read_bytes(from);
    auto out = new_state_buffer(n, to);
    write_state(out, raw, from_format, to, n, is_signed);
    return out;
  }

  // Writes raw (a buffer encoded as `given`) into s, encoded as `to`.
  void write_state(const std::shared_ptr<Storage>& s, const std::vector<uint8_t>& raw, const StateFormat& given,
                   const StateFormat& to, int64_t n, bool is_signed) {
    if (same_format(given, to)) {
      backend_->copy_to_device(s->data_unchecked(), raw.data(), raw.size());
      return;
    }
    std::vector<float> values(static_cast<size_t>(n));
    decode_state(given, raw.data(), n, is_signed, values.data());
    std::vector<uint8_t> encoded(static_cast<size_t>(state_buffer_bytes(to, n)));
    encode_state(to, values.data(), n, is_signed, encoded.data());
    backend_->copy_to_device(s->data_unchecked(), encoded.data(), encoded.size());
  }

  std::vector<uint8_t> read_bytes(const std::shared_ptr<Storage>& s) {
    if (!s) return {};
    std::vector<uint8_t> out(s->bytes());
    backend_->copy_to_host(out.data(), s->data_unchecked(), out.size());  // after our own steps only
    return out;
  }

  // The same storage, its bytes counted in owned_bytes_ for as long as anything holds it
  // (a pinned buffer of a running step included).
  std::shared_ptr<Storage> counted(std::shared_ptr<Storage> storage) {
    struct Holder {
      Holder(std::shared_ptr<Storage> s, std::shared_ptr<std::atomic<int64_t>> c)
          : storage(std::move(s)), counter(std::move(c)), bytes(int64_t(storage->bytes())) {
        counter->fetch_add(bytes);
      }
      ~Holder() { counter->fetch_sub(bytes); }
      std::shared_ptr<Storage> storage;
      std::shared_ptr<std::atomic<int64_t>> counter;
      int64_t bytes;
    };
    auto holder = std::make_shared<Holder>(std::move(storage), owned_bytes_);
    return std::shared_ptr<Storage>(holder, holder->storage.get());
  }

  // dispose(): everything the engine holds goes (the tensors stay with their owners).
  void release() {
    params_ = {};
    param_ranges_ = {};
    plan_key_ = {};
    plan_uploaded_ = false;
    table_bytes_ = 0;
    backend_.reset();
  }

  void sync_master_from_param(Param& p) {
    const Tensor& d = *p.data;
    float* master = static_cast<float*>(p.master->data_unchecked());
    backend_->to_float32(master, d.storage->data_unchecked(), d.dtype, d.numel);
    p.master_version = d.storage->version();
  }

  std::vector<float> read_floats(const std::shared_ptr<Storage>& s, int64_t n) {
    if (!s) return {};
    std::vector<float> out(static_cast<size_t>(n));
    backend_->copy_to_host(out.data(), s->data_unchecked(), size_t(n) * 4);  // after our own steps only
    return out;
  }

  void write_floats(const std::shared_ptr<Storage>& s, const std::vector<float>& v) {
    backend_->copy_to_device(s->data_unchecked(), v.data(), v.size() * 4);
  }

  static std::unique_ptr<Backend<Plan, Slot>> make_backend(Device device) {
    if (device == Device::CUDA) return std::make_unique<cuda::Launcher<Plan, Slot>>();
    return std::make_unique<cpu::ChunkRunner<Plan, Slot>>();
  }

  Device device_;
  std::vector<Param> params_;
  RangeSet param_ranges_;              // every param's memory, for the overlap checks
  mutable bool grads_changed_ = true;  // grads were bound since the last overlap check
  std::string broken_;                 // why the state is inconsistent (empty: it is not)
  std::shared_ptr<std::atomic<int64_t>> owned_bytes_ = std::make_shared<std::atomic<int64_t>>(0);
  int64_t table_bytes_ = 0;
  bool disposed_ = false;
  std::vector<uint64_t> plan_key_;
  bool plan_uploaded_ = false;
  int64_t plan_uploads_ = 0;
  uint64_t rng_seed_ = 0;
  uint64_t rng_counter_ = 0;
  bool busy_ = false;      // an asynchronous step is running on another thread
  int checkpoint_io_ = 0;  // checkpoint transfers using this optimizer's buffers
  bool lazy_mode_ = false;
  std::unique_ptr<Backend<Plan, Slot>> backend_;
};

using AdamWEngine = Engine<AdamWAlgo>;
using LionEngine = Engine<LionAlgo>;

}  // namespace fo
