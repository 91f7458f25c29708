#pragma once
// The element types and reduction operations the MPI module moves, and their MPI names.
// JavaScript typed arrays map onto them one to one (module.cpp); half-precision tensors
// travel as fp32 (reduced) or as raw 16-bit patterns (gathered, broadcast), decided in
// TypeScript (src/distributed/staging.ts).
#include <mpi.h>

#include <cstddef>
#include <cstdint>

namespace fo::mpi {

enum class ElemType : int32_t { F32, F64, I8, U8, I16, U16, I32, U32, I64, U64 };

// avg is sum then a division by the world size (floating-point types only).
enum class ReduceOp : int32_t { Sum = 0, Avg = 1, Max = 2, Min = 3 };

inline size_t elem_size(ElemType t) {
  switch (t) {
    case ElemType::F64:
    case ElemType::I64:
    case ElemType::U64:
      return 8;
    case ElemType::F32:
    case ElemType::I32:
    case ElemType::U32:
      return 4;
    case ElemType::I16:
    case ElemType::U16:
      return 2;
    default:
      return 1;
  }
}

inline bool is_float(ElemType t) { return t == ElemType::F32 || t == ElemType::F64; }

inline MPI_Datatype mpi_type(ElemType t) {
  switch (t) {
    case ElemType::F32:
      return MPI_FLOAT;
    case ElemType::F64:
      return MPI_DOUBLE;
    case ElemType::I8:
      return MPI_INT8_T;
    case ElemType::U8:
      return MPI_UINT8_T;
    case ElemType::I16:
      return MPI_INT16_T;
    case ElemType::U16:
      return MPI_UINT16_T;
    case ElemType::I32:
      return MPI_INT32_T;
    case ElemType::U32:
      return MPI_UINT32_T;
    case ElemType::I64:
      return MPI_INT64_T;
    default:
      return MPI_UINT64_T;
  }
}

inline const char* elem_name(ElemType t) {
  static const char* names[] = {"float32", "float64", "int8",   "uint8", "int16",
                                "uint16",  "int32",   "uint32", "int64", "uint64"};
  return names[int(t)];
}

inline const char* op_name(ReduceOp op) {
  static const char* names[] = {"sum", "avg", "max", "min"};
  return names[int(op)];
}

}  // namespace fo::mpi
