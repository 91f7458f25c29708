#include "checkpoint_wrap.h"

#include <climits>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "../checkpoint/crc32.h"
#include "../checkpoint/header_parser.h"
#include "../checkpoint/transfer.h"
#include "js_errors.h"
#include "tensor_wrap.h"

namespace fo::addon {

namespace {

// Random: marks the externals made by tensor_table().
constexpr napi_type_tag kTensorTableTag = {0x6f1d2c9a5e3b4f70ULL, 0x8a41c3d2b7e6f915ULL};

struct TableHolder {
  std::vector<TableEntry> entries;
  bool released = false;  // a background save wrote it and freed its memory
  bool pinned = false;    // checkpointPin made it: its storages are pinned until unpin()

  void unpin() {
    if (!pinned) return;
    for (auto& e : entries) e.storage->unpin();
    pinned = false;
  }
  ~TableHolder() { unpin(); }
};

// ---------------------------------------------------------------------------------------
// Arguments

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

std::vector<uint64_t> offsets_arg(const Napi::Value& v, const char* what, size_t count) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    throw fo::TypeError(std::string(what) + " must be a Float64Array");
  auto a = v.As<Napi::Float64Array>();
  if (a.ElementLength() != count)
    throw fo::RangeError(std::string(what) + " has " + std::to_string(a.ElementLength()) + " entries, expected " +
                         std::to_string(count));
  std::vector<uint64_t> out(count);
  for (size_t i = 0; i < count; ++i) {
    const double d = a[i];
    if (!(d >= 0) || d > 9007199254740991.0 || d != std::floor(d))
      throw fo::RangeError(std::string(what) + "[" + std::to_string(i) + "] must be an integer from 0 to 2^53 - 1");
    out[i] = uint64_t(d);
  }
  return out;
}

TableHolder* table_arg(const Napi::Value& v) {
  if (v.IsUndefined() || v.IsNull()) return nullptr;
  if (v.IsExternal()) {
    auto e = v.As<Napi::External<TableHolder>>();
    if (e.CheckTypeTag(&kTensorTableTag)) {
      if (e.Data()->released) throw fo::TypeError("the tensor table was released by a finished save");
      return e.Data();
    }
  }
  throw fo::TypeError("table must be a tensor table");
}

// The items of a transfer: item i is table[tableIndex[i]] where tableIndex[i] >= 0, else
// list[i] (a TensorHandle, or what the transfer allows besides: a typed array, null).
class Items {
 public:
  Items(const Napi::Value& list, const Napi::Value& table, const Napi::Value& index, const char* what)
      : what_(what), table_(table_arg(table)) {
    if (!list.IsArray()) throw fo::TypeError(std::string(what) + " must be an array");
    list_ = list.As<Napi::Array>();
    count_ = list_.Length();
    if (!table_) return;
    if (!index.IsTypedArray() || index.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        index.As<Napi::Int32Array>().ElementLength() != count_)
      throw fo::TypeError("tableIndex must be an Int32Array with one entry per item");
    index_ = index.As<Napi::Int32Array>();
    for (size_t i = 0; i < count_; ++i)
      if (index_[i] >= int32_t(table_->entries.size()))
        throw fo::RangeError("tableIndex[" + std::to_string(i) + "] is past the end of the table");
  }
  size_t size() const { return count_; }
  TableHolder* table() const { return table_; }
  bool in_table(size_t i) const { return table_ && index_[i] >= 0; }
  Napi::Value value(size_t i) const { return list_.Get(uint32_t(i)); }
  // The live bytes of item i: a table entry, or a TensorHandle's data in the list.
  TableEntry entry(size_t i) const {
    TableEntry e =
        in_table(i) ? table_->entries[size_t(index_[i])] : table_entry_of(*TensorWrap::unwrap(value(i), what_));
    if (e.storage->disposed()) throw std::runtime_error(name(i) + " has been disposed");
    return e;
  }
  std::string name(size_t i) const { return std::string(what_) + "[" + std::to_string(i) + "]"; }

