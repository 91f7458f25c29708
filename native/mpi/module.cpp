// fused_optim_mpi.node: collectives on host typed arrays over MPI, for
// src/distributed/mpi_backend.ts. Built only where an MPI compiler wrapper is found
// (scripts/find-mpi.js), separately from the main addon, which never needs MPI.
//
// Memory rules (JavaScript must not be able to make MPI touch memory it does not own):
// - a synchronous collective uses the caller's arrays directly: the JavaScript thread is
//   blocked until it completes, so nothing can detach or shrink them meanwhile;
// - an asynchronous one uses staging blocks made by allocate() directly (their memory is
//   shared with the collective, host_block.h), and copies any other array into a block
//   first and back on completion, after checking the array is still what it was.
#include <napi.h>

#include <cmath>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "comm_runtime.h"
#include "host_block.h"

namespace fo::mpi {

namespace {

struct ArrayArg {
  void* data = nullptr;
  size_t length = 0;
  ElemType type = ElemType::F32;
  size_t bytes() const { return length * elem_size(type); }
};

ArrayArg array_arg(const Napi::Value& v, const char* what) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a typed array");
  Napi::TypedArray t = v.As<Napi::TypedArray>();
  ArrayArg a;
  switch (t.TypedArrayType()) {
    case napi_float32_array:
      a.type = ElemType::F32;
      break;
    case napi_float64_array:
      a.type = ElemType::F64;
      break;
    case napi_int8_array:
      a.type = ElemType::I8;
      break;
    case napi_uint8_array:
      a.type = ElemType::U8;
      break;
    case napi_int16_array:
      a.type = ElemType::I16;
      break;
    case napi_uint16_array:
      a.type = ElemType::U16;
      break;
    case napi_int32_array:
      a.type = ElemType::I32;
      break;
    case napi_uint32_array:
      a.type = ElemType::U32;
      break;
    case napi_bigint64_array:
      a.type = ElemType::I64;
      break;
    case napi_biguint64_array:
      a.type = ElemType::U64;
      break;
    default:
      throw Napi::TypeError::New(v.Env(), std::string(what) + ": a Uint8ClampedArray cannot be reduced");
  }
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  napi_value buffer;
  size_t offset = 0;
  if (napi_get_typedarray_info(v.Env(), t, &type, &length, &data, &buffer, &offset) != napi_ok)
    throw Napi::TypeError::New(v.Env(), std::string(what) + ": cannot read the typed array");
  a.data = data;
  a.length = length;
  return a;
}

bool overlap(const ArrayArg& a, const ArrayArg& b) {
  if (a.bytes() == 0 || b.bytes() == 0) return false;
  const uintptr_t a0 = uintptr_t(a.data), b0 = uintptr_t(b.data);
  return a0 < b0 + b.bytes() && b0 < a0 + a.bytes();
}

// A collective call as JavaScript made it, checked against the world size.
struct Parsed {
  Collective call;
  ArrayArg input, output;
  bool has_input = false, has_output = false;
  std::string label;
};

Parsed parse_call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CommRuntime& rt = CommRuntime::instance();
  if (!rt.initialized())
    throw Napi::Error::New(
        env, rt.finalized() ? "the process group has been destroyed" : "MPI is not initialised: call init() first");
  const int world = rt.info().world;
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "collective: kind must be a number");
  const int kind = info[0].As<Napi::Number>().Int32Value();
  if (kind < 0 || kind > int(CollectiveKind::Barrier)) throw Napi::RangeError::New(env, "collective: unknown kind");
  Parsed p;
  p.call.kind = CollectiveKind(kind);
  const char* name = collective_name(p.call.kind);
  const std::string n(name);
  if (!info[3].IsNumber()) throw Napi::TypeError::New(env, n + ": op must be a number");
  const int op = info[3].As<Napi::Number>().Int32Value();
  if (op < 0 || op > int(ReduceOp::Min)) throw Napi::RangeError::New(env, n + ": unknown reduction op");
  p.call.op = ReduceOp(op);
  if (!info[4].IsNumber()) throw Napi::TypeError::New(env, n + ": root must be a number");
  const double root = info[4].As<Napi::Number>().DoubleValue();
  if (!info[5].IsBoolean()) throw Napi::TypeError::New(env, n + ": ordered must be a boolean");
  p.call.ordered = info[5].As<Napi::Boolean>().Value();
  p.label = info[6].IsString() ? info[6].As<Napi::String>().Utf8Value() : n;

  const bool wants_input = p.call.kind != CollectiveKind::Barrier;
  const bool wants_output = p.call.kind == CollectiveKind::ReduceScatter || p.call.kind == CollectiveKind::AllGather;
  if (wants_input) {
    p.input = array_arg(info[1], (n + ": input").c_str());
    p.has_input = true;
    p.call.type = p.input.type;
    p.call.input = p.input.data;
    p.call.count = p.input.length;
  } else if (!info[1].IsUndefined() && !info[1].IsNull()) {
    throw Napi::TypeError::New(env, n + " takes no buffer");
  }
  if (wants_output) {
    p.output = array_arg(info[2], (n + ": output").c_str());
    p.has_output = true;
    if (p.output.type != p.input.type)
      throw Napi::TypeError::New(
          env, n + ": input is " + elem_name(p.input.type) + " but output is " + elem_name(p.output.type));
    if (overlap(p.input, p.output)) throw Napi::RangeError::New(env, n + ": input and output overlap");
    p.call.output = p.output.data;
  } else if (!info[2].IsUndefined() && !info[2].IsNull()) {
    throw Napi::TypeError::New(env, n + " takes no output buffer (it works in place)");
  }

  const bool reduces = p.call.kind == CollectiveKind::AllReduce || p.call.kind == CollectiveKind::ReduceScatter;
  if (reduces && p.call.op == ReduceOp::Avg && !is_float(p.call.type))
    throw Napi::TypeError::New(env, n + ": 'avg' needs a float32 or float64 array, got " + elem_name(p.call.type));
  if (p.call.kind == CollectiveKind::ReduceScatter) {
    if (p.input.length != p.output.length * size_t(world))
      throw Napi::RangeError::New(env, n + ": input has " + std::to_string(p.input.length) +
                                           " elements; it must have worldSize (" + std::to_string(world) +
                                           ") x output's " + std::to_string(p.output.length));
    p.call.count = p.output.length;
  }
  if (p.call.kind == CollectiveKind::AllGather && p.output.length != p.input.length * size_t(world))
    throw Napi::RangeError::New(env, n + ": output has " + std::to_string(p.output.length) +
                                         " elements; it must have worldSize (" + std::to_string(world) +
                                         ") x input's " + std::to_string(p.input.length));
  if (p.call.kind == CollectiveKind::Broadcast) {
    if (!(root >= 0 && root < world) || root != std::floor(root))
      throw Napi::RangeError::New(env, n + ": root must be an integer from 0 to " + std::to_string(world - 1));
    p.call.root = int(root);
  }
  return p;
}

