#!/usr/bin/env python3
"""Move a training run between fused-optim and PyTorch.

    export: a fused-optim checkpoint (.safetensors) -> model.pt (a model.state_dict()) and
            optimizer.pt (an optimizer.state_dict()), plus scheduler.pt / scaler.pt when the
            checkpoint has them
    import: those .pt files -> a fused-optim checkpoint that loadCheckpoint() restores

    python3 scripts/torch_interop.py export ckpt.safetensors --model model.pt --optimizer optimizer.pt \\
        [--scheduler scheduler.pt] [--scaler scaler.pt] [--master-params]
    python3 scripts/torch_interop.py import --model model.pt --optimizer optimizer.pt \\
        [--scheduler scheduler.pt] [--scaler scaler.pt] --out ckpt.safetensors \\
        [--param-dtype keep|float32|float16|bfloat16] [--optimizer-class AdamW|AdamWDL|Lion] \\
        [--scheduler-class NAME] [--scaler-class NAME] [--param-names names.json] [--no-masters]

Needs numpy and torch only (Debian: apt-get install python3-torch python3-numpy); it reads
and writes safetensors itself (docs/checkpoints.md describes the format) and checks every
CRC-32 it reads.

Mapping (torch 1.13 and 2.x layouts):
- model.pt holds each param under its name, in its dtype. fused-optim keeps fp32 master
  weights for float16/bfloat16 params; torch has no such thing. By default the half values
  are exported and the masters dropped (with a warning); --master-params exports every half
  param in float32 instead (its master, or its value where it has none yet), so a torch run
  in fp32 continues exactly where fused-optim's update (which runs on the master) was.
- optimizer.pt is torch's state dict: state[i] = {step: tensor(float), exp_avg, exp_avg_sq,
  max_exp_avg_sq?} with the param's shape (Lion: exp_avg only, as llm-foundry's
  DecoupledLionW); param_groups[g] has torch's keys plus `param_names` (torch >= 2.6 writes
  it too), so the indices map back to names. What torch has no place for (the optimizer's
  class, other state dict entries such as an RNG stream, `extra`, the param dtypes) goes
  under optimizer.pt's "fused_optim" key, which torch's load_state_dict ignores.
- scheduler.pt is the scheduler's state dict (the same keys as torch's schedulers) with
  "_fused_optim_class" added; scaler.pt likewise.
- import reads names from param_groups[g]["param_names"], or --param-names (a JSON list in
  torch's index order), or, when the counts agree, the float tensors of model.pt in order.
  With --param-dtype float16/bfloat16 a float32 torch param becomes a half param (rounded to
  nearest even) whose master is the float32 value, unless --no-masters.
"""
import argparse
import json
import math
import os
import struct
import sys
import tempfile
import zlib
from collections import OrderedDict

import numpy as np
import torch

FORMAT = "fused-optim/checkpoint"
VERSION = 1  # what import writes; export reads versions 1 and 2
MANIFEST_KEY = "fused_optim.manifest"
MANIFEST_CRC_KEY = "fused_optim.manifest_crc32"  # version 1
HEADER_CRC_KEY = "fused_optim.header_crc32"  # version 2 (src/checkpoint/layout.ts)
TENSOR_CRCS_KEY = "fused_optim.tensor_crc32"
HEADER_PREFIX = b'{"__metadata__":{"fused_optim.header_crc32":"'
MAX_HEADER = 100_000_000

# safetensors dtype -> (numpy dtype of the raw elements, torch dtype)
DTYPES = {
    "F64": (np.float64, torch.float64),
    "F32": (np.float32, torch.float32),
    "F16": (np.float16, torch.float16),
    "BF16": (np.uint16, torch.bfloat16),  # numpy has no bfloat16: raw bits
    "I64": (np.int64, torch.int64),
    "I32": (np.int32, torch.int32),
    "I16": (np.int16, torch.int16),
    "I8": (np.int8, torch.int8),
    "U8": (np.uint8, torch.uint8),
    "BOOL": (np.bool_, torch.bool),
    "U16": (np.uint16, None),
    "U32": (np.uint32, None),
    "U64": (np.uint64, None),
}
TORCH_TO_ST = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
               torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
PARAM_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
PARAM_TORCH = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class CheckpointError(Exception):
    pass


# ---------------------------------------------------------------------------------------
# safetensors