 private:
  const char* what_;
  TableHolder* table_;
  Napi::Array list_;
  Napi::Int32Array index_;
  size_t count_ = 0;
};

// ---------------------------------------------------------------------------------------
// Jobs

// Storages pinned for a transfer: dispose() waits, and tensor reads and writes through the
// public API are refused, until the job is done.
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

// A promise settled on the JavaScript thread by work run on a worker thread.
template <typename Result>
class Job : public Napi::AsyncWorker {
 public:
  Job(Napi::Env env, const char* name) : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  Pins pins;

 protected:
  virtual Result run() = 0;
  virtual Napi::Value to_js(Napi::Env env, Result& r) = 0;

 private:
  void Execute() override {
    try {
      result_ = run();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    pins.release();
    deferred_.Resolve(to_js(Env(), result_));
  }
  void OnError(const Napi::Error& e) override {
    pins.release();
    deferred_.Reject(e.Value());
  }

  Napi::Promise::Deferred deferred_;
  Result result_{};
};

// Builds a job and queues it, or deletes it if building throws.
template <typename J, typename Build>
Napi::Value queue(J* job, Build&& build) {
  try {
    build(*job);
  } catch (...) {
    delete job;
    throw;
  }
  Napi::Promise promise = job->promise();
  job->Queue();
  return promise;
}

Napi::Value crcs_to_js(Napi::Env env, const std::vector<uint32_t>& crcs) {
  auto out = Napi::Uint32Array::New(env, crcs.size());
  if (!crcs.empty()) std::memcpy(out.Data(), crcs.data(), crcs.size() * 4);
  return out;
}

// ---------------------------------------------------------------------------------------
// checkpointWrite(fd, sources, offsets: Float64Array, stagingBytes, release, table?,
// tableIndex?) -> Promise<Uint32Array>: writes each item at its offset, resolves with their
// CRC-32s. Items: TensorHandles, typed arrays (copied now: JavaScript memory is never read
// from another thread), table entries. release: the table is a snapshot, freed once written.

class WriteJob : public Job<std::vector<uint32_t>> {
 public:
  WriteJob(Napi::Env env, int fd, size_t staging)
      : Job(env, "fused-optim:checkpoint-write"), fd_(fd), staging_(staging) {}
  std::vector<ckpt::WriteItem> items;

