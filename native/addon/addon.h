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

// Whether an environment has begun to shut down, shared by the objects made in it: their
// finalizers run during the teardown (after the cleanup hook has set the flag) and must not
// report memory to a V8 heap that is going away.
struct EnvLifetime {
  std::atomic<bool> closing{false};
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

// The bytes an object has reported to V8 with AdjustExternalMemory, given back when it is
// released or finalized (not during the environment's teardown).
class ExternalMemory {
 public:
  explicit ExternalMemory(Napi::Env env) : env_(env), lifetime_(Addon::of(env).lifetime()) {}
  ~ExternalMemory() { set(0); }
  ExternalMemory(const ExternalMemory&) = delete;
  ExternalMemory& operator=(const ExternalMemory&) = delete;

  // Reports `bytes` in all (the difference from the last report goes to V8).
  void set(int64_t bytes) {
    if (bytes == reported_) return;
    if (!lifetime_->closing.load()) Napi::MemoryManagement::AdjustExternalMemory(env_, bytes - reported_);
    reported_ = bytes;
  }
  int64_t reported() const { return reported_; }

 private:
  Napi::Env env_;
  std::shared_ptr<EnvLifetime> lifetime_;
  int64_t reported_ = 0;
};

}  // namespace fo::addon