Napi::Value run_sync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Parsed p = parse_call(info);
  struct Wait {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    std::string error;
  };
  auto wait = std::make_shared<Wait>();
  auto r = std::make_shared<Request>();
  r->call = p.call;
  r->label = p.label;
  r->done = [wait](const std::string& error) {
    std::lock_guard<std::mutex> lock(wait->m);
    wait->error = error;
    wait->done = true;
    wait->cv.notify_one();
  };
  try {
    CommRuntime::instance().submit(r);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  std::unique_lock<std::mutex> lock(wait->m);
  wait->cv.wait(lock, [&] { return wait->done; });
  if (!wait->error.empty()) throw Napi::Error::New(env, wait->error);
  return env.Undefined();
}

// Per JavaScript environment (main thread or worker): the function that brings
// asynchronous completions back to this thread, referenced only while some are in flight.
struct EnvState {
  Napi::ThreadSafeFunction tsfn;
  int in_flight = 0;
};

// An asynchronous collective's JavaScript side: its promise and, for arrays that were
// staged, where the results go back to.
struct Completion {
  Napi::Promise::Deferred deferred;
  std::string error;
  // Staged copies: the user's array, its block, the byte length it had.
  struct CopyBack {
    Napi::Reference<Napi::Value> target;
    std::shared_ptr<HostBlock> block;
    ArrayArg original;
  };
  std::vector<CopyBack> copy_back;
  std::vector<Napi::Reference<Napi::Value>> refs;  // keeps zero-copy arrays' objects reachable
  explicit Completion(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

EnvState& env_state(Napi::Env env) {
  EnvState* s = env.GetInstanceData<EnvState>();
  if (!s) {
    s = new EnvState();
    s->tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                            "fused-optim-mpi", 0, 1);
    s->tsfn.Unref(env);
    env.SetInstanceData<EnvState>(s);  // deleted with the environment
  }
  return *s;
}

void settle(Napi::Env env, Napi::Function, Completion* c) {
  std::unique_ptr<Completion> owned(c);
  EnvState& s = env_state(env);
  if (--s.in_flight == 0) s.tsfn.Unref(env);
  std::string error = c->error;
  for (auto& cb : c->copy_back) {
    if (!error.empty()) break;
    Napi::Value target = cb.target.Value();
    napi_typedarray_type type;
    size_t length = 0;
    void* data = nullptr;
    napi_value buffer;
    size_t offset = 0;
    // The same object, but it may have been detached or its buffer resized since.
    if (napi_get_typedarray_info(env, target, &type, &length, &data, &buffer, &offset) != napi_ok ||
        data != cb.original.data || length != cb.original.length) {
      error = "the output array was detached or resized while the collective ran; its result was dropped";
      break;
    }
    std::memcpy(data, cb.block->data(), cb.original.bytes());
  }
  if (error.empty())
    c->deferred.Resolve(env.Undefined());
  else
    c->deferred.Reject(Napi::Error::New(env, error).Value());
}

Napi::Value run_async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Parsed p = parse_call(info);
  auto r = std::make_shared<Request>();
  r->call = p.call;
  r->label = p.label;
  auto* c = new Completion(env);
  Napi::Promise promise = c->deferred.Promise();
  const bool in_place = p.call.kind == CollectiveKind::AllReduce || p.call.kind == CollectiveKind::Broadcast;
  // Zero-copy for our blocks; a staged copy for anything else.
  auto bind = [&](const Napi::Value& value, const ArrayArg& a, void** slot, bool copy_in, bool copy_out) {
    if (auto block = HostBlock::find(a.data, a.bytes())) {
      r->keep_alive.push_back(block);
      c->refs.emplace_back(Napi::Persistent(value));
      return;
    }
    auto block = HostBlock::allocate(a.bytes());
    if (copy_in && a.bytes() > 0) std::memcpy(block->data(), a.data, a.bytes());
    *slot = block->data();
    r->keep_alive.push_back(block);
    if (copy_out) c->copy_back.push_back({Napi::Persistent(value), block, a});
  };
  try {
    if (p.has_input) bind(info[1], p.input, &r->call.input, true, in_place);
    if (p.has_output) bind(info[2], p.output, &r->call.output, false, true);
  } catch (...) {
    delete c;
    throw;
  }
  EnvState& s = env_state(env);
  Napi::ThreadSafeFunction tsfn = s.tsfn;
  r->done = [c, tsfn](const std::string& error) mutable {
    c->error = error;
    if (tsfn.NonBlockingCall(c, settle) != napi_ok) {
      // The environment is gone (a worker ended): its references cannot be released any
      // more; the staging memory is freed with the request.
      for (auto& cb : c->copy_back) cb.target.SuppressDestruct();
      for (auto& ref : c->refs) ref.SuppressDestruct();
      // c is left allocated: its promise belongs to the dead environment.
    }
  };
  try {
    CommRuntime::instance().submit(r);
  } catch (const std::exception& e) {
    delete c;
    throw Napi::Error::New(env, e.what());
  }
  if (s.in_flight++ == 0) s.tsfn.Ref(env);
  return promise;
}