 private:
  std::vector<uint32_t> run() override {
    std::vector<uint32_t> crcs = ckpt::write_items(fd_, items, staging_);
    items.clear();  // frees a released snapshot here, off the JavaScript thread
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
    const int fd = fd_arg(info[0]);
    Items items(info[1], info[5], info[6], "sources");
    const std::vector<uint64_t> offsets = offsets_arg(info[2], "offsets", items.size());
    const size_t staging = staging_arg(info[3]);
    const bool release = info[4].ToBoolean();
    return queue(new WriteJob(info.Env(), fd, staging), [&](WriteJob& job) {
      job.items.reserve(items.size());
      for (size_t i = 0; i < items.size(); ++i) {
        if (!items.in_table(i) && items.value(i).IsTypedArray()) {
          job.items.push_back({copy_of_view(items.value(i)), offsets[i]});
          continue;
        }
        const TableEntry e = items.entry(i);
        if (!(release && items.in_table(i))) job.pins.add(e.storage);
        job.items.push_back({{e.storage, e.bytes, e.from}, offsets[i]});
      }
      if (release && items.table()) {
        items.table()->unpin();
        items.table()->entries.clear();
        items.table()->released = true;
      }
    });
  });
}

// ---------------------------------------------------------------------------------------
// checkpointRead(fd, destinations, offsets, fileBytes: Float64Array, converts: Uint8Array,
// stagingBytes, table?, tableIndex?) -> Promise<Uint32Array>: the CRC-32 of each item's file
// bytes. A null destination is checked only; others (TensorHandles, table entries) receive
// the bytes, widened to fp32 where converts[i] says (1 BF16, 2 F16, 3 F64).

class ReadJob : public Job<std::vector<uint32_t>> {
 public:
  ReadJob(Napi::Env env, int fd, size_t staging)
      : Job(env, "fused-optim:checkpoint-read"), fd_(fd), staging_(staging) {}
  std::vector<ckpt::ReadItem> items;

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

ckpt::ReadItem read_item(const Items& items, size_t i, uint64_t offset, uint64_t file_bytes, uint8_t convert) {
  if (convert > 3) throw fo::RangeError("converts[" + std::to_string(i) + "] must be 0 to 3");
  ckpt::ReadItem item;
  item.offset = offset;
  item.file_bytes = file_bytes;
  item.convert = ckpt::Convert(convert);
  if (!items.in_table(i) && items.value(i).IsNull()) return item;
  const TableEntry e = items.entry(i);
  const bool converted = item.convert != ckpt::Convert::None;
  if (converted && !e.float32) throw fo::TypeError(items.name(i) + ": only float32 tensors receive converted values");
  if (ckpt::file_bytes_for(item.convert, e.bytes) != file_bytes || (converted && e.bytes % 4 != 0))
    throw fo::RangeError(items.name(i) + ": " + std::to_string(file_bytes) + " file bytes do not fill its " +
                         std::to_string(e.bytes) + " bytes");
  item.destination = {e.storage, e.bytes, e.from};
  return item;
}

Napi::Value checkpoint_read(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const int fd = fd_arg(info[0]);
    Items items(info[1], info[6], info[7], "destinations");
    const size_t count = items.size();
    const std::vector<uint64_t> offsets = offsets_arg(info[2], "offsets", count);
    const std::vector<uint64_t> file_bytes = offsets_arg(info[3], "fileBytes", count);
    if (!info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
        info[4].As<Napi::Uint8Array>().ElementLength() != count)
      throw fo::TypeError("converts must be a Uint8Array with one entry per destination");
    Napi::Uint8Array converts = info[4].As<Napi::Uint8Array>();
    const size_t staging = staging_arg(info[5]);
    return queue(new ReadJob(info.Env(), fd, staging), [&](ReadJob& job) {
      job.items.reserve(count);
      for (size_t i = 0; i < count; ++i) {
        job.items.push_back(read_item(items, i, offsets[i], file_bytes[i], converts[i]));
        if (job.items.back().destination.storage) job.pins.add(job.items.back().destination.storage);
      }
    });
  });
}

// ---------------------------------------------------------------------------------------
// checkpointSnapshot(sources, table?, tableIndex?) -> Promise<table>: host copies of every
// item, in item order (a background save's consistent snapshot).

class SnapshotJob : public Job<std::vector<std::shared_ptr<Storage>>> {
 public:
  explicit SnapshotJob(Napi::Env env) : Job(env, "fused-optim:checkpoint-snapshot") {}
  std::vector<ckpt::Source> sources;
  std::vector<bool> float32;

 private:
  std::vector<std::shared_ptr<Storage>> run() override { return ckpt::snapshot(sources); }
  Napi::Value to_js(Napi::Env env, std::vector<std::shared_ptr<Storage>>& copies) override {
    std::vector<TableEntry> out;
    out.reserve(copies.size());
    for (size_t i = 0; i < copies.size(); ++i) {
      const size_t bytes = copies[i]->bytes();
      out.push_back({std::move(copies[i]), 0, bytes, float32[i]});
    }
    sources.clear();
    float32.clear();
    return tensor_table(env, std::move(out));
  }
};

Napi::Value checkpoint_snapshot(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Items items(info[0], info[1], info[2], "sources");
    return queue(new SnapshotJob(info.Env()), [&](SnapshotJob& job) {
      for (size_t i = 0; i < items.size(); ++i) {
        const TableEntry e = items.entry(i);
        job.pins.add(e.storage);
        job.sources.push_back({e.storage, e.bytes, e.from});
        job.float32.push_back(e.float32);
      }
    });
  });
}

// parseHeader(header: Uint8Array, fileSize) -> Promise<null | { metadata: string[] (key,
// value, ...), names: string (all names; nameEnds: Uint32Array, UTF-16 ends), dtypes:
// Uint8Array (safetensorsDTypes() index), shapeEnds: Uint32Array, dims, begins, ends:
// Float64Array }>: the tensors in file order, or null where the TypeScript parser must decide
// (native/checkpoint/header_parser.h). The header is a buffer of the loader's own, kept alive
// by the job and never handed to user code, so it is read where it is.

