// ZeroRedundancyOptimizer: ZeRO stage 1 (torch.distributed.optim.ZeroRedundancyOptimizer).
// Every rank keeps the whole model and its (all-reduced) grads, but optimizer state only for
// its shard of the params: the factory builds an ordinary fused optimizer over that shard.
// A step updates the shard, then every rank broadcasts its shard's new values, so every
// rank ends with the same params as a data-parallel step of the whole optimizer, bit for bit.
//
// What spans the shards is agreed across ranks: the param groups' hyperparameters (one
// all-gather at construction), a GradScaler's inf/NaN check and clipping by the global
// norm (one all-reduce of one number per param, summed in param order as the unsharded
// optimizer sums it). docs/distributed.md explains each.
import { FusedOptimizer, type GradClip } from '../fused_optimizer';
import { type MetricsDict } from '../metrics';
import { native } from '../native';
import { checkNumber } from '../checks';
import { Optimizer, type ParamGroup, type ParamsInput } from '../optimizer';
import { Parameter } from '../parameter';
import type { Tensor } from '../tensor';
import { type RawBucket, checkBucketBytes, rawBuckets } from './buckets';
import { consolidate } from './consolidate';
import { queueBroadcasts } from './data_parallel';
import { allGatherJsonSync } from './exchange';
import { describeValue } from './host_arrays';
import { partitionParams } from './partition';
import { ProcessGroup } from './process_group';

/** Any fused optimizer (AdamW, AdamWDL, Lion), as the factory returns it. */
export type ShardOptimizer = FusedOptimizer<ParamGroup, object, object>;

/**
 * Builds the optimizer of one rank's shard: `shard` is a list of Parameters (when the
 * params were a list of Parameters) or of param groups with the groups' own options.
 */
export type ShardOptimizerFactory = (shard: ParamsInput<ParamGroup>) => ShardOptimizer;

export interface ZeroOptions {
  group: ProcessGroup;
  /** Largest broadcast of updated params, in bytes (default 25 MiB). */
  bucketBytes?: number;
}

export type ZeroParamGroup = ParamGroup & { lr: number };

interface GroupInput {
  params: Parameter[];
  /** The group's own options, as given (without params). */
  options: Record<string, unknown>;
}

const F32_MAX = 3.4028234663852886e38;

function normalizeParams(params: unknown, where: string): { groups: GroupInput[]; plain: boolean } {
  if (
    params === null ||
    typeof params !== 'object' ||
    typeof (params as Iterable<unknown>)[Symbol.iterator] !== 'function'
  )
    throw new TypeError(`${where}: params must be an array of Parameters or of param groups`);
  const list = [...(params as Iterable<unknown>)];
  if (list.length === 0) throw new RangeError(`${where}: got an empty parameter list`);
  if (list.every((p) => p instanceof Parameter)) return { groups: [{ params: list, options: {} }], plain: true };
  const groups = list.map((g, i) => {
    if (g === null || typeof g !== 'object' || g instanceof Parameter || !('params' in g))
      throw new TypeError(
        `${where}: param group ${i} must be an object with a params array (params cannot mix Parameters and groups)`,
      );
    const { params: ps, ...options } = g as { params: unknown };
    if (ps === null || typeof ps !== 'object' || typeof (ps as Iterable<unknown>)[Symbol.iterator] !== 'function')
      throw new TypeError(`${where}: param group ${i}: params must be an array of Parameters`);
    const members = [...(ps as Iterable<unknown>)];
    if (members.length === 0) throw new RangeError(`${where}: param group ${i}: params is empty`);
    members.forEach((p, j) => {
      if (!(p instanceof Parameter)) throw new TypeError(`${where}: param group ${i}: params[${j}] is not a Parameter`);
    });
    return { params: members as Parameter[], options };
  });
  return { groups, plain: false };
}

// Hyperparameters as JSON with sorted keys, to compare across ranks.
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, canonical((value as Record<string, unknown>)[k])]),
    );
  return value;
}

function hyperOf(group: ParamGroup): Record<string, unknown> {
  const { params: _params, ...rest } = group;
  return canonical(JSON.parse(JSON.stringify(rest))) as Record<string, unknown>;
}

