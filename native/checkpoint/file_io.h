#pragma once
// Whole-range positional reads and writes on a file descriptor (retrying short transfers
// and EINTR). Errors are std::runtime_error naming the operation, the position and errno.
#include <cstddef>
#include <cstdint>

namespace fo::ckpt {

void write_at(int fd, const void* data, size_t bytes, uint64_t offset);
// Throws if the file ends before `bytes` bytes were read.
void read_at(int fd, void* data, size_t bytes, uint64_t offset);

}  // namespace fo::ckpt