struct HeaderResult {
  bool ok = false;
  ckpt::ParsedTensors tensors;
};

class HeaderJob : public Job<HeaderResult> {
 public:
  HeaderJob(Napi::Env env, Napi::Uint8Array header, uint64_t file_size)
      : Job(env, "fused-optim:safetensors-header"),
        header_(Napi::Persistent(header)),
        data_(header.Data()),
        size_(header.ByteLength()),
        file_size_(file_size) {}

 private:
  HeaderResult run() override {
    HeaderResult r;
    r.ok = ckpt::parse_header_fast(data_, size_, file_size_, r.tensors);
    return r;
  }
  Napi::Value to_js(Napi::Env env, HeaderResult& r) override {
    header_.Reset();
    if (!r.ok) return env.Null();
    const ckpt::ParsedTensors& t = r.tensors;
    Napi::Array metadata = Napi::Array::New(env, 2 * t.metadata.size());
    for (size_t i = 0; i < t.metadata.size(); ++i) {
      metadata.Set(uint32_t(2 * i), Napi::String::New(env, t.metadata[i].first));
      metadata.Set(uint32_t(2 * i + 1), Napi::String::New(env, t.metadata[i].second));
    }
    const size_t n = t.dtypes.size();
    auto name_ends = Napi::Uint32Array::New(env, n);
    size_t units = 0, at = 0;
    for (size_t i = 0; i < n; ++i) {
      for (; at < t.name_ends[i]; ++at) {
        const uint8_t c = uint8_t(t.names[at]);
        if ((c & 0xc0) != 0x80) units += c >= 0xf0 ? 2 : 1;  // a lead byte: one UTF-16 unit, two above U+FFFF
      }
      name_ends[i] = uint32_t(units);
    }
    auto dtypes = Napi::Uint8Array::New(env, n);
    auto shape_ends = Napi::Uint32Array::New(env, n);
    auto begins = Napi::Float64Array::New(env, n);
    auto ends = Napi::Float64Array::New(env, n);
    for (size_t i = 0; i < n; ++i) {
      dtypes[i] = t.dtypes[i];
      shape_ends[i] = uint32_t(t.shape_ends[i]);
      begins[i] = double(t.begins[i]);
      ends[i] = double(t.ends[i]);
    }
    auto dims = Napi::Float64Array::New(env, t.dims.size());
    for (size_t i = 0; i < t.dims.size(); ++i) dims[i] = double(t.dims[i]);
    Napi::Object o = Napi::Object::New(env);
    o.Set("metadata", metadata);
    o.Set("names", Napi::String::New(env, t.names));
    o.Set("nameEnds", name_ends);
    o.Set("dtypes", dtypes);
    o.Set("shapeEnds", shape_ends);
    o.Set("dims", dims);
    o.Set("begins", begins);
    o.Set("ends", ends);
    return o;
  }
  Napi::Reference<Napi::Uint8Array> header_;
  const uint8_t* data_;
  size_t size_;
  uint64_t file_size_;
};

Napi::Value parse_header_js(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw fo::TypeError("parseHeader: header must be a Uint8Array");
    const uint64_t file_size = safe_integer(number_arg(info[1], "parseHeader: fileSize"), "fileSize");
    return queue(new HeaderJob(info.Env(), info[0].As<Napi::Uint8Array>(), file_size), [](HeaderJob&) {});
  });
}

Napi::Value header_dtypes_js(const Napi::CallbackInfo& info) {
  Napi::Array out = Napi::Array::New(info.Env(), size_t(ckpt::kHeaderDTypeCount));
  for (int i = 0; i < ckpt::kHeaderDTypeCount; ++i)
    out.Set(uint32_t(i), Napi::String::New(info.Env(), ckpt::kHeaderDTypes[i].name));
  return out;
}