Napi::Value init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "init: timeoutSeconds must be a number");
  const double timeout = info[0].As<Napi::Number>().DoubleValue();
  if (!(timeout > 0) || !std::isfinite(timeout))
    throw Napi::RangeError::New(env, "init: timeoutSeconds must be a finite number > 0");
  InitInfo i;
  try {
    i = CommRuntime::instance().init(timeout);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("rank", Napi::Number::New(env, i.rank));
  o.Set("worldSize", Napi::Number::New(env, i.world));
  o.Set("threadLevel", Napi::Number::New(env, i.thread_level));
  o.Set("library", Napi::String::New(env, i.library));
  o.Set("mpiVersion", Napi::String::New(env, i.version));
  o.Set("hostname", Napi::String::New(env, i.hostname));
  return o;
}

Napi::Value set_timeout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double timeout = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : NAN;
  if (!(timeout > 0) || !std::isfinite(timeout))
    throw Napi::RangeError::New(env, "timeoutSeconds must be a finite number > 0");
  CommRuntime::instance().set_timeout_seconds(timeout);
  return env.Undefined();
}

// allocate(bytes) -> ArrayBuffer over a staging block (zero-filled, 64-byte aligned).
Napi::Value allocate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double bytes = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  if (!(bytes >= 0 && bytes <= 9007199254740991.0) || bytes != std::floor(bytes))
    throw Napi::RangeError::New(env, "allocate: bytes must be a non-negative integer");
  std::shared_ptr<HostBlock> block;
  try {
    block = HostBlock::allocate(size_t(bytes));
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "allocate: out of memory for " + std::to_string(size_t(bytes)) + " bytes");
  }
  auto* hold = new std::shared_ptr<HostBlock>(block);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
      env, block->data(), block->bytes(),
      [](Napi::Env env, void*, std::shared_ptr<HostBlock>* h) {
        Napi::MemoryManagement::AdjustExternalMemory(env, -int64_t((*h)->bytes()));
        delete h;
      },
      hold);
  Napi::MemoryManagement::AdjustExternalMemory(env, int64_t(block->bytes()));
  return ab;
}

