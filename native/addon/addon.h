#pragma once
// The addon's per-environment state. Node loads the addon once per process but initialises
// it once per environment: the main thread and every worker_thread each get an Addon of
// their own (Napi::Addon keeps it with napi_set_instance_data and deletes it when that
// environment is torn down), so nothing JavaScript-facing is shared between threads.
// What is process-wide is native only and thread-safe: the CPU thread pool (one per
// process, its parallel_for calls serialised; see docs/workers.md) and the CUDA probe.
// Each optimizer owns its CUDA launcher (stream and tables), so nothing of CUDA is shared.
#include <napi.h>

#include <atomic>
#include <cstdint>
#include <memory>

namespace fo::addon {

// What the objects of one environment share: whether it has begun to shut down (their
// finalizers run during the teardown, after the cleanup hook has set the flag, and must not
// report memory to a V8 heap that is going away), and the external-memory change not yet
// told to V8. Used on the environment's JavaScript thread only (finalizers run there too).
struct EnvLifetime {
  std::atomic<bool> closing{false};
  int64_t unreported = 0;
};

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports);

  // This environment's Addon (valid while JavaScript of the environment runs).
  static Addon& of(Napi::Env env) { return *env.GetInstanceData<Addon>(); }

  // The TensorHandle class of this environment (unwrap checks instanceof against it).
  Napi::Function tensor_class() const { return tensor_class_.Value(); }
  const std::shared_ptr<EnvLifetime>& lifetime() const { return lifetime_; }

 private:
  Napi::FunctionReference tensor_class_;
  std::shared_ptr<EnvLifetime> lifetime_ = std::make_shared<EnvLifetime>();
};

// The bytes an object holds outside the V8 heap, reported with AdjustExternalMemory so that
// the garbage collector weighs a dropped tensor or optimizer by its real size, and given back
// when it is released or finalized. Changes are summed per environment and passed on once
// they reach kBatchBytes: a million tiny tensors then cost a few calls into V8, not two
// million (each call may start a GC check), and the total V8 knows is never off by more.
class ExternalMemory {
 public:
  static constexpr int64_t kBatchBytes = int64_t(1) << 20;

  explicit ExternalMemory(Napi::Env env) : env_(env), lifetime_(Addon::of(env).lifetime()) {}
  ~ExternalMemory() { set(0); }
  ExternalMemory(const ExternalMemory&) = delete;
  ExternalMemory& operator=(const ExternalMemory&) = delete;

  // This object now holds `bytes` in all.
  void set(int64_t bytes) {
    if (bytes == reported_) return;
    int64_t& unreported = lifetime_->unreported;
    unreported += bytes - reported_;
    reported_ = bytes;
    if ((unreported >= kBatchBytes || unreported <= -kBatchBytes) && !lifetime_->closing.load()) {
      Napi::MemoryManagement::AdjustExternalMemory(env_, unreported);
      unreported = 0;
    }
  }
  int64_t reported() const { return reported_; }

 private:
  Napi::Env env_;
  std::shared_ptr<EnvLifetime> lifetime_;
  int64_t reported_ = 0;
};

}  // namespace fo::addon