export class ZeroRedundancyOptimizer extends Optimizer<ZeroParamGroup> {
  readonly group: ProcessGroup;
  /** The optimizer of this rank's shard (null when the rank owns no param). */
  readonly localOptimizer: ShardOptimizer | null;
  readonly bucketBytes: number;
  readonly #factory: ShardOptimizerFactory;
  readonly #plain: boolean;
  /** owner[g][i]: the rank of paramGroups[g].params[i]. */
  readonly #owner: number[][];
  /** The global group of each group of the local optimizer. */
  readonly #localToGlobal: number[] = [];
  /** shards[r]: the params rank r owns, in param order. */
  #shards: Parameter[][] = [];
  /** The local optimizers' gradClip, as agreed at construction (for ranks without one). */
  #agreedClip: GradClip | null = null;
  #optimizerClass = '';
  #syncBuckets: RawBucket[][] | undefined;

  constructor(params: ParamsInput<ParamGroup>, factory: ShardOptimizerFactory, options: ZeroOptions) {
    const where = 'ZeroRedundancyOptimizer';
    super({} as Omit<ZeroParamGroup, 'params'>);
    if (typeof factory !== 'function')
      throw new TypeError(`${where}: factory must be a function (shard) => optimizer, e.g. (s) => new AdamW(s)`);
    if (options === null || typeof options !== 'object')
      throw new TypeError(`${where}: options must be { group, bucketBytes? }`);
    for (const key of Object.keys(options))
      if (key !== 'group' && key !== 'bucketBytes') throw new TypeError(`${where}: unknown option '${key}'`);
    if (!(options.group instanceof ProcessGroup))
      throw new TypeError(
        `${where}: options.group must be the ProcessGroup from init(), got ${describeValue(options.group)}`,
      );
    this.group = options.group;
    this.bucketBytes = checkBucketBytes(options.bucketBytes, where);
    this.#factory = factory;
    const { groups, plain } = normalizeParams(params, where);
    this.#plain = plain;
    const { owner } = partitionParams(
      groups.map((g) => g.params),
      this.group.worldSize,
    );
    this.#owner = owner;

    const shard = this.#shardInput(groups, this.group.rank);
    this.localOptimizer = shard.length > 0 ? this.#build(shard, where) : null;

    // Every group's hyperparameters, from a rank that holds some of its params.
    const hyper = this.#agreeHyperparameters(groups.length, where);
    Object.assign(this.defaults, hyper.defaults);
    this.#agreedClip = hyper.gradClip;
    this.#optimizerClass = hyper.cls;
    this.initGroups(groups.map((g, i) => ({ ...hyper.groups[i], params: g.params }) as ZeroParamGroup));
    for (let r = 0; r < this.group.worldSize; r++)
      this.#shards.push(this.paramGroups.flatMap((g, gi) => g.params.filter((_, i) => this.#owner[gi][i] === r)));
  }

  /** Which rank owns `param` (steps it and keeps its state). */
  ownerOf(param: Parameter): number {
    for (let g = 0; g < this.paramGroups.length; g++) {
      const i = this.paramGroups[g].params.indexOf(param);
      if (i >= 0) return this.#owner[g][i];
    }
    throw new RangeError(`ownerOf: param '${param?.name}' is not in this optimizer`);
  }