Napi::Value finalize(const Napi::CallbackInfo& info) {
  CommRuntime::instance().finalize();
  return info.Env().Undefined();
}

Napi::Value abort_job(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int code = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1;
  const std::string message = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "aborting";
  CommRuntime::instance().abort(code, message);
  return env.Undefined();
}

Napi::Value status(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CommRuntime& rt = CommRuntime::instance();
  Napi::Object o = Napi::Object::New(env);
  o.Set("initialized", Napi::Boolean::New(env, rt.initialized()));
  o.Set("finalized", Napi::Boolean::New(env, rt.finalized()));
  o.Set("broken", Napi::String::New(env, rt.broken()));
  o.Set("pending", Napi::Number::New(env, double(rt.pending())));
  o.Set("completed", Napi::Number::New(env, double(rt.completed())));
  o.Set("timeoutSeconds", Napi::Number::New(env, rt.timeout_seconds()));
  return o;
}

}  // namespace

}  // namespace fo::mpi

static Napi::Object InitFusedOptimMpi(Napi::Env env, Napi::Object exports) {
  using namespace fo::mpi;
  exports.Set("init", Napi::Function::New(env, init));
  exports.Set("setTimeout", Napi::Function::New(env, set_timeout));
  exports.Set("collective", Napi::Function::New(env, run_sync));
  exports.Set("collectiveAsync", Napi::Function::New(env, run_async));
  exports.Set("allocate", Napi::Function::New(env, allocate));
  exports.Set("finalize", Napi::Function::New(env, finalize));
  exports.Set("abort", Napi::Function::New(env, abort_job));
  exports.Set("status", Napi::Function::New(env, status));
  return exports;
}

NODE_API_MODULE(fused_optim_mpi, InitFusedOptimMpi)
