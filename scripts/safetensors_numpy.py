#!/usr/bin/env python3
"""An independent safetensors writer and reader in plain Python + numpy
(Debian: python3-numpy), used to cross-check the Go package.

  safetensors_numpy.py write DIR
      writes DIR/numpy_written.safetensors and its .expected.json (name,
      dtype, shape, raw bytes in base64, float values) for every dtype.
  safetensors_numpy.py check FILE EXPECTED_JSON
      reads FILE without any Go code and compares every tensor, the
      metadata and the header layout with EXPECTED_JSON; prints OK or fails.

As a module: read(path) returns (metadata, [(name, dtype, shape, raw)]) in
data order, after the same layout checks (scripts/interop.py uses it).
"""
import base64
import json
import math
import struct
import sys

import numpy as np

BITS = {"BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8,
        "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16,
        "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64}
NP = {"F32": "<f4", "F64": "<f8", "F16": "<f2"}


def floats(dtype, raw):
    if dtype in NP:
        return np.frombuffer(raw, NP[dtype]).astype(np.float32)
    if dtype == "BF16":
        return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
    return None


def enc(v):
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def write(out_dir):
    rng = np.random.default_rng(7)
    tensors = []  # (name, dtype, shape, raw) in data order
    for dtype, bits in BITS.items():
        shape = [2, 4] if bits >= 8 else ([2, 4] if bits == 4 else [4])
        n = int(np.prod(shape))
        nbytes = n * bits // 8
        if dtype in NP:
            raw = (rng.standard_normal(n) * 3).astype(NP[dtype]).tobytes()
        elif dtype == "BF16":
            raw = ((rng.standard_normal(n).astype(np.float32).view(np.uint32) >> 16).astype("<u2")).tobytes()
        elif dtype == "BOOL":
            raw = rng.integers(0, 2, n, dtype=np.uint8).tobytes()
        else:
            raw = rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes()
        tensors.append(("t_" + dtype.lower(), dtype, shape, raw))
    tensors.append(("scalar", "F32", [], np.array([2.5], "<f4").tobytes()))
    tensors.append(("empty", "F32", [0, 5], b""))
    header = {}
    off = 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    header["__metadata__"] = {"format": "pt", "writer": "numpy"}
    # Keys sorted by name: the data order differs from the key order.
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    path = out_dir + "/numpy_written.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(t[3] for t in tensors))
    exp = {"metadata": header["__metadata__"], "tensors": []}
    for name, dtype, shape, raw in tensors:
        e = {"name": name, "dtype": dtype, "shape": shape, "raw": base64.b64encode(raw).decode()}
        fl = floats(dtype, raw)
        if fl is not None:
            e["f32"] = [enc(x) for x in fl]
        exp["tensors"].append(e)
    with open(path + ".expected.json", "w") as f:
        json.dump(exp, f, indent=1)
    print("wrote", path)


def no_dups(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise SystemExit(f"duplicate key {k!r}")
        d[k] = v
    return d


def read(path):
    """Parses a safetensors file strictly: returns (metadata, tensors in data
    order as (name, dtype, shape, raw bytes))."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    hdr = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=no_dups)
    body = data[8 + n:]
    meta = hdr.pop("__metadata__", None)
    order = sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"])
    pos, out = 0, []
    for name, info in order:
        b, e = info["data_offsets"]
        assert b == pos, f"{path}: {name}: starts at {b}, previous ended at {pos}"
        nel = int(np.prod(info["shape"], dtype=np.int64)) if info["shape"] else 1
        assert (e - b) * 8 == nel * BITS[info["dtype"]], f"{path}: {name}: wrong byte length"
        pos = e
        out.append((name, info["dtype"], list(info["shape"]), body[b:e]))
    assert pos == len(body), f"{path}: data ends at {pos}, file has {len(body)}"
    return meta, out


def check(path, exp_path):
    data = open(path, "rb").read()
    exp = json.load(open(exp_path))
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0, f"header length {n} is not a multiple of 8"
    hdr = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=no_dups)
    body = data[8 + n:]
    meta = hdr.pop("__metadata__", None)
    assert meta == exp.get("metadata"), f"metadata {meta} != {exp.get('metadata')}"
    order = sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"])
    pos = 0
    for name, info in order:
        b, e = info["data_offsets"]
        assert b == pos, f"{name}: starts at {b}, previous ended at {pos}"
        nel = int(np.prod(info["shape"], dtype=np.int64)) if info["shape"] else 1
        assert (e - b) * 8 == nel * BITS[info["dtype"]], f"{name}: wrong byte length"
        pos = e
    assert pos == len(body), f"data ends at {pos}, file has {len(body)}"
    want = exp["tensors"]
    assert [t["name"] for t in want] == [k for k, _ in order], "tensor order differs"
    for t in want:
        info = hdr[t["name"]]
        assert info["dtype"] == t["dtype"] and info["shape"] == t["shape"], t["name"]
        b, e = info["data_offsets"]
        raw = body[b:e]
        assert raw == base64.b64decode(t["raw"]), f"{t['name']}: bytes differ"
        if "f32" in t:
            got = floats(t["dtype"], raw)
            for g, w in zip(got, t["f32"]):
                w = float(w)
                assert (math.isnan(g) and math.isnan(w)) or np.float32(w) == g, f"{t['name']}: {g} != {w}"
    print(f"OK {path}: {len(want)} tensors, metadata {meta}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "write":
        write(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
