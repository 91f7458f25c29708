// GradScaler with torch.cuda.amp.GradScaler's semantics (initial scale 2^16, growth 2x
// every 2000 clean steps, backoff 0.5x on overflow). The unscale happens inside the
// optimizer's kernels and the inf/NaN check in the same pre-step pass as clipping: a step
// whose grads overflowed changes no param, master, moment or step count.
import type { FusedOptimizer } from './fused_optimizer';
import { native } from './native';
import { optimizerStepCounter } from './schedulers/optimizer_hook';
import { checkBoolean, checkInteger, checkNumber, checkObject, checkOptions } from './checks';

export interface GradScalerOptions {
  initScale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  growthInterval?: number;
  enabled?: boolean;
}

export interface GradScalerStateDict {
  scale: number;
  growth_factor: number;
  backoff_factor: number;
  growth_interval: number;
  _growth_tracker: number;
}

// Anything a GradScaler can step: the fused optimizers.
type ScalableOptimizer = Pick<
  FusedOptimizer<never, object, object>,
  'stepScaled' | 'stepScaledAsync' | 'gradsForScaling'
>;

interface OptimizerRecord {
  stage: 'unscaled' | 'stepped';
  foundInf: boolean;
}

const f32 = Math.fround;

export class GradScaler {
  readonly enabled: boolean;
  #scale: number;
  #growthFactor: number;
  #backoffFactor: number;
  #growthInterval: number;
  #growthTracker = 0;
  #records = new Map<ScalableOptimizer, OptimizerRecord>();

