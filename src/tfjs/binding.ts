// A TfjsOptimizer's link between tfjs variables and a fused optimizer: one Parameter per
// variable (its values copied into a fused-optim Tensor), the fused optimizer the builder
// made over them, and per variable the fused grad buffer and which tfjs data the Parameter
// last mirrored (a variable assigned by someone else is copied in again before its next step).
import type * as tf from '@tensorflow/tfjs-core';
import type { DeviceName } from '../dtype';
import { FusedOptimizer } from '../fused_optimizer';
import type { ParamGroup } from '../optimizer';
import { Parameter } from '../parameter';
import { Tensor } from '../tensor';
import { type TransferCounts, readValues, writeValues } from './backend_io';
import { describe, shapeText } from './checks';
import type { NamedVariable } from './variables';

/** Any fused optimizer (AdamW, AdamWDL, Lion): every group has an lr. */
export type AnyFusedOptimizer = FusedOptimizer<ParamGroup & { lr: number }, object, object>;

/** Makes the fused optimizer over the Parameters, e.g. `(params) => new AdamW(params, { lr: 1e-3 })`. */
export type FusedBuilder<F extends AnyFusedOptimizer> = (params: Parameter[]) => F;

export interface Slot {
  readonly variable: tf.Variable;
  /** The variable's name in the tfjs engine: grads are keyed by it. */
  readonly variableName: string;
  readonly param: Parameter;
  /** The fused grad buffer, allocated at the variable's first grad. */
  grad: Tensor | null;
  /** The variable's data when the Parameter last matched it. */
  dataId: tf.DataId;
}

export class Binding<F extends AnyFusedOptimizer> {
  readonly slots: readonly Slot[];
  readonly fused: F;
  readonly #byVariableName: Map<string, Slot>;
  readonly #device: DeviceName;

  constructor(named: readonly NamedVariable[], builder: FusedBuilder<F>, device: DeviceName, counts: TransferCounts) {
    const made: Tensor[] = [];
    try {
      const slots = named.map(({ variable, name }) => {
        const data = Tensor.from(readValues(variable, counts), { shape: variable.shape, device });
        made.push(data);
        return {
          variable,
          variableName: variable.name,
          param: new Parameter(data, { name }),
          grad: null,
          dataId: variable.dataId,
        };
      });
      this.fused = checkBuilt(
        builder(slots.map((s) => s.param)),
        slots.map((s) => s.param),
      );
      this.slots = slots;
    } catch (e) {
      for (const t of made) t.dispose();
      throw e;
    }
    this.#byVariableName = new Map(this.slots.map((s) => [s.variableName, s]));
    this.#device = device;
  }

  slotOf(variableName: string): Slot | undefined {
    return this.#byVariableName.get(variableName);
  }

  /** Copies the variable into its Parameter if someone assigned it since the last copy. */
  syncIn(slot: Slot, counts: TransferCounts): void {
    if (slot.variable.dataId === slot.dataId) return;
    slot.param.data.copyFrom(readValues(slot.variable, counts));
    slot.dataId = slot.variable.dataId;
  }

  /** Copies the Parameter's values into the variable. */
  writeBack(slot: Slot, counts: TransferCounts): void {
    writeValues(slot.variable, slot.param.data, counts);
    slot.dataId = slot.variable.dataId;
  }

  /** Copies `grad` into the slot's fused grad buffer and binds it to the Parameter. */
  setGrad(slot: Slot, grad: tf.Tensor, counts: TransferCounts): void {
    slot.grad ??= Tensor.zeros(slot.variable.shape, { device: this.#device });
    slot.grad.copyFrom(readValues(grad, counts));
    if (slot.param.grad !== slot.grad) slot.param.grad = slot.grad;
  }

  clearGrad(slot: Slot): void {
    if (slot.param.grad !== null) slot.param.grad = null;
  }

  dispose(): void {
    for (const s of this.slots) {
      s.param.grad = null;
      s.grad?.dispose();
      s.param.data.dispose();
    }
  }
}

// The builder must return a fused optimizer holding exactly the params it was given.
function checkBuilt<F extends AnyFusedOptimizer>(built: unknown, params: readonly Parameter[]): F {
  if (!(built instanceof FusedOptimizer)) {
    throw new TypeError(
      `TfjsOptimizer: the builder must return a fused-optim optimizer (AdamW, AdamWDL or Lion), got ${describe(built)}`,
    );
  }
  const ours = new Set(params);
  const held = new Set<Parameter>();
  for (const g of built.paramGroups) {
    for (const p of g.params) {
      if (!ours.has(p))
        throw new Error(
          `TfjsOptimizer: the builder's optimizer holds param '${p.name}', which is not one of the params it was given`,
        );
      held.add(p);
    }
  }
  const missing = params.filter((p) => !held.has(p));
  if (missing.length > 0) {
    throw new Error(
      `TfjsOptimizer: the builder's optimizer leaves out ${missing.length} of the ${params.length} params ` +
        `(${missing
          .slice(0, 5)
          .map((p) => `'${p.name}' ${shapeText(p.data.shape)}`)
          .join(', ')}${missing.length > 5 ? ', ...' : ''}); to train some variables only, pass only those`,
    );
  }
  return built as F;
}
