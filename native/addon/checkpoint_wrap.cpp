#include "checkpoint_wrap.h"

#include <climits>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "../checkpoint/crc32.h"
#include "../checkpoint/transfer.h"
#include "js_errors.h"
#include "tensor_wrap.h"

namespace fo::addon {

namespace {

// "fused-optim storage ref", random: marks the externals made by storage_ref().
constexpr napi_type_tag kStorageRefTag = {0x6f1d2c9a5e3b4f70ULL, 0x8a41c3d2b7e6f915ULL};

struct RefHolder {
  std::shared_ptr<Tensor> tensor;  // emptied when a background save has written and freed it
};

double number_arg(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw fo::TypeError(std::string(what) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

uint64_t safe_integer(double d, const std::string& what) {
  if (!(d >= 0) || d > 9007199254740991.0 || d != std::floor(d))
    throw fo::RangeError(what + " must be an integer from 0 to 2^53 - 1");
  return uint64_t(d);
}

int fd_arg(const Napi::Value& v) {
  const double d = number_arg(v, "fd");
  if (!(d >= 0) || d > double(INT_MAX) || d != std::floor(d)) throw fo::RangeError("fd must be a file descriptor");
  return int(d);
}

size_t staging_arg(const Napi::Value& v) {
  const uint64_t n = safe_integer(number_arg(v, "stagingBytes"), "stagingBytes");
  if (n < ckpt::kMinStagingBytes || n > ckpt::kMaxStagingBytes)
    throw fo::RangeError("stagingBytes must be from " + std::to_string(ckpt::kMinStagingBytes) + " to " +
                         std::to_string(ckpt::kMaxStagingBytes));
  return size_t(n);
}

Napi::Array array_arg(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw fo::TypeError(std::string(what) + " must be an array");
  return v.As<Napi::Array>();
}

std::vector<uint64_t> offsets_arg(const Napi::Value& v, const char* what, size_t count) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    throw fo::TypeError(std::string(what) + " must be a Float64Array");
  auto a = v.As<Napi::Float64Array>();
  if (a.ElementLength() != count)
    throw fo::RangeError(std::string(what) + " has " + std::to_string(a.ElementLength()) + " entries, expected " +
                         std::to_string(count));
  std::vector<uint64_t> out(count);
  for (size_t i = 0; i < count; ++i) out[i] = safe_integer(a[i], std::string(what) + "[" + std::to_string(i) + "]");
  return out;
}

RefHolder* holder_of(const Napi::Value& v) {
  if (!v.IsExternal()) return nullptr;
  auto e = v.As<Napi::External<RefHolder>>();
  return e.CheckTypeTag(&kStorageRefTag) ? e.Data() : nullptr;
}

// A live tensor's storage, pinned for the transfer (dispose() waits, tensor reads and writes
// through the public API are refused until unpinned).
class Pins {
 public:
  ~Pins() { release(); }
  void add(const std::shared_ptr<Storage>& s) {
    s->pin();
    pinned_.push_back(s);
  }
  void release() {
    for (auto& s : pinned_) s->unpin();
    pinned_.clear();
  }

 private:
  std::vector<std::shared_ptr<Storage>> pinned_;
};

std::shared_ptr<Tensor> live_tensor(const Napi::Value& v, const std::string& what) {
  std::shared_ptr<Tensor> t = tensor_of(v, what.c_str());
  t->storage->data(what.c_str());  // throws if disposed
  return t;
}

// A promise settled on the JavaScript thread by a job run on a worker thread.
template <typename Result>
class Job : public Napi::AsyncWorker {
 public:
  explicit Job(Napi::Env env, const char* name)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  virtual Result run() = 0;
  virtual Napi::Value to_js(Napi::Env env, Result& r) = 0;
  Pins pins_;

 private:
  void Execute() override {
    try {
      result_ = run();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    pins_.release();
    deferred_.Resolve(to_js(Env(), result_));
  }
  void OnError(const Napi::Error& e) override {
    pins_.release();
    deferred_.Reject(e.Value());
  }

  Napi::Promise::Deferred deferred_;
  Result result_{};
};

Napi::Value crcs_to_js(Napi::Env env, const std::vector<uint32_t>& crcs) {
  auto out = Napi::Uint32Array::New(env, crcs.size());
  if (!crcs.empty()) std::memcpy(out.Data(), crcs.data(), crcs.size() * 4);
  return out;
}

// ---------------------------------------------------------------------------------------
// checkpointWrite(fd, sources, offsets: Float64Array, stagingBytes, release) -> Promise<Uint32Array>
// sources: TensorHandles, storage refs, or typed arrays (copied now: JavaScript memory is
// never read from another thread). release: empty the storage refs among the sources and
// free their memory once written (a background save's snapshot).

class WriteJob : public Job<std::vector<uint32_t>> {
 public:
  WriteJob(Napi::Env env, int fd, size_t staging)
      : Job(env, "fused-optim:checkpoint-write"), fd_(fd), staging_(staging) {}
  std::vector<ckpt::WriteItem> items;
  void pin(const std::shared_ptr<Storage>& s) { pins_.add(s); }

 private:
  std::vector<uint32_t> run() override {
    std::vector<uint32_t> crcs = ckpt::write_items(fd_, items, staging_);
    items.clear();  // frees released snapshot memory here, off the JavaScript thread
    return crcs;
  }
  Napi::Value to_js(Napi::Env env, std::vector<uint32_t>& crcs) override { return crcs_to_js(env, crcs); }
  int fd_;
  size_t staging_;
};

ckpt::Source copy_of_view(const Napi::Value& v) {
  auto view = v.As<Napi::TypedArray>();
  const size_t bytes = view.ByteLength();
  auto storage = Storage::allocate(Device::CPU, bytes);
  if (bytes > 0) {
    const auto* data = static_cast<const uint8_t*>(view.ArrayBuffer().Data()) + view.ByteOffset();
    std::memcpy(storage->data_unchecked(), data, bytes);
  }
  return {std::move(storage), bytes};
}

Napi::Value checkpoint_write(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const int fd = fd_arg(info[0]);
    Napi::Array sources = array_arg(info[1], "sources");
    const std::vector<uint64_t> offsets = offsets_arg(info[2], "offsets", sources.Length());
    const size_t staging = staging_arg(info[3]);
    const bool release = info[4].ToBoolean();
    auto* job = new WriteJob(env, fd, staging);
    try {
      job->items.reserve(sources.Length());
      for (uint32_t i = 0; i < sources.Length(); ++i) {
        Napi::Value v = sources.Get(i);
        const std::string what = "sources[" + std::to_string(i) + "]";
        if (v.IsTypedArray()) {
          job->items.push_back({copy_of_view(v), offsets[i]});
          continue;
        }
        RefHolder* holder = holder_of(v);
        std::shared_ptr<Tensor> t = live_tensor(v, what);
        if (release && holder) {
          holder->tensor.reset();
        } else {
          job->pin(t->storage);
        }
        job->items.push_back({{t->storage, t->byte_size()}, offsets[i]});
      }
    } catch (...) {
      delete job;
      throw;
    }
    Napi::Promise promise = job->promise();
    job->Queue();
    return promise;
  });
}

// ---------------------------------------------------------------------------------------
// checkpointRead(fd, destinations, offsets, fileBytes: Float64Array, converts: Uint8Array,
// stagingBytes) -> Promise<Uint32Array>: the CRC-32 of each item's file bytes. A null
// destination is checked only; others (TensorHandles or storage refs) receive the bytes,
// converted to fp32 where converts[i] says (1 BF16, 2 F16, 3 F64).

class ReadJob : public Job<std::vector<uint32_t>> {
 public:
  ReadJob(Napi::Env env, int fd, size_t staging)
      : Job(env, "fused-optim:checkpoint-read"), fd_(fd), staging_(staging) {}
  std::vector<ckpt::ReadItem> items;
  void pin(const std::shared_ptr<Storage>& s) { pins_.add(s); }