  constructor(options: GradScalerOptions = {}) {
    const where = 'GradScaler options';
    const o = checkOptions(options, where, [
      'initScale',
      'growthFactor',
      'backoffFactor',
      'growthInterval',
      'enabled',
    ]) as GradScalerOptions;
    this.enabled = checkBoolean(o.enabled ?? true, `${where}: enabled`);
    this.#scale = f32(checkNumber(o.initScale ?? 2 ** 16, `${where}: initScale`, { min: 0, minExclusive: true }));
    this.#growthFactor = checkNumber(o.growthFactor ?? 2, `${where}: growthFactor`, { min: 1, minExclusive: true });
    this.#backoffFactor = checkNumber(o.backoffFactor ?? 0.5, `${where}: backoffFactor`, {
      min: 0,
      minExclusive: true,
      max: 1,
      maxExclusive: true,
    });
    this.#growthInterval = checkInteger(o.growthInterval ?? 2000, `${where}: growthInterval`, { min: 1 });
  }

  /** The current scale (1 when disabled). */
  getScale(): number {
    return this.enabled ? this.#scale : 1;
  }

  /** loss * scale: backpropagate this, so small fp16 grads do not flush to zero. */
  scale(loss: number): number {
    if (typeof loss !== 'number') throw new TypeError('GradScaler.scale: loss must be a number');
    return this.enabled ? loss * this.#scale : loss;
  }

  /**
   * Unscales the optimizer's grads in place now (torch's unscale_), for code that inspects
   * or clips them before step(). Records whether any was inf/NaN.
   */
  unscale(optimizer: ScalableOptimizer): void {
    if (!this.enabled) return;
    const record = this.#records.get(optimizer);
    if (record?.stage === 'unscaled')
      throw new Error('GradScaler.unscale: already called on this optimizer since the last update()');
    if (record?.stage === 'stepped') throw new Error('GradScaler.unscale: called after step() and before update()');
    const grads = optimizer.gradsForScaling();
    const handles = grads.map((g) => g.handle);
    native().scaleGrads(handles, this.#invScale());
    const sums = native().gradNormSums(handles, Infinity);
    this.#records.set(optimizer, { stage: 'unscaled', foundInf: sums.some((x) => !Number.isFinite(x)) });
  }

  /**
   * Steps the optimizer with its grads unscaled inside the kernels, unless a grad is inf or
   * NaN: then nothing changes and `skipped` is true. Once per optimizer between updates.
   */
  step(optimizer: ScalableOptimizer): { skipped: boolean } {
    if (!this.enabled) return { skipped: optimizer.stepScaled(1, false) };
    const record = this.#beginStep(optimizer);
    const skipped = record
      ? record.foundInf || optimizer.stepScaled(1, false)
      : optimizer.stepScaled(this.#invScale(), true);
    this.#finishStep(optimizer, skipped);
    return { skipped };
  }

  /** step() off the JavaScript thread. */
  async stepAsync(optimizer: ScalableOptimizer): Promise<{ skipped: boolean }> {
    if (!this.enabled) return { skipped: await optimizer.stepScaledAsync(1, false) };
    const record = this.#beginStep(optimizer);
    let skipped: boolean;
    if (record?.foundInf) skipped = true;
    else skipped = await optimizer.stepScaledAsync(record ? 1 : this.#invScale(), !record);
    this.#finishStep(optimizer, skipped);
    return { skipped };
  }

  /**
   * Adjusts the scale after the iteration's steps: times backoffFactor if any stepped
   * optimizer saw an inf/NaN, times growthFactor after growthInterval clean iterations.
   * With newScale, sets it instead.
   */
  update(newScale?: number): void {
    if (!this.enabled) return;
    if (newScale !== undefined) {
      this.#scale = f32(checkNumber(newScale, 'GradScaler.update: newScale', { min: 0, minExclusive: true }));
    } else {
      if (this.#records.size === 0)
        throw new Error('GradScaler.update: no optimizer was stepped (or unscaled) since the last update()');
      const foundInf = [...this.#records.values()].some((r) => r.foundInf);
      if (foundInf) {
        this.#scale = f32(this.#scale * this.#backoffFactor);
        this.#growthTracker = 0;
      } else if (this.#growthTracker + 1 === this.#growthInterval) {
        // torch's _amp_update_scale_: a grown scale that overflows fp32 keeps the old one.
        const grown = f32(this.#scale * this.#growthFactor);
        if (Number.isFinite(grown)) this.#scale = grown;
        this.#growthTracker = 0;
      } else {
        this.#growthTracker += 1;
      }
    }
    this.#records.clear();
  }

  stateDict(): GradScalerStateDict {
    return {
      scale: this.#scale,
      growth_factor: this.#growthFactor,
      backoff_factor: this.#backoffFactor,
      growth_interval: this.#growthInterval,
      _growth_tracker: this.#growthTracker,
    };
  }

  loadStateDict(sd: GradScalerStateDict): void {
    checkObject(sd, 'GradScaler.loadStateDict: the state dict');
    const probe = new GradScaler({
      initScale: sd.scale,
      growthFactor: sd.growth_factor,
      backoffFactor: sd.backoff_factor,
      growthInterval: sd.growth_interval,
    });
    if (
      !Number.isSafeInteger(sd._growth_tracker) ||
      sd._growth_tracker < 0 ||
      sd._growth_tracker >= sd.growth_interval
    ) {
      throw new RangeError(
        'GradScaler.loadStateDict: _growth_tracker must be an integer from 0 to growth_interval - 1',
      );
    }
    this.#scale = probe.#scale;
    this.#growthFactor = probe.#growthFactor;
    this.#backoffFactor = probe.#backoffFactor;
    this.#growthInterval = probe.#growthInterval;
    this.#growthTracker = sd._growth_tracker;
    this.#records.clear();
  }

  // torch: scale.double().reciprocal().float()
  #invScale(): number {
    return f32(1 / this.#scale);
  }

  #beginStep(optimizer: ScalableOptimizer): OptimizerRecord | undefined {
    if (!optimizer || typeof optimizer.stepScaled !== 'function')
      throw new TypeError('GradScaler.step: optimizer must be a fused-optim optimizer');
    const record = this.#records.get(optimizer);
    if (record?.stage === 'stepped')
      throw new Error('GradScaler.step: step() was already called on this optimizer since the last update()');
    return record;
  }

  #finishStep(optimizer: ScalableOptimizer, skipped: boolean): void {
    this.#records.set(optimizer, { stage: 'stepped', foundInf: skipped });
    // torch's scaler calls optimizer.step() only for clean grads, so a scheduler counts only
    // those; one stepped after a skipped first step warns, as torch's does.
    if (!skipped) optimizerStepCounter(optimizer as never).count += 1;
  }
}
