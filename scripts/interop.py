#!/usr/bin/env python3
"""Proof that a decompressed model folder loads outside seedlm: reads the
folder seedlm decompress wrote with an independent reader (the plain
Python + numpy safetensors reader in safetensors_numpy.py), hands every
tensor to PyTorch, and compares it with the original folder read by its own
loader (that reader again for safetensors, torch.load for PyTorch files):

  * the same tensor names, shapes and dtypes;
  * tensors stored exactly are byte-identical; coded ones are within a
    relative weight error of MAX_REL (weight error, not output KL);
  * tied tensors (the same bytes in the original) are still identical;
  * config.json and every other sidecar file present in both folders are
    byte-identical, and config.json is there;
  * a sharded output's index maps every tensor to the shard that holds it,
    and its total_size is the tensors' bytes.

Needs PyTorch and numpy from Debian (apt-get install -y python3-torch);
run with /usr/bin/python3. `make interop` runs it on the real models.

    interop.py ORIGINAL_FOLDER DECOMPRESSED_FOLDER [MAX_REL]
"""
import hashlib
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_numpy as stn  # noqa: E402

TORCH_DT = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
            torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
            torch.bool: "BOOL"}
NP_DT = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32,
         "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
WEIGHTS = (".safetensors", ".bin", ".pt", ".pth")


def to_torch(dtype, shape, raw):
    """A tensor PyTorch holds, from safetensors bytes."""
    if dtype == "BF16":
        t = torch.from_numpy(np.frombuffer(raw, "<i2").copy()).view(torch.bfloat16)
    else:
        t = torch.from_numpy(np.frombuffer(raw, np.dtype(NP_DT[dtype]).newbyteorder("<")).copy())
    return t.reshape(shape)


def raw_of(t):
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()


def read_safetensors_folder(folder):
    """name -> (dtype, shape, raw, shard); checks an index if there is one."""
    names = sorted(os.listdir(folder))
    idx = [n for n in names if n.endswith(".safetensors.index.json")]
    files = [n for n in names if n.endswith(".safetensors")]
    out = {}
    for f in files:
        _, ts = stn.read(os.path.join(folder, f))
        for name, dt, shape, raw in ts:
            assert name not in out, f"{name} is in two shards"
            out[name] = (dt, shape, raw, f)
    if idx:
        assert len(idx) == 1, f"{folder}: {len(idx)} index files"
        ix = json.load(open(os.path.join(folder, idx[0])))
        wm = ix["weight_map"]
        assert set(wm) == set(out), f"{idx[0]}: weight_map names differ from the shards' tensors"
        for name, shard in wm.items():
            assert out[name][3] == shard, f"{idx[0]}: {name} mapped to {shard}, it is in {out[name][3]}"
        total = sum(len(v[2]) for v in out.values())
        assert ix["metadata"]["total_size"] == total, f"{idx[0]}: total_size {ix['metadata']['total_size']}, tensors hold {total}"
    return out


def read_original(folder):
    names = sorted(os.listdir(folder))
    if any(n.endswith(".safetensors") for n in names):
        return read_safetensors_folder(folder)
    out = {}
    tidx = [n for n in names if n.endswith(".bin.index.json")]
    shards = sorted(set(json.load(open(os.path.join(folder, tidx[0])))["weight_map"].values())) if tidx else ["pytorch_model.bin"]
    for f in shards:
        sd = torch.load(os.path.join(folder, f), map_location="cpu")
        if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
            sd = sd["model"]
        for name, t in sd.items():
            if isinstance(t, torch.Tensor):
                out[name] = (TORCH_DT[t.dtype], list(t.shape), raw_of(t), f)
    return out


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    orig_dir, out_dir = sys.argv[1], sys.argv[2]
    max_rel = float(sys.argv[3]) if len(sys.argv) == 4 else 0.3
    orig = read_original(orig_dir)
    out = read_safetensors_folder(out_dir)
    assert set(orig) == set(out), f"tensor names differ: only in original {sorted(set(orig) - set(out))}, only in output {sorted(set(out) - set(orig))}"
    exact = coded = 0
    worst = 0.0
    for name, (dt, shape, raw, _) in orig.items():
        odt, oshape, oraw, _ = out[name]
        assert (odt, oshape) == (dt, shape), f"{name}: {odt} {oshape}, original {dt} {shape}"
        t = to_torch(odt, oshape, oraw)  # PyTorch holds every tensor
        assert list(t.shape) == shape
        if oraw == raw:
            exact += 1
            continue
        assert dt in ("F32", "F16", "BF16", "F64"), f"{name}: {dt} tensor differs"
        a = to_torch(dt, shape, raw).double()
        rel = float(torch.linalg.vector_norm(t.double() - a) / torch.linalg.vector_norm(a))
        assert rel <= max_rel, f"{name}: relative weight error {rel:.4f} > {max_rel}"
        worst = max(worst, rel)
        coded += 1
    # Tensors identical in the original are identical in the output.
    by_hash = {}
    for name, (_, _, raw, _) in orig.items():
        by_hash.setdefault(hashlib.sha256(raw).hexdigest(), []).append(name)
    tied = [g for g in by_hash.values() if len(g) > 1]
    for g in tied:
        assert len({out[n][2] for n in g}) == 1, f"tied tensors {g} differ in the output"
    # Sidecars.
    side = [n for n in sorted(os.listdir(out_dir)) if not n.endswith(WEIGHTS) and not n.endswith(".index.json")]
    assert "config.json" in side, f"{out_dir} has no config.json"
    for n in side:
        a = open(os.path.join(orig_dir, n), "rb").read()
        b = open(os.path.join(out_dir, n), "rb").read()
        assert a == b, f"{n} differs from the original"
    print(f"OK {out_dir}: {len(out)} tensors (names, shapes, dtypes match {orig_dir}); {exact} byte-identical, "
          f"{coded} coded (worst relative weight error {worst:.4f} ≤ {max_rel}); tied groups kept: {tied}; "
          f"sidecars byte-identical: {', '.join(side)}")


if __name__ == "__main__":
    main()
