#pragma once
// The per-chunk loops of the CPU AdamW, one per (param dtype, grad dtype). Each is compiled
// several times for different x86-64 levels (target_clones) and picked at load time, so one
// binary uses AVX-512 or AVX2 where the CPU has it and plain SSE2 elsewhere.
#include <cstdint>

#include "../common/adamw_plan.h"
#include "../common/adamw_rule.h"

namespace fo::cpu {

void adamw_chunk_f32_f32(const AdamWTensor& t, const AdamWSlot& s, int64_t begin, int64_t end);
void adamw_chunk_f16_f16(const AdamWTensor& t, const AdamWSlot& s, int64_t begin, int64_t end);
void adamw_chunk_f16_f32(const AdamWTensor& t, const AdamWSlot& s, int64_t begin, int64_t end);
void adamw_chunk_bf16_bf16(const AdamWTensor& t, const AdamWSlot& s, int64_t begin, int64_t end);
void adamw_chunk_bf16_f32(const AdamWTensor& t, const AdamWSlot& s, int64_t begin, int64_t end);

}  // namespace fo::cpu