def read_safetensors(path, raw_header=None):
    """(metadata, {name: (dtype, shape, raw bytes)}) with the spec's checks, in file order.
    raw_header: a list that receives the file's first 8 + N bytes."""
    data = open(path, "rb").read()
    if len(data) < 8:
        raise CheckpointError("%s: too short for a safetensors file" % path)
    n = struct.unpack("<Q", data[:8])[0]
    if n > MAX_HEADER or 8 + n > len(data):
        raise CheckpointError("%s: bad header length %d" % (path, n))
    if raw_header is not None:
        raw_header.append(data[:8 + n])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", None) or {}
    buf = memoryview(data)[8 + n:]
    tensors = {}
    at = 0
    for name, info in sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"])):
        s, e = info["data_offsets"]
        size = np.dtype(DTYPES[info["dtype"]][0]).itemsize * int(np.prod(info["shape"], dtype=np.int64))
        if s != at or e - s != size or e > len(buf):
            raise CheckpointError("%s: tensor %r has bad offsets" % (path, name))
        tensors[name] = (info["dtype"], list(info["shape"]), bytes(buf[s:e]))
        at = e
    if at != len(buf):
        raise CheckpointError("%s: the tensors do not cover the data" % path)
    return metadata, tensors


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, dtype, shape, raw bytes), written widest dtype first; atomic."""
    width = lambda t: np.dtype(DTYPES[t[1]][0]).itemsize
    ordered = sorted(tensors, key=lambda t: -width(t))  # stable
    header = OrderedDict()
    header["__metadata__"] = metadata
    at = 0
    for name, dtype, shape, raw in ordered:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(raw)]}
        at += len(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for _, _, _, raw in ordered:
                f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def to_torch(dtype, shape, raw):
    np_dtype, torch_dtype = DTYPES[dtype]
    a = np.frombuffer(raw, dtype=np_dtype).copy()
    if dtype == "BF16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16).reshape(shape)
    if torch_dtype is None:  # U16/U32/U64: torch 1.13 has no such tensors; keep numpy's
        return a.reshape(shape)
    return torch.from_numpy(a).reshape(shape)


def from_torch(t):
    t = t.detach().cpu().contiguous()
    dtype = TORCH_TO_ST.get(t.dtype)
    if dtype is None:
        raise CheckpointError("torch dtype %s cannot be stored" % t.dtype)
    if dtype == "BF16":
        raw = t.view(torch.int16).numpy().tobytes()
    else:
        raw = t.numpy().tobytes()
    return dtype, list(t.shape), raw


# ---------------------------------------------------------------------------------------
# The manifest's value encoding (src/checkpoint/codec.ts)

def decode(v, tensor):
    if v is None or isinstance(v, (bool, str, int, float)):
        return v
    if isinstance(v, list):
        return [decode(x, tensor) for x in v]
    keys = list(v)
    if len(keys) == 1 and keys[0].startswith("$") and not keys[0].startswith("$$"):
        k, x = keys[0], v[keys[0]]
        if k == "$tensor":
            return tensor(x)
        if k == "$number":
            return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf, "-0": -0.0}[x]
        if k == "$bigint":
            return int(x)
        raise CheckpointError("unknown marker %s" % k)
    return {(k[1:] if k.startswith("$$") else k): decode(x, tensor) for k, x in v.items()}


class Encoder:
    def __init__(self, taken):
        self.tensors = []  # (name, dtype, shape, raw)
        self.names = set(taken)

    def encode(self, v, name):
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int):
            return v if abs(v) <= 2**53 - 1 else {"$bigint": str(v)}
        if isinstance(v, float):
            if math.isnan(v):
                return {"$number": "NaN"}
            if math.isinf(v):
                return {"$number": "Infinity" if v > 0 else "-Infinity"}
            if v == 0 and math.copysign(1, v) < 0:
                return {"$number": "-0"}
            return v
        if isinstance(v, torch.Tensor):
            if v.dim() == 0 and not v.is_floating_point():
                return self.encode(v.item(), name)
            dtype, _, raw = from_torch(v.reshape(-1))
            return self.add(name, dtype, raw, v.numel())
        if isinstance(v, np.ndarray):
            st = {np.dtype(d[0]).str: k for k, d in DTYPES.items() if k not in ("BF16",)}.get(v.dtype.str)
            if st is None:
                raise CheckpointError("%s: a numpy %s array cannot be stored" % (name, v.dtype))
            return self.add(name, st, np.ascontiguousarray(v).reshape(-1).tobytes(), v.size)
        if isinstance(v, (list, tuple)):
            return [self.encode(x, "%s.%d" % (name, i)) for i, x in enumerate(v)]
        if isinstance(v, dict):
            return {("$" + k if k.startswith("$") else k): self.encode(x, "%s.%s" % (name, k)) for k, x in v.items()}
        raise CheckpointError("%s: a %s cannot be stored" % (name, type(v).__name__))

    def add(self, name, dtype, raw, numel):
        unique = name
        i = 2
        while unique in self.names:
            unique = "%s#%d" % (name, i)
            i += 1
        self.names.add(unique)
        self.tensors.append((unique, dtype, [numel], raw))
        return {"$tensor": unique}


def read_checkpoint(path):
    raw = []
    metadata, tensors = read_safetensors(path, raw)
    if metadata.get("format") != FORMAT:
        raise CheckpointError("%s: not a fused-optim checkpoint" % path)
    version = int(metadata.get("format_version", "0"))
    if version not in (1, 2):
        raise CheckpointError("%s: checkpoint format version %s; this script reads 1 and 2" % (path, metadata.get("format_version")))
    if version == 1:
        manifest, crcs = read_manifest_v1(path, metadata, tensors)
    else:
        manifest, crcs = read_manifest_v2(path, metadata, tensors, raw[0])
    for name, (dtype, shape, data) in tensors.items():
        if "%08x" % zlib.crc32(data) != crcs[name]:
            raise CheckpointError("%s: tensor %r fails its checksum: the file is corrupt" % (path, name))
    return manifest, tensors


def read_manifest_v1(path, metadata, tensors):
    text = metadata[MANIFEST_KEY]
    if "%08x" % zlib.crc32(text.encode("utf-8")) != metadata[MANIFEST_CRC_KEY]:
        raise CheckpointError("%s: the manifest fails its checksum" % path)
    manifest = json.loads(text)
    for name, (dtype, shape, _) in tensors.items():
        info = manifest["tensors"][name]
        if info["dtype"] != dtype or info["shape"] != shape:
            raise CheckpointError("%s: tensor %r disagrees with the manifest" % (path, name))
    return manifest, {name: info["crc32"] for name, info in manifest["tensors"].items()}


def read_manifest_v2(path, metadata, tensors, raw):
    # The header's CRC-32, its own 8 digits read as zeros; the tensor CRCs in file order.
    at = 8 + len(HEADER_PREFIX)
    if raw[8:at] != HEADER_PREFIX or raw[at:at + 8].decode("latin-1") != metadata.get(HEADER_CRC_KEY):
        raise CheckpointError("%s: the header's %s is not where fused-optim writes it" % (path, HEADER_CRC_KEY))
    if "%08x" % zlib.crc32(raw[:at] + b"00000000" + raw[at + 8:]) != metadata[HEADER_CRC_KEY]:
        raise CheckpointError("%s: the header fails its checksum: the file is corrupt" % path)
    listed = metadata[TENSOR_CRCS_KEY]
    names = list(tensors)
    if len(listed) != 8 * len(names):
        raise CheckpointError("%s: %s does not list every tensor" % (path, TENSOR_CRCS_KEY))
    crcs = {name: listed[8 * i:8 * i + 8] for i, name in enumerate(names)}
    # The manifest, with its per-param parts in chunks (src/checkpoint/manifest.ts).
    main = json.loads(metadata[MANIFEST_KEY])
    manifest = dict(main)
    manifest["params"] = []
    for c in range(manifest.pop("params_chunks")):
        manifest["params"].extend(json.loads(metadata["fused_optim.params.%d" % c]))
    if "optimizer" in main:
        opt = dict(main["optimizer"])
        opt["state"] = {}
        for c in range(opt.pop("state_chunks")):
            opt["state"].update(json.loads(metadata["fused_optim.state.%d" % c]))
        manifest["optimizer"] = opt
    return manifest, crcs


# ---------------------------------------------------------------------------------------
# export

def export(args):
    manifest, tensors = read_checkpoint(args.checkpoint)
    tensor = lambda name: to_torch(*tensors[name])
    params = {p["name"]: p for p in manifest["params"]}
    opt = manifest.get("optimizer")
    masters = {}
    state_by_name = {}
    if opt:
        for name, entry in opt["state"].items():
            state_by_name[name] = decode(entry, tensor)
            if "master" in state_by_name[name]:
                masters[name] = state_by_name[name].pop("master")

    model = OrderedDict()
    dropped = []
    for p in manifest["params"]:
        value = tensor(p["tensor"])
        if args.master_params and p["dtype"] != "float32":
            # fp32 everywhere: the master where there is one, else the half value (where
            # fused-optim would seed the master from at the param's first step)
            value = masters[p["name"]].reshape(p["shape"]) if p["name"] in masters else value.to(torch.float32)
        elif p["name"] in masters:
            dropped.append(p["name"])
        model[p["name"]] = value
    torch.save(model, args.model)

    if opt:
        flat = [n for g in opt["param_groups"] for n in g["param_names"]]
        index = {n: i for i, n in enumerate(flat)}
        state = {}
        for name, s in state_by_name.items():
            shape = params[name]["shape"] if name in params else None
            entry = {}
            for k, v in s.items():
                if k == "step":
                    entry[k] = torch.tensor(float(v))  # torch keeps step as a float32 scalar tensor
                elif isinstance(v, torch.Tensor) and shape is not None and v.numel() == int(np.prod(shape, dtype=np.int64)):
                    entry[k] = v.reshape(shape)
                else:
                    entry[k] = v
            state[index[name]] = entry
        groups = []
        for g in opt["param_groups"]:
            d = decode(g["dict"], tensor)
            if isinstance(d.get("betas"), list):
                d["betas"] = tuple(d["betas"])
            d["params"] = [index[n] for n in g["param_names"]]
            d["param_names"] = list(g["param_names"])
            groups.append(d)
        fused = {"class": opt["class"], "param_dtypes": {p["name"]: p["dtype"] for p in manifest["params"]}}
        others = decode(opt["dict"], tensor)
        if others:
            fused["dict"] = others
        if "extra" in manifest:
            fused["extra"] = decode(manifest["extra"], tensor)
        torch.save({"state": state, "param_groups": groups, "fused_optim": fused}, args.optimizer)
    elif args.optimizer:
        print("note: the checkpoint has no optimizer state; %s not written" % args.optimizer)

    for key, out in (("scheduler", args.scheduler), ("scaler", args.scaler)):
        part = manifest.get(key)
        if part and out:
            sd = decode(part["state_dict"], tensor)
            sd["_fused_optim_class"] = part["class"]
            torch.save(sd, out)
        elif part:
            print("note: the checkpoint has %s state; pass --%s FILE to export it" % (key, key))
    if dropped:
        print("warning: the fp32 master weights of %d half-precision params were not exported (torch has no master "
              "weights); pass --master-params to export them as the params, in float32" % len(dropped), file=sys.stderr)
    print("exported %s: %d params -> %s%s" % (args.checkpoint, len(model), args.model,
                                             ", %d param states -> %s" % (len(state_by_name), args.optimizer) if opt else ""))


# ---------------------------------------------------------------------------------------
# import

def import_(args):
    model = torch.load(args.model, map_location="cpu")
    if not isinstance(model, dict):
        raise CheckpointError("%s: expected a state dict (name -> tensor)" % args.model)
    optim = torch.load(args.optimizer, map_location="cpu") if args.optimizer else None
    fused = (optim or {}).get("fused_optim", {})
    param_dtypes = fused.get("param_dtypes", {})

    floats = [(n, t) for n, t in model.items() if isinstance(t, torch.Tensor) and t.dtype in (torch.float32, torch.float16, torch.bfloat16)]
    skipped = [n for n in model if n not in dict(floats)]
    enc_taken = set()
    out_tensors = []
    manifest_params = []
    masters = {}
    attached = 0
    for name, t in floats:
        want = args.param_dtype if args.param_dtype != "keep" else param_dtypes.get(name, {v: k for k, v in PARAM_TORCH.items()}[t.dtype])
        value = t.to(PARAM_TORCH[want])
        if want != "float32" and t.dtype == torch.float32 and not args.no_masters:
            masters[name] = t.to(torch.float32).reshape(-1)
        dtype, shape, raw = from_torch(value)
        tname = "param." + name
        enc_taken.add(tname)
        out_tensors.append((tname, dtype, shape, raw))
        manifest_params.append({"name": name, "dtype": want, "shape": shape, "tensor": tname})
    enc = Encoder(enc_taken)
    manifest = {"format": FORMAT, "version": VERSION, "tensors": {}, "params": manifest_params}

    if optim is not None:
        groups = optim["param_groups"]
        if all("param_names" in g for g in groups):
            names = [n for g in groups for n in g["param_names"]]
        elif args.param_names:
            names = json.load(open(args.param_names))
        elif sum(len(g["params"]) for g in groups) == len(floats):
            names = [n for n, _ in floats]
            print("note: no param names in %s; assuming the optimizer's params are model.pt's float tensors in order" % args.optimizer)
        else:
            raise CheckpointError("%s: cannot tell which param each optimizer index is: pass --param-names" % args.optimizer)
        cls = args.optimizer_class or fused.get("class") or ("AdamW" if "eps" in groups[0] else "Lion")
        flat_ids = [i for g in groups for i in g["params"]]
        if len(flat_ids) != len(names):
            raise CheckpointError("%d names for %d optimizer params" % (len(names), len(flat_ids)))
        name_of = dict(zip(flat_ids, names))
        known = {p["name"] for p in manifest_params}
        missing = [n for n in names if n not in known]
        if missing:
            raise CheckpointError("the optimizer's params %s are not float tensors of %s" % (missing[:3], args.model))
        pos = 0
        mgroups = []
        for g in groups:
            d = {k: v for k, v in g.items() if k not in ("params", "param_names")}
            if isinstance(d.get("betas"), tuple):
                d["betas"] = list(d["betas"])
            ids = list(range(pos, pos + len(g["params"])))
            mgroups.append({"dict": enc.encode(d, "optimizer.param_groups.%d" % len(mgroups)), "params": ids,
                            "param_names": [name_of[i] for i in g["params"]]})
            pos += len(g["params"])
        state = {}
        for i, s in optim["state"].items():
            name = name_of[int(i)]
            entry = {}
            for k, v in s.items():
                if k == "step":
                    entry[k] = int(round(float(v)))
                elif isinstance(v, torch.Tensor) and v.is_floating_point():
                    entry[k] = v.to(torch.float32).reshape(-1)
                else:
                    entry[k] = v
            if cls == "Lion":
                entry.pop("step", None)
            if name in masters:
                entry["master"] = masters[name]
                attached += 1
            state[name] = enc.encode(entry, "optimizer.state." + name)
        manifest["optimizer"] = {"class": cls, "dict": enc.encode(fused.get("dict", {}), "optimizer"), "param_groups": mgroups, "state": state}
        if "extra" in fused:
            manifest["extra"] = enc.encode(fused["extra"], "extra")
    for key, path, cls_arg in (("scheduler", args.scheduler, args.scheduler_class), ("scaler", args.scaler, args.scaler_class)):
        if not path:
            continue
        sd = dict(torch.load(path, map_location="cpu"))
        cls = cls_arg or sd.get("_fused_optim_class")
        sd.pop("_fused_optim_class", None)
        if not cls:
            raise CheckpointError("%s: pass --%s-class (e.g. LinearLR): the file does not say which class it is" % (path, key))
        manifest[key] = {"class": cls, "state_dict": enc.encode(sd, key)}

    out_tensors += enc.tensors
    for name, dtype, shape, raw in out_tensors:
        manifest["tensors"][name] = {"dtype": dtype, "shape": shape, "crc32": "%08x" % zlib.crc32(raw)}
    text = json.dumps(manifest, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    metadata = {"format": FORMAT, "format_version": str(VERSION), MANIFEST_KEY: text,
                MANIFEST_CRC_KEY: "%08x" % zlib.crc32(text.encode("utf-8"))}
    write_safetensors(args.out, out_tensors, metadata)
    if skipped:
        print("note: skipped non-float entries of %s (buffers?): %s" % (args.model, ", ".join(skipped[:5])))
    print("imported %s%s -> %s: %d params%s" % (args.model, " + " + args.optimizer if args.optimizer else "", args.out,
                                               len(manifest_params), ", %d with fp32 masters" % attached if attached else ""))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="fused-optim checkpoint -> PyTorch .pt files")
    e.add_argument("checkpoint")
    e.add_argument("--model", required=True)
    e.add_argument("--optimizer")
    e.add_argument("--scheduler")
    e.add_argument("--scaler")
    e.add_argument("--master-params", action="store_true", help="export half params' fp32 masters as float32 params")
    i = sub.add_parser("import", help="PyTorch .pt files -> fused-optim checkpoint")
    i.add_argument("--model", required=True)
    i.add_argument("--optimizer")
    i.add_argument("--scheduler")
    i.add_argument("--scaler")
    i.add_argument("--out", required=True)
    i.add_argument("--param-dtype", default="keep", choices=["keep", "float32", "float16", "bfloat16"])
    i.add_argument("--optimizer-class", choices=["AdamW", "AdamWDL", "Lion"])
    i.add_argument("--scheduler-class")
    i.add_argument("--scaler-class")
    i.add_argument("--param-names")
    i.add_argument("--no-masters", action="store_true", help="no fp32 masters for half params (masterWeights: false)")
    args = ap.parse_args(argv)
    try:
        export(args) if args.command == "export" else import_(args)
    except CheckpointError as err:
        sys.exit("error: %s" % err)


if __name__ == "__main__":
    main()
