#pragma once
// Host memory owned by the MPI module: staging buffers that JavaScript fills through an
// ArrayBuffer (module.cpp) and that an asynchronous collective reads and writes on the
// communication thread. Ownership is shared: the JavaScript ArrayBuffer holds one
// reference and every collective in flight holds another, so neither garbage collection
// nor a detached (transferred) ArrayBuffer can free memory the communication thread still
// uses. The registry tells whether a typed array lies inside such a block.
#include <cstddef>
#include <cstdint>
#include <memory>

namespace fo::mpi {

class HostBlock {
 public:
  // Zero-filled, 64-byte aligned; registered until destroyed.
  static std::shared_ptr<HostBlock> allocate(size_t bytes);
  // The block holding [data, data + bytes), or null when that range is not inside one.
  static std::shared_ptr<HostBlock> find(const void* data, size_t bytes);

  ~HostBlock();
  HostBlock(const HostBlock&) = delete;
  HostBlock& operator=(const HostBlock&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }

 private:
  HostBlock(void* data, size_t bytes) : data_(data), bytes_(bytes) {}
  void* data_;
  size_t bytes_;
};

}  // namespace fo::mpi
