// The boundary layouts: defined in native code (native/addon/layouts.h), exported as
// native().layouts, and checked against what TypeScript writes when the addon is loaded
// (src/layouts.ts). Every mismatch is detected, with a message naming it.
import { describe, expect, it } from 'vitest';
import '../src/index'; // declares every optimizer's layout
import {
  CLIP_MODES,
  METRICS_ROW,
  type NativeLayouts,
  checkNativeLayouts,
  checkOptimizerLayout,
  declareOptimizerLayout,
} from '../src/layouts';
import { native } from '../src/native';
import { DEVICES, DTYPES } from '../src/dtype';

const copy = (): NativeLayouts => structuredClone(native().layouts);

describe('boundary layouts', () => {
  it('the addon exports them and they match TypeScript (checked at load)', () => {
    const n = native().layouts;
    expect(n.metricsRow).toEqual([...METRICS_ROW]);
    expect(n.clipModes).toEqual([...CLIP_MODES]);
    expect(n.dtypes).toEqual([...DTYPES]);
    expect(n.devices).toEqual([...DEVICES]);
    expect(Object.keys(n.optimizers).sort()).toEqual(['AdamWHandle', 'LionHandle', 'SgdHandle']);
    expect(n.optimizers.SgdHandle).toEqual({
      hyperFields: ['lr', 'momentum', 'dampening', 'weight_decay', 'nesterov', 'maximize'],
      stateBuffers: ['momentum_buffer'],
      requiredStates: [],
      hasStepCount: false,
    });
    expect(() => checkNativeLayouts(n)).not.toThrow();
  });

  const MISMATCHES: Array<[string, (n: NativeLayouts) => void, RegExp]> = [
    [
      'a hyperparameter field fewer',
      (n) => n.optimizers.AdamWHandle.hyperFields.pop(),
      /AdamWHandle's hyperparameter fields/,
    ],
    [
      'two fields swapped',
      (n) => n.optimizers.LionHandle.hyperFields.reverse(),
      /LionHandle's hyperparameter fields: the addon has \["initial_lr"/,
    ],
    ['a state buffer renamed', (n) => (n.optimizers.LionHandle.stateBuffers[0] = 'm'), /LionHandle's state buffers/],
    ['a buffer no longer required', (n) => (n.optimizers.AdamWHandle.requiredStates = ['exp_avg']), /required state/],
    ['the step count', (n) => (n.optimizers.LionHandle.hasStepCount = true), /LionHandle's step count/],
    ['a metrics row one wider', (n) => n.metricsRow.push('extra'), /the metrics row/],
    ['clip codes reordered', (n) => n.clipModes.reverse(), /the clip-mode codes/],
    ['dtype codes', (n) => (n.dtypes[1] = 'bfloat16'), /the dtype codes/],
    ['device codes', (n) => n.devices.pop(), /the device codes/],
    [
      'a missing handle',
      (n) => delete (n.optimizers as Record<string, unknown>).LionHandle,
      /no optimizer handle LionHandle/,
    ],
  ];
  for (const [what, edit, message] of MISMATCHES) {
    it(`a mismatch is detected: ${what}`, () => {
      const n = copy();
      edit(n);
      expect(() => checkNativeLayouts(n)).toThrow(message);
      expect(() => checkNativeLayouts(n)).toThrow(/does not match this TypeScript build.*Rebuild the addon/);
    });
  }

  it('an addon without layouts is refused', () => {
    expect(() => checkNativeLayouts(undefined)).toThrow(/exports no layouts/);
  });

  it('a layout declared after the addon was loaded is checked at once', () => {
    expect(() =>
      declareOptimizerLayout({
        handle: 'LionHandle',
        hyperFields: ['lr', 'beta1', 'beta2', 'weight_decay'],
        stateBuffers: { required: ['exp_avg'], optional: [] },
        hasStepCount: false,
      }),
    ).toThrow(/two different layouts are declared for LionHandle/);
    const unknown = {
      handle: 'NoSuchHandle',
      hyperFields: [],
      stateBuffers: { required: [], optional: [] },
      hasStepCount: false,
    };
    expect(() => checkOptimizerLayout(native().layouts, unknown)).toThrow(/no optimizer handle NoSuchHandle/);
  });
});
