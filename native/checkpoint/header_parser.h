#pragma once
// A fast path for parsing safetensors headers: a checkpoint of 100k params has a 60 MB header
// of 300k tensor entries, which JSON.parse and the checks of src/checkpoint/safetensors_header.ts
// take seconds over. This parser accepts only headers it is certain that TypeScript parser
// accepts, with the same result (the same tensors in the same order, the same metadata);
// anything else (any error, and a few legal but unusual forms: escaped surrogates, numbers
// with a sign, fraction or exponent, keys that JavaScript orders or treats specially, extra
// keys in a tensor entry) returns false, and the caller runs the TypeScript parser, which
// then accepts it or names the problem. test/safetensors.test.ts checks the two agree.
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace fo::ckpt {

// The dtypes in the order of SAFETENSORS_DTYPES (safetensors_header.ts), with their bits.
struct HeaderDTypeInfo {
  const char* name;
  int bits;
};
extern const HeaderDTypeInfo kHeaderDTypes[];
extern const int kHeaderDTypeCount;

struct ParsedTensors {
  std::vector<std::pair<std::string, std::string>> metadata;  // in header order
  std::string names;                                          // all names, one after another
  std::vector<size_t> name_ends;                              // end of each name in `names` (bytes)
  std::vector<uint8_t> dtypes;                                // index into kHeaderDTypes
  std::vector<uint64_t> dims;                                 // all shapes, one after another
  std::vector<size_t> shape_ends;                             // end of each shape in `dims`
  std::vector<uint64_t> begins, ends;                         // data_offsets
};

// Parses and checks `header` (the N bytes after the length) of a file of `file_size` bytes;
// the tensors come out in file order. False: let the TypeScript parser decide.
bool parse_header_fast(const uint8_t* header, size_t n, uint64_t file_size, ParsedTensors& out);

}  // namespace fo::ckpt
