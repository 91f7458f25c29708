#include "collectives.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace fo::mpi {

namespace {

// MPI counts are ints: large buffers go in pieces of at most this many elements.
constexpr size_t kMaxPiece = size_t(1) << 30;

std::string mpi_error(const char* call, int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) len = 0;
  return std::string(call) +
         " failed: " + (len > 0 ? std::string(text, size_t(len)) : "MPI error " + std::to_string(code));
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Max:
      return MPI_MAX;
    case ReduceOp::Min:
      return MPI_MIN;
    default:
      return MPI_SUM;  // Avg divides afterwards
  }
}

template <typename T>
void divide(T* x, size_t n, int world) {
  const T d = T(world);
  for (size_t i = 0; i < n; ++i) x[i] = x[i] / d;
}

void divide_by_world(ElemType type, void* x, size_t n, int world) {
  if (type == ElemType::F32)
    divide(static_cast<float*>(x), n, world);
  else if (type == ElemType::F64)
    divide(static_cast<double*>(x), n, world);
}

// out[i] = in[0][i] op in[1][i] op ... in rank order, one element at a time (IEEE order:
// the build has no FMA contraction and no fast math).
template <typename T>
void combine_in_rank_order(T* out, const T* in, size_t stride, size_t n, int world, ReduceOp op) {
  for (size_t i = 0; i < n; ++i) {
    T acc = in[i];
    for (int r = 1; r < world; ++r) {
      const T v = in[size_t(r) * stride + i];
      if (op == ReduceOp::Max)
        acc = v > acc ? v : acc;
      else if (op == ReduceOp::Min)
        acc = v < acc ? v : acc;
      else
        acc = acc + v;
    }
    out[i] = op == ReduceOp::Avg ? T(acc / T(world)) : acc;
  }
}

void combine(ElemType type, void* out, const void* in, size_t stride, size_t n, int world, ReduceOp op) {
#define FO_COMBINE(E, T) \
  case ElemType::E:      \
    return combine_in_rank_order(static_cast<T*>(out), static_cast<const T*>(in), stride, n, world, op);
  switch (type) {
    FO_COMBINE(F32, float)
    FO_COMBINE(F64, double)
    FO_COMBINE(I8, int8_t)
    FO_COMBINE(U8, uint8_t)
    FO_COMBINE(I16, int16_t)
    FO_COMBINE(U16, uint16_t)
    FO_COMBINE(I32, int32_t)
    FO_COMBINE(U32, uint32_t)
    FO_COMBINE(I64, int64_t)
    FO_COMBINE(U64, uint64_t)
  }
#undef FO_COMBINE
}

// Rank r receives block r of every rank's `blocks` (world blocks of `block` elements, the
// last ones possibly shorter: lengths[r]) into gathered[world][block], then combines them
// into out.
std::string reduce_blocks_in_order(const Collective& c, const char* blocks, const std::vector<int>& lengths,
                                   size_t block, char* gathered, char* out, MPI_Comm comm, int rank, int world) {
  const MPI_Datatype t = mpi_type(c.type);
  std::vector<int> send_counts(static_cast<size_t>(world));
  std::vector<int> send_displs(static_cast<size_t>(world));
  std::vector<int> recv_counts(static_cast<size_t>(world));
  std::vector<int> recv_displs(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    send_counts[size_t(r)] = lengths[size_t(r)];
    send_displs[size_t(r)] = int(size_t(r) * block);
    recv_counts[size_t(r)] = lengths[size_t(rank)];
    recv_displs[size_t(r)] = int(size_t(r) * block);
  }
  int rc = MPI_Alltoallv(blocks, send_counts.data(), send_displs.data(), t, gathered, recv_counts.data(),
                         recv_displs.data(), t, comm);
  if (rc != MPI_SUCCESS) return mpi_error("MPI_Alltoallv", rc);
  combine(c.type, out, gathered, block, size_t(lengths[size_t(rank)]), world, c.op);
  return "";
}

// Scratch memory, uninitialised (it is written before it is read).
std::unique_ptr<char[]> scratch(size_t bytes) { return std::unique_ptr<char[]>(new char[bytes == 0 ? 1 : bytes]); }

// All-reduce in rank order: each rank combines one block of every rank's buffer (an
// all-to-all), then the blocks are all-gathered. The same bytes move as in a ring. Large
// buffers go in pieces of about kOrderedPiece elements, so the scratch stays small.
constexpr size_t kOrderedPiece = size_t(1) << 22;