  /** The params rank `rank` owns, in param order. */
  shardParams(rank = this.group.rank): Parameter[] {
    if (!Number.isSafeInteger(rank) || rank < 0 || rank >= this.group.worldSize)
      throw new RangeError(`shardParams: rank must be an integer from 0 to ${this.group.worldSize - 1}`);
    return [...this.#shards[rank]];
  }

  override addParamGroup(): void {
    throw new Error(
      'ZeroRedundancyOptimizer.addParamGroup is not supported: pass every param group to the constructor',
    );
  }

  /** Steps this rank's shard, then every rank's shard reaches every rank (blocking). */
  step(): void {
    if (!this.#stepShardSync(1, false)) this.#syncParamsSync();
  }

  /** step() off the JavaScript thread. */
  async stepAsync(): Promise<void> {
    if (!(await this.#stepShardAsync(1, false))) await this.#syncParamsAsync();
  }

  /** @internal GradScaler's step: the inf/NaN check is agreed across ranks (all skip or none). */
  stepScaled(invScale: number, checkFinite: boolean): boolean {
    const skipped = this.#stepShardSync(invScale, checkFinite);
    if (!skipped) this.#syncParamsSync();
    return skipped;
  }

  /** @internal */
  async stepScaledAsync(invScale: number, checkFinite: boolean): Promise<boolean> {
    const skipped = await this.#stepShardAsync(invScale, checkFinite);
    if (!skipped) await this.#syncParamsAsync();
    return skipped;
  }

  /**
   * @internal every param's grad (GradScaler.unscale): grads are whole on every rank, so
   * every rank finds the same inf/NaN.
   */
  gradsForScaling(): Tensor[] {
    return this.params.flatMap((p) => {
      const g = p.grad ?? p.sparseGrad?.values;
      return g ? [g] : [];
    });
  }

  /**
   * Clips the grads this rank steps by the global norm over every rank's shard (as
   * clipGradNorm over all params) and returns that norm; the other grads are left alone.
   */
  clipGradNorm(maxNorm: number): number {
    checkNumber(maxNorm, 'clipGradNorm: maxNorm', { min: 0 });
    const sums = this.#gradSums(1, false);
    this.group.allReduce(sums, 'sum', { label: 'ZeroRedundancyOptimizer.clipGradNorm' });
    const total = Math.fround(Math.sqrt(this.#totalSquares(sums, 1)));
    // torch: max_norm / (total_norm + 1e-6) in float32, clamped to 1.
    const coef = Math.fround(Math.fround(1 / Math.fround(total + Math.fround(1e-6))) * Math.fround(maxNorm));
    const grads = this.#shardGrads();
    if (!(coef >= 1) && grads.length)
      native().scaleGrads(
        grads.map((g) => g.handle),
        coef,
      );
    return total;
  }

  /**
   * The whole optimizer's state dict on `root` (torch's consolidate_state_dict): what an
   * unsharded optimizer of the same class over all the params would return, keyed by the
   * params' index across the groups. Undefined on the other ranks; every rank must call it.
   * The root holds the whole state (and a copy of the params) while it runs.
   */
  async consolidateStateDict(root = 0): Promise<ReturnType<ShardOptimizer['stateDict']> | undefined> {
    const whole = await consolidate(this, root);
    if (!whole) return undefined;
    try {
      return whole.optimizer.stateDict();
    } finally {
      for (const p of whole.params) p.data.dispose();
    }
  }

  /** Metrics of this rank's shard (allReduceMetrics() puts every rank's together). */
  metrics(): MetricsDict {
    this.#syncHyperparameters();
    return this.localOptimizer?.metrics() ?? {};
  }

  /** This rank's shard: the local optimizer's state dict (torch's layout, shard indices). */
  stateDict(): ReturnType<ShardOptimizer['stateDict']> {
    this.#syncHyperparameters();
    return this.localOptimizer?.stateDict() ?? { state: {}, param_groups: [] };
  }

  /**
   * Loads this rank's shard from a dict of stateDict() (every rank must call it: the
   * hyperparameters it restores are agreed across ranks).
   */
  loadStateDict(sd: ReturnType<ShardOptimizer['stateDict']>): void {
    if (this.localOptimizer) this.localOptimizer.loadStateDict(sd);
    else if (!sd || !Array.isArray(sd.param_groups) || sd.param_groups.length !== 0)
      throw new RangeError('loadStateDict: this rank owns no param; its dict has no param groups');
    const hyper = this.#agreeHyperparameters(this.paramGroups.length, 'loadStateDict');
    this.paramGroups.forEach((g, i) => this.#assignHyper(g, hyper.groups[i]));
  }

  // -------------------------------------------------------------------------------------
  // @internal, for the sharded checkpoints

  /** The class of the shard optimizers (the same on every rank), e.g. 'AdamW'. */
  get optimizerClass(): string {
    return this.#optimizerClass;
  }

  /**
   * @internal the factory's input for `groups` (global group index, params), with the
   * global groups' current hyperparameters, as the local optimizer's input is made.
   */
  factoryInputFor(groups: ReadonlyArray<{ group: number; params: Parameter[] }>): ParamsInput<ParamGroup> & unknown[] {
    if (this.#plain) return groups.flatMap((g) => g.params);
    return groups.map((g) => ({
      ...hyperOf(this.paramGroups[g.group]),
      params: g.params,
    })) as unknown as ParamsInput<ParamGroup> & unknown[];
  }

  /** @internal builds an optimizer with the factory, checked as the local one is. */
  buildWith(shard: ParamsInput<ParamGroup> & unknown[]): ShardOptimizer {
    return this.#build(shard, 'ZeroRedundancyOptimizer');
  }

  /** @internal the global group of each of the local optimizer's groups. */
  get localGroups(): readonly number[] {
    return this.#localToGlobal;
  }

  /** @internal each global group's hyperparameters (JSON, sorted keys). */
  hyperparameters(): Record<string, unknown>[] {
    return this.paramGroups.map(hyperOf);
  }

  /** @internal sets every global group's hyperparameters (and the local groups'). */
  setHyperparameters(hyper: readonly Record<string, unknown>[]): void {
    this.paramGroups.forEach((g, i) => this.#assignHyper(g, hyper[i]));
    this.#syncHyperparameters();
  }

  /** @internal the global groups' hyperparameters into the local optimizer's groups. */
  syncLocalHyperparameters(): void {
    this.#syncHyperparameters();
  }

  /** @internal every rank's shard values to every rank. */
  syncParams(): Promise<void> {
    return this.#syncParamsAsync();
  }

  // -------------------------------------------------------------------------------------

  protected checkGroup(group: ZeroParamGroup, where: string): ZeroParamGroup {
    checkNumber(group.lr, `${where}: lr`, { min: 0 });
    return group;
  }

  // A group's keys are the local optimizer's hyperparameters, which it checks (unknown ones
  // included) when the groups are handed to it.
  protected override checkGroupKeys(): void {}

  protected bindGroup(): void {}
  protected bindGrad(): void {}

  #shardInput(groups: GroupInput[], rank: number): ParamsInput<ParamGroup> & unknown[] {
    // The groups' own options (not the defaults, which the factory sets).
    const mine = groups.map((g, gi) => ({
      params: g.params.filter((_, i) => this.#owner[gi][i] === rank),
      options: g.options,
    }));
    const input = this.#shardInputFromGroups(mine);
    this.#localToGlobal.length = 0;
    mine.forEach((g, gi) => g.params.length > 0 && this.#localToGlobal.push(gi));
    return input as ParamsInput<ParamGroup> & unknown[];
  }

  #shardInputFromGroups(groups: GroupInput[]): ParamsInput<ParamGroup> & unknown[] {
    if (this.#plain) return groups[0].params;
    return groups
      .filter((g) => g.params.length > 0)
      .map((g) => ({ ...g.options, params: g.params })) as unknown as ParamsInput<ParamGroup> & unknown[];
  }

  #build(shard: ParamsInput<ParamGroup> & unknown[], where: string): ShardOptimizer {
    const opt = this.#factory(shard) as unknown;
    if (!(opt instanceof FusedOptimizer))
      throw new TypeError(
        `${where}: the factory must return a fused-optim optimizer (AdamW, AdamWDL, Lion), got ${describeValue(opt)}`,
      );
    const expected = this.#plain
      ? [shard as Parameter[]]
      : (shard as Array<{ params: Parameter[] }>).map((g) => g.params);
    const got: Parameter[][] = opt.paramGroups.map((g) => g.params);
    const same =
      got.length === expected.length &&
      got.every((ps, i) => ps.length === expected[i].length && ps.every((p, j) => p === expected[i][j]));
    if (!same)
      throw new Error(
        `${where}: the factory must build a new optimizer over exactly the params (and groups) it is given`,
      );
    return opt as ShardOptimizer;
  }

  #agreeHyperparameters(
    groupCount: number,
    where: string,
  ): {
    defaults: Record<string, unknown>;
    groups: Record<string, unknown>[];
    gradClip: GradClip | null;
    cls: string;
  } {
    const local = this.localOptimizer;
    const mine = {
      cls: local ? local.constructor.name : null,
      clip: local ? JSON.stringify(canonical(local.gradClip)) : null,
      defaults: local ? canonical(JSON.parse(JSON.stringify(local.defaults))) : null,
      groups: local ? local.paramGroups.map((g, i) => [this.#localToGlobal[i], hyperOf(g)]) : [],
    };
    const all = allGatherJsonSync(this.group, mine, `${where}: hyperparameters`) as Array<typeof mine>;
    const groups: Array<Record<string, unknown> | undefined> = new Array(groupCount).fill(undefined);
    const texts: string[] = new Array(groupCount).fill('');
    let defaults: Record<string, unknown> | undefined;
    let cls: string | null = null;
    let clip: string | null = null;
    all.forEach((r, rank) => {
      if (r.cls !== null) {
        if (cls !== null && r.cls !== cls)
          throw new Error(`${where}: rank ${rank}'s factory built a ${r.cls} but another rank's built a ${cls}`);
        if (clip !== null && r.clip !== clip)
          throw new Error(`${where}: rank ${rank}'s optimizer has gradClip ${r.clip} but another rank's has ${clip}`);
        cls = r.cls;
        clip = r.clip;
        defaults ??= r.defaults as Record<string, unknown>;
      }
      for (const [g, h] of r.groups as Array<[number, Record<string, unknown>]>) {
        const text = JSON.stringify(h);
        if (groups[g] === undefined) {
          groups[g] = h;
          texts[g] = text;
        } else if (texts[g] !== text) {
          throw new Error(
            `${where}: the ranks disagree on the hyperparameters of param group ${g} (rank ${rank} has ${text}, another rank ${texts[g]})`,
          );
        }
      }
    });
    groups.forEach((g, i) => {
      if (g === undefined) throw new Error(`${where}: no rank holds a param of param group ${i}`);
    });
    return {
      defaults: defaults ?? {},
      groups: groups as Record<string, unknown>[],
      gradClip: clip === null ? null : (JSON.parse(clip) as GradClip | null),
      cls: cls ?? '',
    };
  }

  #assignHyper(target: ZeroParamGroup, hyper: Record<string, unknown>): void {
    for (const key of Object.keys(target)) if (key !== 'params' && !(key in hyper)) delete target[key];
    Object.assign(target, hyper, { params: target.params });
  }

  // The global groups' hyperparameters (a scheduler writes them) into the local groups.
  #syncHyperparameters(): void {
    const local = this.localOptimizer;
    if (!local) return;
    local.paramGroups.forEach((lg, i) => {
      const g = this.paramGroups[this.#localToGlobal[i]] as Record<string, unknown>;
      const target = lg as Record<string, unknown>;
      for (const key of Object.keys(target)) if (key !== 'params' && !(key in g)) delete target[key];
      for (const [key, value] of Object.entries(g)) if (key !== 'params') target[key] = value;
    });
  }

  #shardGrads(): Tensor[] {
    return this.localOptimizer?.gradsForScaling() ?? [];
  }

  #shardGlobalIndices(): number[] {
    const local = this.localOptimizer;
    if (!local) return [];
    const index = new Map(this.params.map((p, i) => [p, i]));
    return local.paramGroups.flatMap((g) => g.params.flatMap((p) => ((p.grad ?? p.sparseGrad) ? [index.get(p)!] : [])));
  }

  /**
   * One number per param at its global index (0 for other ranks' params): the squared L2
   * norm of its grad (clip), and, last, 1 when this rank's shard holds an inf/NaN after
   * unscaling (checkFinite). Summed across ranks, every param's entry is one rank's exact
   * value.
   */
  #gradSums(invScale: number, checkFinite: boolean, norms = true): Float64Array {
    const out = new Float64Array(this.params.length + 1);
    const grads = this.#shardGrads();
    if (grads.length === 0) return out;
    const handles = grads.map((g) => g.handle);
    const at = this.#shardGlobalIndices();
    let sums: Float64Array | undefined;
    if (norms) {
      sums = native().gradNormSums(handles, 2);
      sums.forEach((s, k) => (out[at[k]] = s));
    }
    if (checkFinite) {
      // An unscaled grad g * invScale is inf/NaN exactly when its largest |g| times invScale
      // is (in fp32); a finite sum of squares whose root stays below fp32's max settles it
      // without that second pass.
      const clear = sums?.every((s) => Number.isFinite(s) && Math.sqrt(s) * invScale < F32_MAX);
      let found = false;
      if (!clear) {
        const maxAbs = native().gradNormSums(handles, Infinity);
        found = maxAbs.some((m) => !Number.isFinite(Math.fround(m * invScale)));
      }
      out[this.params.length] = found ? 1 : 0;
    }
    return out;
  }

  // The sum of the squared norms in param order, as the unsharded optimizer's pre-step
  // pass adds them; unscaled by a power-of-two scale exactly.
  #totalSquares(sums: Float64Array, invScale: number): number {
    const f = invScale * invScale;
    let total = 0;
    for (let i = 0; i < this.params.length; i++) total += sums[i] * f;
    return total;
  }

  // Clipping by the global norm as the local optimizer has it (set it in the factory: a rank
  // without a local optimizer uses what the others had at construction).
  #clip(): GradClip | null {
    return this.localOptimizer ? this.localOptimizer.gradClip : this.#agreedClip;
  }

  // What the local step runs with: clipping by the global norm becomes a scale of the grads.
  #plan(invScale: number, checkFinite: boolean): { globalClip: boolean; sums?: Float64Array } {
    const globalClip = this.#clip()?.type === 'globalNorm';
    if (!globalClip && !checkFinite) return { globalClip };
    return { globalClip, sums: this.#gradSums(invScale, checkFinite, globalClip) };
  }

  #decide(invScale: number, checkFinite: boolean, globalClip: boolean, sums?: Float64Array) {
    if (sums && checkFinite && sums[this.params.length] > 0) return { skip: true, scale: invScale };
    if (!globalClip || !sums) return { skip: false, scale: invScale };
    const maxNorm = (this.#clip() as { maxNorm: number }).maxNorm;
    const norm = Math.sqrt(this.#totalSquares(sums, invScale));
    const coef = norm > maxNorm ? Math.fround(maxNorm / norm) : 1;
    return { skip: false, scale: Math.fround(invScale * coef) };
  }

  #stepShardSync(invScale: number, checkFinite: boolean): boolean {
    this.#syncHyperparameters();
    const { globalClip, sums } = this.#plan(invScale, checkFinite);
    if (sums) this.group.allReduce(sums, 'sum', { label: 'ZeroRedundancyOptimizer: grad norms and inf check' });
    const d = this.#decide(invScale, checkFinite, globalClip, sums);
    if (d.skip) return true;
    this.#withoutGlobalClip(globalClip, () => {
      const local = this.localOptimizer;
      if (!local) return;
      if (d.scale === 1 && !globalClip) local.step();
      else local.stepScaled(d.scale, false);
    });
    return false;
  }

  async #stepShardAsync(invScale: number, checkFinite: boolean): Promise<boolean> {
    this.#syncHyperparameters();
    const { globalClip, sums } = this.#plan(invScale, checkFinite);
    if (sums)
      await this.group.allReduceAsync(sums, 'sum', { label: 'ZeroRedundancyOptimizer: grad norms and inf check' });
    const d = this.#decide(invScale, checkFinite, globalClip, sums);
    if (d.skip) return true;
    const local = this.localOptimizer;
    if (!local) return false;
    if (!globalClip) {
      if (d.scale === 1) await local.stepAsync();
      else await local.stepScaledAsync(d.scale, false);
      return false;
    }
    const clip = local.gradClip;
    local.gradClip = null;
    try {
      await local.stepScaledAsync(d.scale, false);
    } finally {
      local.gradClip = clip;
    }
    return false;
  }

  #withoutGlobalClip(globalClip: boolean, run: () => void): void {
    const local = this.localOptimizer;
    if (!globalClip || !local) return run();
    const clip = local.gradClip;
    local.gradClip = null;
    try {
      run();
    } finally {
      local.gradClip = clip;
    }
  }

