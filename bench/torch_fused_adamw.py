#!/usr/bin/env python3
"""The PyTorch side of the benchmark: torch.optim.AdamW(fused=True) on the cases of
bench/cases.json, on the GPU machine, timed with CUDA events. Prints JSON on stdout.

    python3 bench/torch_fused_adamw.py [--quick] [--out FILE] > torch.json
    node bench/run.mjs --json --out fused.json           # same machine, same cases
    node bench/compare_torch.mjs fused.json torch.json   # the ratios, against the targets

Needs PyTorch 2.x with CUDA (fused=True for CUDA AdamW arrived in torch 2.0; Debian's
python3-torch is 1.13 and CPU-only, so this script does not run on the development machines).
`--device cpu` runs the same cases through torch's default CPU AdamW (foreach or
single-tensor, whatever this torch picks; fused is CUDA-only in 1.13) to check the script,
and to measure PyTorch's CPU AdamW next to bench/run.mjs's figures.

Variants per case (same names as bench/run.mjs's dtypes):
  fp32       fp32 params and grads: AdamW(fused=True). 28 bytes/param.
  bf16, fp16 the fused-optim layout emulated with torch: fp32 master params stepped by
             AdamW(fused=True) with fp32 grads converted from 16-bit grads, then the 16-bit
             params rewritten from the masters (master.grad.copy_(g16); opt.step();
             torch._foreach_copy_ or copy_ per tensor). One step times all three; the model
             bytes are still fused-optim's 28 per param, so "of copy" compares the same work.
Timing: CUDA events around each step after warm-up, median of the repetitions (on the CPU,
time.perf_counter). Copy bandwidth: dst.copy_(src) of a large buffer, device to device,
best of the repetitions, counting read + write (2 x bytes), as bench/run.mjs counts it.
"""
import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def transformer_shapes(layers, hidden, ffn, vocab, positions, typeVocab):
    """The same list as bench/cases.mjs transformerShapes (BERT-style encoder, 199 tensors)."""
    h, f = hidden, ffn
    out = [
        ("embeddings.word_embeddings.weight", (vocab, h)),
        ("embeddings.position_embeddings.weight", (positions, h)),
        ("embeddings.token_type_embeddings.weight", (typeVocab, h)),
        ("embeddings.LayerNorm.weight", (h,)),
        ("embeddings.LayerNorm.bias", (h,)),
    ]
    for l in range(layers):
        p = f"encoder.layers.{l}"
        for m in ("query", "key", "value"):
            out += [(f"{p}.attention.self.{m}.weight", (h, h)), (f"{p}.attention.self.{m}.bias", (h,))]
        out += [
            (f"{p}.attention.output.dense.weight", (h, h)),
            (f"{p}.attention.output.dense.bias", (h,)),
            (f"{p}.attention.output.LayerNorm.weight", (h,)),
            (f"{p}.attention.output.LayerNorm.bias", (h,)),
            (f"{p}.intermediate.dense.weight", (f, h)),
            (f"{p}.intermediate.dense.bias", (f,)),
            (f"{p}.output.dense.weight", (h, f)),
            (f"{p}.output.dense.bias", (h,)),
            (f"{p}.output.LayerNorm.weight", (h,)),
            (f"{p}.output.LayerNorm.bias", (h,)),
        ]
    out += [("pooler.dense.weight", (h, h)), ("pooler.dense.bias", (h,))]
    return [s for _, s in out]


def case_shapes(case):
    if "transformer" in case:
        return transformer_shapes(**case["transformer"])
    shapes = []
    for g in case["tensors"]:
        shapes += [(g["numel"],)] * g["count"]
    return shapes


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


class Timer:
    """CUDA events on a GPU, perf_counter on the CPU; milliseconds."""

    def __init__(self, torch, device):
        self.torch, self.cuda = torch, device == "cuda"

    def time(self, fn):
        if self.cuda:
            start = self.torch.cuda.Event(enable_timing=True)
            end = self.torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3


def copy_bandwidth(torch, device, nbytes, reps, timer):
    src = torch.empty(nbytes, dtype=torch.uint8, device=device).fill_(60)
    dst = torch.zeros_like(src)
    dst.copy_(src)  # warm-up
    ms = [timer.time(lambda: dst.copy_(src)) for _ in range(reps)]
    best = min(ms)
    return {"gbps": 2 * nbytes / (best / 1e3) / 1e9, "medianGbps": 2 * nbytes / (statistics.median(ms) / 1e3) / 1e9,
            "bytes": nbytes, "iterations": reps, "method": "tensor.copy_"}