std::string ordered_all_reduce(const Collective& c, MPI_Comm comm, int rank, int world) {
  const size_t es = elem_size(c.type);
  const MPI_Datatype t = mpi_type(c.type);
  char* data = static_cast<char*>(c.input);
  const size_t piece_max = std::max(size_t(world), kOrderedPiece / size_t(world) * size_t(world));
  const size_t block_max = (std::min(piece_max, c.count) + size_t(world) - 1) / size_t(world);
  auto gathered = scratch(size_t(world) * block_max * es);
  auto mine = scratch(block_max * es);
  std::vector<int> lengths(static_cast<size_t>(world));
  std::vector<int> displs(static_cast<size_t>(world));
  for (size_t begin = 0; begin < c.count; begin += piece_max) {
    const size_t n = std::min(piece_max, c.count - begin);
    const size_t block = (n + size_t(world) - 1) / size_t(world);
    for (int r = 0; r < world; ++r) {
      const size_t lo = std::min(n, size_t(r) * block), hi = std::min(n, lo + block);
      lengths[size_t(r)] = int(hi - lo);
      displs[size_t(r)] = int(lo);
    }
    char* piece = data + begin * es;
    std::string err = reduce_blocks_in_order(c, piece, lengths, block, gathered.get(), mine.get(), comm, rank, world);
    if (!err.empty()) return err;
    int rc = MPI_Allgatherv(mine.get(), lengths[size_t(rank)], t, piece, lengths.data(), displs.data(), t, comm);
    if (rc != MPI_SUCCESS) return mpi_error("MPI_Allgatherv", rc);
  }
  return "";
}

std::string all_reduce(const Collective& c, MPI_Comm comm, int rank, int world) {
  if (c.ordered && world > 1) return ordered_all_reduce(c, comm, rank, world);
  const size_t es = elem_size(c.type);
  char* data = static_cast<char*>(c.input);
  for (size_t begin = 0; begin < c.count; begin += kMaxPiece) {
    const size_t n = std::min(kMaxPiece, c.count - begin);
    int rc = MPI_Allreduce(MPI_IN_PLACE, data + begin * es, int(n), mpi_type(c.type), mpi_op(c.op), comm);
    if (rc != MPI_SUCCESS) return mpi_error("MPI_Allreduce", rc);
  }
  if (c.op == ReduceOp::Avg) divide_by_world(c.type, c.input, c.count, world);
  return "";
}

std::string reduce_scatter(const Collective& c, MPI_Comm comm, int rank, int world) {
  if (c.count > size_t(INT_MAX)) return "reduceScatter: more than 2^31 - 1 elements per rank";
  if (c.ordered && world > 1) {
    std::vector<int> lengths(static_cast<size_t>(world), int(c.count));
    auto gathered = scratch(size_t(world) * c.count * elem_size(c.type));
    return reduce_blocks_in_order(c, static_cast<const char*>(c.input), lengths, c.count, gathered.get(),
                                  static_cast<char*>(c.output), comm, rank, world);
  }
  int rc = MPI_Reduce_scatter_block(c.input, c.output, int(c.count), mpi_type(c.type), mpi_op(c.op), comm);
  if (rc != MPI_SUCCESS) return mpi_error("MPI_Reduce_scatter_block", rc);
  if (c.op == ReduceOp::Avg) divide_by_world(c.type, c.output, c.count, world);
  return "";
}

std::string all_gather(const Collective& c, MPI_Comm comm) {
  if (c.count > size_t(INT_MAX)) return "allGather: more than 2^31 - 1 elements per rank";
  const MPI_Datatype t = mpi_type(c.type);
  int rc = MPI_Allgather(c.input, int(c.count), t, c.output, int(c.count), t, comm);
  return rc == MPI_SUCCESS ? "" : mpi_error("MPI_Allgather", rc);
}

std::string broadcast(const Collective& c, MPI_Comm comm) {
  const size_t es = elem_size(c.type);
  char* data = static_cast<char*>(c.input);
  for (size_t begin = 0; begin < c.count; begin += kMaxPiece) {
    const size_t n = std::min(kMaxPiece, c.count - begin);
    int rc = MPI_Bcast(data + begin * es, int(n), mpi_type(c.type), c.root, comm);
    if (rc != MPI_SUCCESS) return mpi_error("MPI_Bcast", rc);
  }
  return "";
}

}  // namespace

const char* collective_name(CollectiveKind kind) {
  static const char* names[] = {"allReduce", "reduceScatter", "allGather", "broadcast", "barrier"};
  return names[int(kind)];
}

std::string run_collective(const Collective& c, MPI_Comm comm, int rank, int world) {
  switch (c.kind) {
    case CollectiveKind::AllReduce:
      return all_reduce(c, comm, rank, world);
    case CollectiveKind::ReduceScatter:
      return reduce_scatter(c, comm, rank, world);
    case CollectiveKind::AllGather:
      return all_gather(c, comm);
    case CollectiveKind::Broadcast:
      return broadcast(c, comm);
    case CollectiveKind::Barrier: {
      int rc = MPI_Barrier(comm);
      return rc == MPI_SUCCESS ? "" : mpi_error("MPI_Barrier", rc);
    }
  }
  return "unknown collective";
}

}  // namespace fo::mpi
