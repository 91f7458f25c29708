#pragma once
// One collective as the communication thread runs it: MPI calls on host buffers, split
// into pieces where MPI's int counts require it. Everything here runs on that one thread.
#include <mpi.h>

#include <cstddef>
#include <string>

#include "element_types.h"

namespace fo::mpi {

enum class CollectiveKind : int32_t { AllReduce = 0, ReduceScatter = 1, AllGather = 2, Broadcast = 3, Barrier = 4 };

const char* collective_name(CollectiveKind kind);

struct Collective {
  CollectiveKind kind = CollectiveKind::Barrier;
  ElemType type = ElemType::F32;
  ReduceOp op = ReduceOp::Sum;
  int root = 0;
  // Sum in rank order (rank 0 + rank 1 + ...) instead of MPI's own order: the same bits on
  // every run and every rank count, at the cost of an all-to-all plus an all-gather.
  bool ordered = false;
  // AllReduce, Broadcast: `input` in place. ReduceScatter: input of world * count elements,
  // output of count. AllGather: input of count, output of world * count.
  void* input = nullptr;
  void* output = nullptr;
  size_t count = 0;  // elements of `input` (AllReduce, Broadcast, AllGather) or of `output`
};

// Runs c on comm; returns "" or the error (MPI's own message, naming the call).
std::string run_collective(const Collective& c, MPI_Comm comm, int rank, int world);

}  // namespace fo::mpi