// checkpointPin(tensors: TensorHandle[], table?) -> table: the tensors, then the table's
// entries, as one new table whose storages are pinned (writes through the public API refused,
// dispose() deferred) until checkpointUnpin(table), or until the table is collected. A save
// pins what it reads while it formats the header, so nothing can change in between.
Napi::Value checkpoint_pin(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsArray()) throw fo::TypeError("checkpointPin: tensors must be an array");
    Napi::Array list = info[0].As<Napi::Array>();
    TableHolder* more = table_arg(info[1]);
    std::vector<TableEntry> entries;
    entries.reserve(list.Length() + (more ? more->entries.size() : 0));
    for (uint32_t i = 0; i < list.Length(); ++i)
      entries.push_back(table_entry_of(*TensorWrap::unwrap(list.Get(i), "tensors[i]")));
    if (more) entries.insert(entries.end(), more->entries.begin(), more->entries.end());
    for (const auto& e : entries)
      if (e.storage->disposed()) throw std::runtime_error("a tensor to save has been disposed");
    Napi::Value table = tensor_table(info.Env(), std::move(entries));
    TableHolder* h = table.As<Napi::External<TableHolder>>().Data();
    for (auto& e : h->entries) e.storage->pin();
    h->pinned = true;
    return table;
  });
}

void checkpoint_unpin(const Napi::CallbackInfo& info) {
  guarded(info.Env(), [&] {
    if (TableHolder* h = table_arg(info[0])) h->unpin();
  });
}

// crc32(data: ArrayBufferView, crc = 0) -> number, on the calling thread (small inputs).
Napi::Value crc32_js(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() && !info[0].IsDataView())
      throw fo::TypeError("crc32: data must be a typed array or DataView");
    const uint32_t crc = info[1].IsUndefined() ? 0 : uint32_t(safe_integer(number_arg(info[1], "crc32: crc"), "crc"));
    Napi::ArrayBuffer buffer;
    size_t offset, bytes;
    if (info[0].IsDataView()) {
      auto view = info[0].As<Napi::DataView>();
      buffer = view.ArrayBuffer();
      offset = view.ByteOffset();
      bytes = view.ByteLength();
    } else {
      auto view = info[0].As<Napi::TypedArray>();
      buffer = view.ArrayBuffer();
      offset = view.ByteOffset();
      bytes = view.ByteLength();
    }
    const auto* data = static_cast<const uint8_t*>(buffer.Data()) + offset;
    return Napi::Number::New(info.Env(), double(ckpt::crc32(crc, data, bytes)));
  });
}

Napi::Value crc32_method_js(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), ckpt::crc32_method());
}

}  // namespace

Napi::Value tensor_table(Napi::Env env, std::vector<TableEntry> entries) {
  for (const TableEntry& e : entries)
    if (!e.storage || e.from > e.storage->bytes() || e.bytes > e.storage->bytes() - e.from)
      throw std::logic_error("tensor table: an entry is not within its storage");
  auto table = Napi::External<TableHolder>::New(env, new TableHolder{std::move(entries)},
                                                [](Napi::Env, TableHolder* h) { delete h; });
  table.TypeTag(&kTensorTableTag);
  return table;
}

void register_checkpoint_io(Napi::Env env, Napi::Object exports) {
  exports.Set("checkpointWrite", Napi::Function::New(env, checkpoint_write));
  exports.Set("checkpointRead", Napi::Function::New(env, checkpoint_read));
  exports.Set("checkpointSnapshot", Napi::Function::New(env, checkpoint_snapshot));
  exports.Set("checkpointPin", Napi::Function::New(env, checkpoint_pin));
  exports.Set("checkpointUnpin", Napi::Function::New(env, checkpoint_unpin));
  exports.Set("crc32", Napi::Function::New(env, crc32_js));
  exports.Set("crc32Method", Napi::Function::New(env, crc32_method_js));
  exports.Set("parseSafetensorsHeader", Napi::Function::New(env, parse_header_js));
  exports.Set("safetensorsDTypes", Napi::Function::New(env, header_dtypes_js));
}

}  // namespace fo::addon