 private:
  std::vector<uint32_t> run() override {
    struct BumpVersions {  // written (perhaps partly) even when the read fails
      std::vector<ckpt::ReadItem>& items;
      ~BumpVersions() {
        for (auto& it : items)
          if (it.destination.storage) it.destination.storage->bump_version();
      }
    } bump{items};
    return ckpt::read_items(fd_, items, staging_);
  }
  Napi::Value to_js(Napi::Env env, std::vector<uint32_t>& crcs) override { return crcs_to_js(env, crcs); }
  int fd_;
  size_t staging_;
};

Napi::Value checkpoint_read(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const int fd = fd_arg(info[0]);
    Napi::Array destinations = array_arg(info[1], "destinations");
    const size_t count = destinations.Length();
    const std::vector<uint64_t> offsets = offsets_arg(info[2], "offsets", count);
    const std::vector<uint64_t> file_bytes = offsets_arg(info[3], "fileBytes", count);
    if (!info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
        info[4].As<Napi::Uint8Array>().ElementLength() != count)
      throw fo::TypeError("converts must be a Uint8Array with one entry per destination");
    Napi::Uint8Array converts = info[4].As<Napi::Uint8Array>();
    const size_t staging = staging_arg(info[5]);
    auto* job = new ReadJob(env, fd, staging);
    try {
      job->items.reserve(count);
      for (uint32_t i = 0; i < count; ++i) {
        const std::string what = "destinations[" + std::to_string(i) + "]";
        if (converts[i] > 3) throw fo::RangeError("converts[" + std::to_string(i) + "] must be 0 to 3");
        ckpt::ReadItem item;
        item.offset = offsets[i];
        item.file_bytes = file_bytes[i];
        item.convert = ckpt::Convert(converts[i]);
        Napi::Value v = destinations.Get(i);
        if (!v.IsNull()) {
          std::shared_ptr<Tensor> t = live_tensor(v, what);
          if (item.convert != ckpt::Convert::None && t->dtype != DType::Float32)
            throw fo::TypeError(what + ": only float32 tensors receive converted values");
          const bool fits = ckpt::file_bytes_for(item.convert, t->byte_size()) == item.file_bytes &&
                            (item.convert == ckpt::Convert::None || t->byte_size() % 4 == 0);
          if (!fits)
            throw fo::RangeError(what + ": " + std::to_string(item.file_bytes) + " file bytes do not fill its " +
                                 std::to_string(t->byte_size()) + " bytes");
          job->pin(t->storage);
          item.destination = {t->storage, t->byte_size()};
        }
        job->items.push_back(std::move(item));
      }
    } catch (...) {
      delete job;
      throw;
    }
    Napi::Promise promise = job->promise();
    job->Queue();
    return promise;
  });
}