def run_case(torch, device, shapes, variant, warmup, min_reps, target_ms, timer):
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(variant)
    gen = torch.Generator(device="cpu").manual_seed(0)
    fused = device == "cuda"
    masters, halves, grads16 = [], [], []
    for s in shapes:
        w = (torch.rand(s, generator=gen) - 0.5) * 0.1
        g = (torch.rand(s, generator=gen) - 0.5) * 0.1
        p = torch.nn.Parameter(w.to(device))
        if half is None:
            p.grad = g.to(device)
        else:
            halves.append(w.to(device=device, dtype=half))
            grads16.append(g.to(device=device, dtype=half))
            p.grad = torch.empty_like(p)
        masters.append(p)
    kwargs = {"lr": 1e-3, "weight_decay": 0.01}
    opt = torch.optim.AdamW(masters, fused=True, **kwargs) if fused else torch.optim.AdamW(masters, **kwargs)
    foreach_copy = getattr(torch, "_foreach_copy_", None)

    def step():
        if half is not None:
            if foreach_copy:
                foreach_copy([p.grad for p in masters], grads16)
            else:
                for p, g in zip(masters, grads16):
                    p.grad.copy_(g)
        opt.step()
        if half is not None:
            with torch.no_grad():
                if foreach_copy:
                    foreach_copy(halves, masters)
                else:
                    for h, p in zip(halves, masters):
                        h.copy_(p)

    for _ in range(warmup):
        step()
    if fused:
        torch.cuda.synchronize()
    ms = [timer.time(step)]
    reps = max(min_reps, min(200, math.ceil(target_ms / max(ms[0], 1e-3))))
    while len(ms) < reps:
        ms.append(timer.time(step))
    return {"msMedian": statistics.median(ms), "msMin": min(ms), "reps": len(ms)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the quick cases, few repetitions")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--variants", default="fp32,bf16,fp16", help="comma-separated: fp32, bf16, fp16")
    ap.add_argument("--cases", default=os.path.join(HERE, "cases.json"))
    ap.add_argument("--filter", default="", help="only case ids containing this text")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for --device cpu (default: every core)")
    args = ap.parse_args()

    import torch  # imported here so --help works without torch

    if args.device == "cpu":
        torch.set_num_threads(args.threads)

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("torch_fused_adamw: CUDA is not available to this torch "
              f"({torch.__version__}); run it on the GPU machine, or pass --device cpu", file=sys.stderr)
        return 2
    if device == "cuda":
        try:
            probe = torch.nn.Parameter(torch.zeros(4, device="cuda"))
            probe.grad = torch.ones(4, device="cuda")
            torch.optim.AdamW([probe], fused=True).step()
        except (TypeError, RuntimeError) as e:
            print(f"torch_fused_adamw: this torch ({torch.__version__}) has no fused CUDA AdamW: {e}", file=sys.stderr)
            return 2

    with open(args.cases) as f:
        spec = json.load(f)
    cases = [c for c in spec["quick" if args.quick else "full"] if args.filter in c["id"]]
    timer = Timer(torch, device)
    warmup, min_reps, target_ms = (2, 3, 30) if args.quick else (3, 10, 1500)
    bw = copy_bandwidth(torch, device, (64 if args.quick else 1024) * 2**20, 3 if args.quick else 10, timer)
    out = {
        "schema": 1,
        "tool": "torch.optim.AdamW(fused=True)" if device == "cuda" else "torch.optim.AdamW (CPU)",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name() if device == "cuda" else f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)",
        "quick": args.quick,
        "copyBandwidth": bw,
        "results": [],
    }
    for c in cases:
        shapes = case_shapes(c)
        params = sum(numel(s) for s in shapes)
        for v in [x for x in args.variants.split(",") if x]:
            if device == "cpu" and v != "fp32":
                continue  # torch 1.13's CPU AdamW: the fp32 case is the comparison
            t = run_case(torch, device, shapes, v, warmup, min_reps, target_ms, timer)
            bpp = 28  # fused-optim's model for the same work (docs/design.md section 6)
            gbps = params * bpp / (t["msMedian"] / 1e3) / 1e9
            out["results"].append({
                "id": f"{c['id']}/adamw/{v}", "case": c["id"], "variant": v, "tensors": len(shapes), "params": params,
                **t, "mparamsPerS": params / t["msMedian"] / 1e3, "bytesPerParam": bpp, "gbps": gbps,
                "fractionOfCopy": gbps / bw["gbps"],
            })
            print(f"torch_fused_adamw: {c['id']}/{v}: {t['msMedian']:.3f} ms", file=sys.stderr)
            if device == "cuda":
                torch.cuda.empty_cache()
    text = json.dumps(out, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
