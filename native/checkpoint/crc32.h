#pragma once
// CRC-32 (IEEE 802.3: the polynomial of zlib, gzip, PNG and Python's zlib.crc32), the
// checksum of every tensor in a checkpoint. Incremental: pass the previous result as `crc`
// to continue over the next piece (0 to start).
#include <cstddef>
#include <cstdint>

namespace fo::ckpt {

uint32_t crc32(uint32_t crc, const void* data, size_t bytes);

// "pclmul" (carry-less multiply folding, x86-64 with PCLMULQDQ) or "table" (slicing-by-8).
const char* crc32_method();

}  // namespace fo::ckpt