// ---------------------------------------------------------------------------------------
// checkpointSnapshot(sources) -> Promise<storage ref[]>: host copies, for a background save.

class SnapshotJob : public Job<std::vector<std::shared_ptr<Storage>>> {
 public:
  explicit SnapshotJob(Napi::Env env) : Job(env, "fused-optim:checkpoint-snapshot") {}
  std::vector<ckpt::Source> sources;
  std::vector<std::shared_ptr<Tensor>> tensors;
  void pin(const std::shared_ptr<Storage>& s) { pins_.add(s); }

 private:
  std::vector<std::shared_ptr<Storage>> run() override { return ckpt::snapshot(sources); }
  Napi::Value to_js(Napi::Env env, std::vector<std::shared_ptr<Storage>>& copies) override {
    Napi::Array out = Napi::Array::New(env, copies.size());
    for (size_t i = 0; i < copies.size(); ++i) {
      auto t = std::make_shared<Tensor>();
      t->storage = std::move(copies[i]);
      t->dtype = tensors[i]->dtype;
      t->numel = tensors[i]->numel;
      out.Set(uint32_t(i), storage_ref(env, std::move(t)));
    }
    sources.clear();
    tensors.clear();
    return out;
  }
};

Napi::Value checkpoint_snapshot(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Napi::Array sources = array_arg(info[0], "sources");
    auto* job = new SnapshotJob(env);
    try {
      for (uint32_t i = 0; i < sources.Length(); ++i) {
        std::shared_ptr<Tensor> t = live_tensor(sources.Get(i), "sources[" + std::to_string(i) + "]");
        job->pin(t->storage);
        job->sources.push_back({t->storage, t->byte_size()});
        job->tensors.push_back(std::move(t));
      }
    } catch (...) {
      delete job;
      throw;
    }
    Napi::Promise promise = job->promise();
    job->Queue();
    return promise;
  });
}

// crc32(data: ArrayBufferView, crc = 0) -> number, on the calling thread (small inputs).
Napi::Value crc32_js(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() && !info[0].IsDataView())
      throw fo::TypeError("crc32: data must be a typed array or DataView");
    const uint32_t crc = info[1].IsUndefined() ? 0 : uint32_t(safe_integer(number_arg(info[1], "crc32: crc"), "crc"));
    const uint8_t* data;
    size_t bytes;
    if (info[0].IsDataView()) {
      auto view = info[0].As<Napi::DataView>();
      data = static_cast<const uint8_t*>(view.ArrayBuffer().Data()) + view.ByteOffset();
      bytes = view.ByteLength();
    } else {
      auto view = info[0].As<Napi::TypedArray>();
      data = static_cast<const uint8_t*>(view.ArrayBuffer().Data()) + view.ByteOffset();
      bytes = view.ByteLength();
    }
    return Napi::Number::New(info.Env(), double(ckpt::crc32(crc, data, bytes)));
  });
}

Napi::Value crc32_method_js(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), ckpt::crc32_method());
}

}  // namespace

Napi::Value storage_ref(Napi::Env env, std::shared_ptr<Tensor> tensor) {
  auto ref =
      Napi::External<RefHolder>::New(env, new RefHolder{std::move(tensor)}, [](Napi::Env, RefHolder* h) { delete h; });
  ref.TypeTag(&kStorageRefTag);
  return ref;
}

std::shared_ptr<Tensor> tensor_of(const Napi::Value& value, const char* what) {
  if (RefHolder* h = holder_of(value)) {
    if (!h->tensor) throw fo::TypeError(std::string(what) + " was released by a finished save");
    return h->tensor;
  }
  return TensorWrap::unwrap(value, what);
}

void register_checkpoint_io(Napi::Env env, Napi::Object exports) {
  exports.Set("checkpointWrite", Napi::Function::New(env, checkpoint_write));
  exports.Set("checkpointRead", Napi::Function::New(env, checkpoint_read));
  exports.Set("checkpointSnapshot", Napi::Function::New(env, checkpoint_snapshot));
  exports.Set("crc32", Napi::Function::New(env, crc32_js));
  exports.Set("crc32Method", Napi::Function::New(env, crc32_method_js));
}

}  // namespace fo::addon
