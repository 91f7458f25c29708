#include "header_parser.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <unordered_set>

namespace fo::ckpt {

const HeaderDTypeInfo kHeaderDTypes[] = {
    {"BOOL", 8}, {"U8", 8},   {"I8", 8},    {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"I16", 16},
    {"U16", 16}, {"F16", 16}, {"BF16", 16}, {"I32", 32},    {"U32", 32},    {"F32", 32},    {"C64", 64},
    {"F64", 64}, {"I64", 64}, {"U64", 64},  {"F4", 4},      {"F6_E2M3", 6}, {"F6_E3M2", 6},
};
const int kHeaderDTypeCount = int(sizeof(kHeaderDTypes) / sizeof(kHeaderDTypes[0]));

namespace {

constexpr uint64_t kMaxSafeInteger = (uint64_t(1) << 53) - 1;

// TextDecoder('utf-8', { fatal: true }) accepts exactly well-formed UTF-8 (no overlongs,
// no surrogates, nothing above U+10FFFF).
bool valid_utf8(const uint8_t* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    const uint8_t c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int extra;
    uint8_t lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
      extra = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      extra = 2;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      extra = 3;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    } else {
      return false;
    }
    if (i + size_t(extra) >= n) return false;
    if (p[i + 1] < lo || p[i + 1] > hi) return false;
    for (int k = 2; k <= extra; ++k)
      if (p[i + size_t(k)] < 0x80 || p[i + size_t(k)] > 0xbf) return false;
    i += size_t(extra) + 1;
  }
  return true;
}

class Parser {
 public:
  Parser(const uint8_t* p, size_t n) : p_(p), end_(p + n) {}

  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  bool at_end() const { return p_ == end_; }
  bool eat(char c) {
    if (p_ < end_ && *p_ == uint8_t(c)) {
      ++p_;
      return true;
    }
    return false;
  }
  bool peek(char c) const { return p_ < end_ && *p_ == uint8_t(c); }
  bool literal(const char* word) {
    const size_t n = std::strlen(word);
    if (size_t(end_ - p_) < n || std::memcmp(p_, word, n) != 0) return false;
    p_ += n;
    return true;
  }