  #buckets(): RawBucket[][] {
    if (!this.#syncBuckets) {
      this.#syncBuckets = [];
      for (let r = 0; r < this.group.worldSize; r++) {
        const tensors = this.#shards[r].map((p) => p.data);
        this.#syncBuckets.push(rawBuckets(this.group, tensors, this.bucketBytes));
      }
    }
    return this.#syncBuckets;
  }

  #syncParamsSync(): void {
    if (this.group.worldSize === 1) return;
    const buckets = this.#buckets();
    for (let r = 0; r < this.group.worldSize; r++) {
      const tensors = this.#shards[r].map((p) => p.data);
      buckets[r].forEach((b, k) => {
        if (r === this.group.rank) b.pack(tensors);
        this.group.broadcast(b.bytes, r, {
          label: `ZeRO param sync: rank ${r}'s bucket ${k + 1} of ${buckets[r].length}`,
        });
        if (r !== this.group.rank) b.unpack(tensors);
      });
    }
  }

  async #syncParamsAsync(): Promise<void> {
    if (this.group.worldSize === 1) return;
    const buckets = this.#buckets();
    // Queued rank by rank (the same order on every rank), then written back as they arrive.
    const queued: Array<{ rank: number; inFlight: Promise<void>[] }> = [];
    for (let r = 0; r < this.group.worldSize; r++) {
      const tensors = this.#shards[r].map((p) => p.data);
      queued.push({
        rank: r,
        inFlight: await queueBroadcasts(this.group, tensors, r, buckets[r], `ZeRO param sync: rank ${r}'s shard`),
      });
    }
    for (const { rank, inFlight } of queued) {
      const tensors = this.#shards[rank].map((p) => p.data);
      for (const [k, done] of inFlight.entries()) {
        await done;
        if (rank !== this.group.rank) buckets[rank][k].unpack(tensors);
      }
    }
  }
}
