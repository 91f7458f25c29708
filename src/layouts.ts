// The positional layouts that cross the JS/native boundary, as TypeScript writes and reads
// them, checked once against the addon's own (native().layouts, native/addon/layouts.h) when
// the addon is loaded: a mismatch (an addon built from other sources) fails loudly there,
// not silently at a step. Each optimizer declares its layout (declareOptimizerLayout) when
// its module is imported.
import { DEVICES, DTYPES } from './dtype';
import { STATE_DTYPES } from './state_dtype';

/** What one fused optimizer exchanges with its native handle. */
export interface OptimizerLayout {
  /** The addon's handle class (native/core/algorithms.h Algo::kHandle). */
  readonly handle: string;
  /** One group's numbers in the hyperparameter table, in the order writeHyper writes them. */
  readonly hyperFields: readonly string[];
  /** State buffers of a param: required ones, then optional ones (native order). */
  readonly stateBuffers: { readonly required: readonly string[]; readonly optional: readonly string[] };
  /** Whether the state carries a step count. */
  readonly hasStepCount: boolean;
}

/** native().layouts */
export interface NativeLayouts {
  metricsRow: string[];
  clipModes: string[];
  dtypes: string[];
  stateDtypes: string[];
  devices: string[];
  optimizers: Record<
    string,
    { hyperFields: string[]; stateBuffers: string[]; requiredStates: string[]; hasStepCount: boolean }
  >;
}

/** A metrics row: the param's index, then the six sums (metricsFromSums reads them in this order). */
export const METRICS_ROW = [
  'index',
  'moment_sq',
  'param_sq',
  'update_sq',
  'grad_sq',
  'update_dot_grad',
  'moment_dot_grad',
] as const;

/** The clip modes of a step's control, by code. */
export const CLIP_MODES = ['none', 'globalNorm', 'tensorNorm'] as const;
export type ClipModeName = (typeof CLIP_MODES)[number];

export function clipModeCode(mode: ClipModeName): number {
  return CLIP_MODES.indexOf(mode);
}

const declared = new Map<string, OptimizerLayout>();
let loadedLayouts: NativeLayouts | undefined;

/** Records an optimizer's layout; checked now when the addon is loaded already, else at its load. */
export function declareOptimizerLayout<L extends OptimizerLayout>(layout: L): L {
  const same = declared.get(layout.handle);
  if (same !== undefined && same !== layout) checkSameLayout(layout, same);
  if (loadedLayouts) checkOptimizerLayout(loadedLayouts, layout);
  declared.set(layout.handle, layout);
  return layout;
}

/** native.ts, once the addon is loaded: every declared layout against the addon's. */
export function checkNativeLayouts(n: NativeLayouts | undefined): void {
  if (n === undefined || n === null || typeof n !== 'object')
    throw layoutError('the addon exports no layouts (it was built from older sources)');
  expectList(n.metricsRow, METRICS_ROW, 'the metrics row');
  expectList(n.clipModes, CLIP_MODES, 'the clip-mode codes');
  expectList(n.dtypes, DTYPES, 'the dtype codes');
  expectList(n.stateDtypes, STATE_DTYPES, 'the state dtype codes');
  expectList(n.devices, DEVICES, 'the device codes');
  for (const layout of declared.values()) checkOptimizerLayout(n, layout);
  loadedLayouts = n;
}

/** One optimizer's layout against the addon's. */
export function checkOptimizerLayout(n: NativeLayouts, layout: OptimizerLayout): void {
  const native = n.optimizers?.[layout.handle];
  if (native === undefined) throw layoutError(`the addon has no optimizer handle ${layout.handle}`);
  const who = `${layout.handle}'s`;
  expectList(native.hyperFields, layout.hyperFields, `${who} hyperparameter fields`);
  expectList(
    native.stateBuffers,
    [...layout.stateBuffers.required, ...layout.stateBuffers.optional],
    `${who} state buffers`,
  );
  expectList(native.requiredStates, layout.stateBuffers.required, `${who} required state buffers`);
  if (native.hasStepCount !== layout.hasStepCount)
    throw layoutError(`${who} step count: the addon says ${native.hasStepCount}, TypeScript ${layout.hasStepCount}`);
}

function checkSameLayout(a: OptimizerLayout, b: OptimizerLayout): void {
  const text = (l: OptimizerLayout) => JSON.stringify([l.hyperFields, l.stateBuffers, l.hasStepCount]);
  if (text(a) !== text(b)) throw layoutError(`two different layouts are declared for ${a.handle}`);
}

function expectList(got: unknown, want: readonly string[], what: string): void {
  const ok = Array.isArray(got) && got.length === want.length && got.every((v, i) => v === want[i]);
  if (!ok)
    throw layoutError(`${what}: the addon has ${JSON.stringify(got)}, TypeScript expects ${JSON.stringify(want)}`);
}

function layoutError(message: string): Error {
  return new Error(
    `fused-optim: the native addon does not match this TypeScript build: ${message}. Rebuild the addon (npm run build).`,
  );
}