  // A JSON string, decoded to UTF-8. Escaped surrogates are left to the TypeScript parser.
  bool string(std::string& out) {
    out.clear();
    if (!eat('"')) return false;
    const uint8_t* run = p_;
    while (p_ < end_) {
      const uint8_t c = *p_;
      if (c == '"') {
        out.append(reinterpret_cast<const char*>(run), size_t(p_ - run));
        ++p_;
        return true;
      }
      if (c < 0x20) return false;
      if (c != '\\') {
        ++p_;
        continue;
      }
      out.append(reinterpret_cast<const char*>(run), size_t(p_ - run));
      if (++p_ == end_) return false;
      const uint8_t e = *p_++;
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out.push_back(char(e));
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          uint32_t cp = 0;
          for (int k = 0; k < 4; ++k) {
            if (p_ == end_) return false;
            const uint8_t h = *p_++;
            const int d = h >= '0' && h <= '9'   ? h - '0'
                          : h >= 'a' && h <= 'f' ? h - 'a' + 10
                          : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                 : -1;
            if (d < 0) return false;
            cp = cp * 16 + uint32_t(d);
          }
          if (cp >= 0xd800 && cp <= 0xdfff) return false;
          if (cp < 0x80) {
            out.push_back(char(cp));
          } else if (cp < 0x800) {
            out.push_back(char(0xc0 | (cp >> 6)));
            out.push_back(char(0x80 | (cp & 0x3f)));
          } else {
            out.push_back(char(0xe0 | (cp >> 12)));
            out.push_back(char(0x80 | ((cp >> 6) & 0x3f)));
            out.push_back(char(0x80 | (cp & 0x3f)));
          }
          break;
        }
        default:
          return false;
      }
      run = p_;
    }
    return false;
  }

  // A non-negative integer without sign, fraction or exponent, at most 2^53 - 1.
  bool uint(uint64_t& v) {
    if (p_ == end_ || *p_ < '0' || *p_ > '9') return false;
    if (*p_ == '0' && p_ + 1 < end_ && p_[1] >= '0' && p_[1] <= '9') return false;
    v = 0;
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9') {
      v = v * 10 + uint64_t(*p_++ - '0');
      if (v > kMaxSafeInteger) return false;
    }
    return p_ == end_ || (*p_ != '.' && *p_ != 'e' && *p_ != 'E');
  }

  bool uint_list(std::vector<uint64_t>& out, size_t* count) {
    const size_t start = out.size();
    if (!eat('[')) return false;
    ws();
    if (!eat(']')) {
      for (;;) {
        uint64_t v;
        ws();
        if (!uint(v)) return false;
        out.push_back(v);
        ws();
        if (eat(']')) break;
        if (!eat(',')) return false;
      }
    }
    *count = out.size() - start;
    return true;
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

// A key JavaScript would list out of insertion order in Object.entries (an array index) or
// treat specially on assignment: left to the TypeScript parser.
bool ordinary_key(const std::string& k) {
  if (k == "__proto__") return false;
  if (k.empty() || k.size() > 10) return true;
  if (!std::all_of(k.begin(), k.end(), [](char c) { return c >= '0' && c <= '9'; })) return true;
  if (k.size() > 1 && k[0] == '0') return true;
  return std::stoull(k) >= 4294967295ull;
}

bool parse_metadata(Parser& ps, std::unordered_set<std::string>& seen, ParsedTensors& out) {
  if (ps.literal("null")) return true;
  if (!ps.eat('{')) return false;
  ps.ws();
  if (ps.eat('}')) return true;
  std::string key, value;
  for (;;) {
    ps.ws();
    if (!ps.string(key) || !ordinary_key(key) || !seen.insert(key).second) return false;
    ps.ws();
    if (!ps.eat(':')) return false;
    ps.ws();
    if (!ps.string(value)) return false;
    out.metadata.emplace_back(key, value);
    ps.ws();
    if (ps.eat('}')) return true;
    if (!ps.eat(',')) return false;
  }
}

bool parse_tensor(Parser& ps, ParsedTensors& out) {
  if (!ps.eat('{')) return false;
  bool have_dtype = false, have_shape = false, have_offsets = false;
  std::string key, dtype;
  size_t rank = 0;
  uint64_t begin = 0, end = 0;
  for (;;) {
    ps.ws();
    if (!ps.string(key)) return false;
    ps.ws();
    if (!ps.eat(':')) return false;
    ps.ws();
    if (key == "dtype" && !have_dtype) {
      if (!ps.string(dtype)) return false;
      have_dtype = true;
    } else if (key == "shape" && !have_shape) {
      if (!ps.uint_list(out.dims, &rank)) return false;
      have_shape = true;
    } else if (key == "data_offsets" && !have_offsets) {
      std::vector<uint64_t> two;
      size_t n = 0;
      if (!ps.uint_list(two, &n) || n != 2) return false;
      begin = two[0];
      end = two[1];
      have_offsets = true;
    } else {
      return false;  // a key twice, or one the TypeScript parser ignores
    }
    ps.ws();
    if (ps.eat('}')) break;
    if (!ps.eat(',')) return false;
  }
  if (!have_dtype || !have_shape || !have_offsets) return false;
  int d = 0;
  while (d < kHeaderDTypeCount && dtype != kHeaderDTypes[d].name) ++d;
  if (d == kHeaderDTypeCount || end < begin) return false;
  // numel * bits must be a whole number of bytes, and exactly what the offsets hold.
  long double numel = 1;
  for (size_t k = out.dims.size() - rank; k < out.dims.size(); ++k) numel *= (long double)out.dims[k];
  const long double bits = numel * kHeaderDTypes[d].bits;
  if (numel > (long double)kMaxSafeInteger || bits > (long double)kMaxSafeInteger) return false;
  const uint64_t b = uint64_t(bits);
  if (b % 8 != 0 || end - begin != b / 8) return false;
  out.dtypes.push_back(uint8_t(d));
  out.shape_ends.push_back(out.dims.size());
  out.begins.push_back(begin);
  out.ends.push_back(end);
  return true;
}

// Sorted by (begin, end), stably, the tensors must tile the data exactly.
bool order_and_tile(ParsedTensors& t, uint64_t buffer_length) {
  const size_t n = t.dtypes.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t(0));
  auto before = [&](size_t a, size_t b) {
    return t.begins[a] < t.begins[b] || (t.begins[a] == t.begins[b] && t.ends[a] < t.ends[b]);
  };
  if (!std::is_sorted(order.begin(), order.end(), before)) std::stable_sort(order.begin(), order.end(), before);
  uint64_t at = 0;
  for (size_t i : order) {
    if (t.begins[i] != at || t.ends[i] > buffer_length) return false;
    at = t.ends[i];
  }
  if (at != buffer_length) return false;
  if (std::is_sorted(order.begin(), order.end())) return true;
  ParsedTensors sorted;
  sorted.metadata = std::move(t.metadata);
  for (size_t i : order) {
    const size_t name_begin = i == 0 ? 0 : t.name_ends[i - 1];
    sorted.names.append(t.names, name_begin, t.name_ends[i] - name_begin);
    sorted.name_ends.push_back(sorted.names.size());
    sorted.dtypes.push_back(t.dtypes[i]);
    const size_t dim_begin = i == 0 ? 0 : t.shape_ends[i - 1];
    sorted.dims.insert(sorted.dims.end(), t.dims.begin() + long(dim_begin), t.dims.begin() + long(t.shape_ends[i]));
    sorted.shape_ends.push_back(sorted.dims.size());
    sorted.begins.push_back(t.begins[i]);
    sorted.ends.push_back(t.ends[i]);
  }
  t = std::move(sorted);
  return true;
}

}  // namespace

bool parse_header_fast(const uint8_t* header, size_t n, uint64_t file_size, ParsedTensors& out) {
  out = ParsedTensors{};
  if (n == 0 || header[0] != '{' || !valid_utf8(header, n)) return false;
  Parser ps(header, n);
  ps.eat('{');
  ps.ws();
  std::unordered_set<std::string> keys, metadata_keys;
  bool metadata_seen = false;
  if (!ps.eat('}')) {
    std::string key;
    for (;;) {
      ps.ws();
      if (!ps.string(key) || !ordinary_key(key) || !keys.insert(key).second) return false;
      ps.ws();
      if (!ps.eat(':')) return false;
      ps.ws();
      if (key == "__metadata__") {
        if (metadata_seen || !parse_metadata(ps, metadata_keys, out)) return false;
        metadata_seen = true;
      } else {
        if (!parse_tensor(ps, out)) return false;
        out.names += key;
        out.name_ends.push_back(out.names.size());
      }
      ps.ws();
      if (ps.eat('}')) break;
      if (!ps.eat(',')) return false;
    }
  }
  ps.ws();
  if (!ps.at_end()) return false;
  const uint64_t used = 8 + uint64_t(n);
  if (file_size < used) return false;
  return order_and_tile(out, file_size - used);
}

}  // namespace fo::ckpt
