// The benchmark's cases (bench/cases.json), its algorithms and dtypes, and the performance
// model: bytes moved per parameter per step (docs/design.md section 6).
import { readFileSync } from 'node:fs';

const spec = JSON.parse(readFileSync(new URL('./cases.json', import.meta.url), 'utf8'));

/**
 * The parameter list of a BERT-style encoder (names in this package's `encoder.layers.N`
 * convention, so AdamWDL's default rule gives each layer its own ratio): embeddings and
 * their LayerNorm, per layer q/k/v/o + LayerNorm + FFN + LayerNorm, and the pooler.
 * 12 layers, 768 wide, FFN 3072, vocab 30522: 199 tensors, 109,482,240 params (BERT-base).
 */
export function transformerShapes({ layers, hidden: h, ffn: f, vocab, positions, typeVocab }) {
  const out = [
    ['embeddings.word_embeddings.weight', [vocab, h]],
    ['embeddings.position_embeddings.weight', [positions, h]],
    ['embeddings.token_type_embeddings.weight', [typeVocab, h]],
    ['embeddings.LayerNorm.weight', [h]],
    ['embeddings.LayerNorm.bias', [h]],
  ];
  for (let l = 0; l < layers; l++) {
    const p = `encoder.layers.${l}`;
    for (const m of ['query', 'key', 'value'])
      out.push([`${p}.attention.self.${m}.weight`, [h, h]], [`${p}.attention.self.${m}.bias`, [h]]);
    out.push(
      [`${p}.attention.output.dense.weight`, [h, h]],
      [`${p}.attention.output.dense.bias`, [h]],
      [`${p}.attention.output.LayerNorm.weight`, [h]],
      [`${p}.attention.output.LayerNorm.bias`, [h]],
      [`${p}.intermediate.dense.weight`, [f, h]],
      [`${p}.intermediate.dense.bias`, [f]],
      [`${p}.output.dense.weight`, [h, f]],
      [`${p}.output.dense.bias`, [h]],
      [`${p}.output.LayerNorm.weight`, [h]],
      [`${p}.output.LayerNorm.bias`, [h]],
    );
  }
  out.push(['pooler.dense.weight', [h, h]], ['pooler.dense.bias', [h]]);
  return out.map(([name, shape]) => ({ name, shape, numel: shape.reduce((a, b) => a * b, 1) }));
}

/** A case's tensors: [{ name, shape, numel }]. */
export function caseTensors(c) {
  if (c.transformer) return transformerShapes(c.transformer);
  const out = [];
  for (const g of c.tensors)
    for (let i = 0; i < g.count; i++) out.push({ name: `${c.id}.t${out.length}`, shape: [g.numel], numel: g.numel });
  return out;
}

/** The cases of a mode ('full' or 'quick'), each with its tensor list and totals. */
export function loadCases(mode) {
  return spec[mode].map((c) => {
    const tensors = caseTensors(c);
    return {
      id: c.id,
      title: c.title,
      tensors,
      count: tensors.length,
      params: tensors.reduce((s, t) => s + t.numel, 0),
    };
  });
}

export const ALGOS = [
  { id: 'adamw', name: 'AdamW', states: 2 },
  { id: 'adamwdl', name: 'AdamWDL', states: 2 },
  { id: 'lion', name: 'Lion', states: 1 },
];

// Param dtype, grad dtype. Half params always keep fp32 master weights here (the default).
export const DTYPES = [
  { id: 'fp32', param: 'float32', grad: 'float32', label: 'fp32' },
  { id: 'fp16', param: 'float16', grad: 'float16', label: 'fp16+master, fp16 grad' },
  { id: 'bf16', param: 'bfloat16', grad: 'bfloat16', label: 'bf16+master, bf16 grad' },
  { id: 'fp16-g32', param: 'float16', grad: 'float32', label: 'fp16+master, fp32 grad' },
  { id: 'bf16-g32', param: 'bfloat16', grad: 'float32', label: 'bf16+master, fp32 grad' },
];

const SIZE = { float32: 4, float16: 2, bfloat16: 2 };

/**
 * Bytes per parameter per step, each input read once and each output written once, as the
 * CPU loops and CUDA kernels access memory (native/cpu/*_loops.cpp):
 *   fp32 param:         param read + write (8) + grad read + each fp32 state read + write (8 per state)
 *   half param + master: master read + write (8) + half param write only (2; the loop starts from
 *                        the master and never reads the half param) + grad read + states
 * AdamW / AdamWDL (2 states: exp_avg, exp_avg_sq): fp32 28; half+master 28 with a 16-bit grad,
 * 30 with an fp32 grad. Lion (1 state: exp_avg): fp32 20; half+master 20 / 22.
 * (amsgrad adds 8: max_exp_avg_sq read + write; not benchmarked.)
 */
export function bytesPerParam(algo, dtype) {
  const grad = SIZE[dtype.grad];
  const states = 8 * algo.states;
  if (dtype.param === 'float32') return 8 + grad + states;
  return 8 + SIZE[dtype.param] + grad + states;
}

/**
 * The tensor list a slower peer runs instead of the full case, at most `budget` params, so
 * that its per-param throughput can be compared fairly:
 *  - the whole case when it fits;
 *  - equal tensors: the same tensor size, fewer tensors (per-tensor costs per param unchanged);
 *  - one tensor: a smaller tensor;
 *  - a mixed list (the transformer): every tensor scaled by the same factor, so the list keeps
 *    its 199 tensors and the proportions between them (this favours no one: small tensors get
 *    smaller, which raises a peer's per-tensor cost per param).
 * Returns { tensors, params, scaling } with scaling a sentence for the report.
 */
export function scaledTensors(c, budget) {
  if (c.params <= budget) return { tensors: c.tensors, params: c.params, scaling: 'full case' };
  const sizes = new Set(c.tensors.map((t) => t.numel));
  let tensors;
  let scaling;
  if (sizes.size === 1 && c.count > 1) {
    const n = c.tensors[0].numel;
    const count = Math.max(1, Math.floor(budget / n));
    tensors = c.tensors.slice(0, count);
    scaling = `${count} of the ${c.count} tensors (same size)`;
  } else if (c.count === 1) {
    tensors = [{ ...c.tensors[0], shape: [budget], numel: budget }];
    scaling = `one tensor of ${budget} instead of ${c.params}`;
  } else {
    const f = budget / c.params;
    tensors = c.tensors.map((t) => {
      const numel = Math.max(1, Math.round(t.numel * f));
      return { ...t, shape: [numel], numel };
    });
    scaling = `all ${c.count} tensors, each scaled by ${f.toPrecision(3)}`;
  }
  return { tensors, params: tensors.reduce((s, t) => s + t.numel, 0), scaling };
}
