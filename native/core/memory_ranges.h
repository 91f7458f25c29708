#pragma once
// Address ranges of tensors, and a set of disjoint ones that answers "does this overlap
// anything?" in O(log n): how an optimizer refuses two params (or grads) over the same
// memory, which would be updated twice, by concurrent blocks on a GPU.
#include <algorithm>
#include <cstdint>
#include <map>

#include "tensor.h"

namespace fo {

struct MemoryRange {
  uintptr_t begin, end;  // [begin, end); an empty tensor counts one byte, so it is seen twice
};

inline MemoryRange range_of(const Tensor& t) {
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.storage->data_unchecked());
  return MemoryRange{begin, begin + std::max<size_t>(t.byte_size(), 1)};
}

class RangeSet {
 public:
  // The index given with a range that overlaps r, or -1.
  int overlapping(const MemoryRange& r) const {
    auto it = ranges_.upper_bound(r.begin);
    if (it != ranges_.end() && it->first < r.end) return it->second.index;
    if (it != ranges_.begin()) {
      --it;
      if (it->second.end > r.begin) return it->second.index;
    }
    return -1;
  }

  // r must not overlap any range already in the set (check with overlapping first).
  void insert(const MemoryRange& r, int index, bool owned) {
    ranges_[r.begin] = Entry{r.end, index};
    if (!owned) ++foreign_;
  }

  // Forgets a range inserted with these begin and owned values.
  void erase(const MemoryRange& r, bool owned) {
    if (ranges_.erase(r.begin) && !owned) --foreign_;
  }

  size_t size() const { return ranges_.size(); }

  // Some range belongs to memory the library does not own (a device-pointer view).
  bool any_foreign() const { return foreign_ > 0; }

 private:
  struct Entry {
    uintptr_t end;
    int index;
  };
  std::map<uintptr_t, Entry> ranges_;
  int foreign_ = 0;
};

}  // namespace fo
