#!/usr/bin/env python3
"""Writes the torch.save fixtures in testdata/torch/ and, next to each one,
<name>.expected.json with PyTorch's own view of every tensor (name, dtype,
shape, contiguous little-endian bytes in base64, and float values), which the
Go tests compare against.

Needs PyTorch (Debian: apt-get install -y python3-torch; run with
/usr/bin/python3). Deterministic: re-running rewrites identical files except
for the zip timestamps PyTorch does not set (it writes none).

    /usr/bin/python3 scripts/gen_torch_fixtures.py
"""
import base64
import collections
import io
import json
import math
import os
import sys
import zipfile

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata", "torch")

ST_NAME = {
    torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL", torch.complex64: "C64",
}
INT_VIEW = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def raw_bytes(t):
    """Contiguous little-endian bytes, as safetensors lays them out."""
    t = t.detach().contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    if t.dtype == torch.complex64:
        return t.view(torch.float32).numpy().astype("<f4").tobytes()
    return t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()


def fval(x):
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def expected(entries, values=True):
    """values=False leaves out the float lists (raw bytes only), for the
    bigger fixtures whose tests compare bytes."""
    out = []
    for name, t in entries:
        e = {"name": name, "dtype": ST_NAME[t.dtype], "shape": list(t.shape),
             "raw": base64.b64encode(raw_bytes(t)).decode()}
        if values and t.dtype.is_floating_point:
            e["f32"] = [fval(v) for v in t.detach().to(torch.float32).reshape(-1).tolist()]
        out.append(e)
    return out


def save(name, obj, entries, values=True, **kw):
    path = os.path.join(OUT, name)
    torch.save(obj, path, **kw)
    with open(path + ".expected.json", "w") as f:
        json.dump(expected(entries, values), f, indent=1)
    # Check PyTorch reads back what we claim.
    back = torch.load(path)
    print(f"{name}: {os.path.getsize(path)} bytes, {len(entries)} tensors")
    return back


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(1234)

    # Every float dtype (with specials) and the integer ones.
    specials = torch.tensor([0.0, -0.0, 1.0, -2.5, float("inf"), float("-inf"), 65504.0, 6.0e-8, 1e-40, 3.0e38])
    d = collections.OrderedDict()
    d["f32"] = torch.randn(3, 4, generator=g)
    d["f32_special"] = specials.clone()
    d["f64"] = torch.randn(2, 3, generator=g, dtype=torch.float64)
    d["f16"] = torch.cat([torch.randn(6, generator=g), specials]).to(torch.float16)
    d["bf16"] = torch.cat([torch.randn(6, generator=g), specials]).to(torch.bfloat16)
    d["i64"] = torch.tensor([-(2 ** 62), -1, 0, 1, 2 ** 62], dtype=torch.int64)
    d["i32"] = torch.tensor([[-(2 ** 31), 7], [0, 2 ** 31 - 1]], dtype=torch.int32)
    d["i16"] = torch.tensor([-32768, 5, 32767], dtype=torch.int16)
    d["i8"] = torch.tensor([-128, 0, 127], dtype=torch.int8)
    d["u8"] = torch.tensor([0, 1, 255], dtype=torch.uint8)
    d["bool"] = torch.tensor([True, False, True])
    d["c64"] = torch.tensor([1 + 2j, -3.5 - 0.25j], dtype=torch.complex64)
    d["scalar"] = torch.tensor(3.25)
    d["empty"] = torch.zeros(0, 3)
    save("dtypes.pt", d, list(d.items()))

    # Views: storage offsets, strides, broadcast; each a view of one storage.
    base = torch.arange(60, dtype=torch.float32).reshape(5, 12)
    v = collections.OrderedDict()
    v["base"] = base
    v["row"] = base[2]
    v["col"] = base[:, 3]
    v["slice"] = base[1:4, 2:9:2]
    v["transposed"] = base.t()
    v["scalar_view"] = base[1, 1]
    v["expanded"] = torch.arange(4, dtype=torch.float32)[None, :].expand(3, 4)
    v["bf16_t"] = torch.arange(12, dtype=torch.bfloat16).reshape(3, 4).t()
    v["permuted"] = torch.arange(24, dtype=torch.float16).reshape(2, 3, 4).permute(2, 0, 1)
    save("views.pt", v, list(v.items()))

    # Tied weights: one tensor under two names, and a view of it.
    w = torch.randn(4, 3, generator=g)
    t = collections.OrderedDict()
    t["embed.weight"] = w
    t["lm_head.weight"] = w
    t["tail"] = w[2:]
    t["other"] = w.clone() * 2
    save("tied.pt", t, list(t.items()))

    # Nested: a wrapper key, non-tensor entries; and a deep mix of dicts/lists.
    sd = collections.OrderedDict([("a.weight", torch.randn(2, 2, generator=g)), ("a.bias", torch.randn(2, generator=g))])
    save("nested_wrapped.pt", {"state_dict": sd, "epoch": 7, "name": "run-3", "lr": 0.01}, list(sd.items()))
    deep_w = torch.randn(2, 3, generator=g)
    l0, l1, e = torch.randn(3, generator=g), torch.randn(1, generator=g), torch.randn(2, generator=g)
    deep = {"model": {"encoder": {"w": deep_w}, "layers": [l0, l1]}, "ema": {"w": e}, "step": 10}
    save("nested_deep.pt", deep, [("model.encoder.w", deep_w), ("model.layers.0", l0), ("model.layers.1", l1), ("ema.w", e)])

    # Parameters and a real module state dict (OrderedDict with _metadata).
    torch.manual_seed(5)
    m = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    msd = m.state_dict()
    msd["extra_param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    save("params.pt", msd, list(msd.items()))
    save("params_proto4.pt", msd, list(msd.items()), pickle_protocol=4)

    # Legacy (pre-1.6) format, with a view and a half tensor.
    leg = collections.OrderedDict()
    lb = torch.randn(3, 4, generator=g)
    leg["w"] = lb
    leg["w_t"] = lb.t()
    leg["h"] = torch.randn(5, generator=g).to(torch.float16)
    leg["n"] = torch.tensor([1, 2, 3], dtype=torch.int64)
    save("legacy.pt", leg, list(leg.items()), _use_new_zipfile_serialization=False)

    # Big-endian: the zip of views.pt re-packed with a "big" byteorder record
    # and every storage byte-swapped (PyTorch 1.13 cannot write one itself).
    write_big_endian(os.path.join(OUT, "views.pt"), os.path.join(OUT, "bigendian.pt"))
    with open(os.path.join(OUT, "bigendian.pt.expected.json"), "w") as f:
        json.dump(expected(list(v.items())), f, indent=1)

    # Legacy and big-endian, with a storage view (view_metadata), written by
    # hand in the legacy layout as a big-endian machine would (PyTorch 1.13
    # writes native order only, and cannot load this file on x86 either).
    write_legacy_big_endian(os.path.join(OUT, "legacy_bigendian.pt"))

    save_model()
    save_hf_sharded()
    save_checkpoint()

    # Hostile: a global that is not on the allow-list, and a pickled module.
    save_raw("evil_global.pt", {"w": torch.zeros(2), "x": Evil()})
    save_raw("whole_module.pt", torch.nn.Linear(2, 2))


def save_model():
    """model.pt: a small Llama-shaped state dict whose matrices are large
    enough to be coded (the other fixtures are all stored exactly), for the
    compress/decompress layout matrix. No expected values: the tests compare
    the decompressed file with this one through their own reader."""
    g = torch.Generator().manual_seed(77)
    m = collections.OrderedDict()
    m["model.embed_tokens.weight"] = torch.randn(64, 32, generator=g) * 0.02
    m["model.layers.0.self_attn.q_proj.weight"] = torch.randn(32, 32, generator=g) * 0.02
    m["model.layers.0.input_layernorm.weight"] = 1 + torch.randn(32, generator=g) * 0.02
    m["model.layers.0.mlp.up_proj.weight"] = torch.randn(48, 32, generator=g) * 0.02
    m["model.layers.0.small.weight"] = torch.randn(8, 8, generator=g) * 0.02
    m["model.position_ids"] = torch.arange(16, dtype=torch.int64) * 7
    m["lm_head.weight"] = torch.randn(64, 32, generator=g) * 0.02
    path = os.path.join(OUT, "model.pt")
    torch.save(m, path)
    print(f"model.pt: {os.path.getsize(path)} bytes, {len(m)} tensors (no expected values)")


def save_hf_sharded():
    """hf-sharded/: a Hugging Face folder as save_pretrained writes it for a
    PyTorch model too large for one file: pytorch_model-0000I-of-00002.bin
    shards, pytorch_model.bin.index.json, config.json and tokenizer files.
    lm_head.weight is tied to model.embed_tokens.weight but lives in the
    other shard, so it is saved as a separate, byte-identical copy.
    hf-sharded.expected.json lists every tensor in shard order."""
    g = torch.Generator().manual_seed(99)
    d = os.path.join(OUT, "hf-sharded")
    os.makedirs(d, exist_ok=True)
    embed = torch.randn(64, 32, generator=g) * 0.02
    s1 = collections.OrderedDict()
    s1["model.embed_tokens.weight"] = embed
    s1["model.layers.0.self_attn.q_proj.weight"] = torch.randn(32, 32, generator=g) * 0.02
    s1["model.layers.0.input_layernorm.weight"] = 1 + torch.randn(32, generator=g) * 0.02
    s2 = collections.OrderedDict()
    s2["model.layers.0.mlp.up_proj.weight"] = torch.randn(48, 32, generator=g) * 0.02
    s2["model.norm.weight"] = 1 + torch.randn(32, generator=g) * 0.02
    s2["lm_head.weight"] = embed.clone()
    weight_map = {}
    entries = []
    for i, sd in enumerate((s1, s2)):
        name = f"pytorch_model-{i + 1:05d}-of-00002.bin"
        torch.save(sd, os.path.join(d, name))
        for k, v in sd.items():
            weight_map[k] = name
            entries.append((k, v))
    total = sum(v.numel() * v.element_size() for _, v in entries)
    with open(os.path.join(d, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
        f.write("\n")
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
                   "intermediate_size": 48, "num_hidden_layers": 1, "vocab_size": 64,
                   "tie_word_embeddings": True, "torch_dtype": "float32"}, f, indent=2)
        f.write("\n")
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>", "model_max_length": 512,
                   "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"}, f, indent=2)
        f.write("\n")
    with open(os.path.join(d, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>"}, f, indent=2)
        f.write("\n")
    with open(os.path.join(OUT, "hf-sharded.expected.json"), "w") as f:
        json.dump(expected(entries, values=False), f, indent=1)
    print(f"hf-sharded/: 2 shards, {len(entries)} tensors")


def save_checkpoint():
    """checkpoint.pt: a training checkpoint as scripts save it: the model's
    state dict under "model" (lm_head tied to the embedding: one storage,
    saved once), beside an optimizer's settings, the epoch and a None; the
    non-tensor entries are what compress warns about."""
    g = torch.Generator().manual_seed(7)
    embed = torch.randn(64, 32, generator=g) * 0.02
    sd = collections.OrderedDict()
    sd["model.embed_tokens.weight"] = embed
    sd["model.layers.0.mlp.up_proj.weight"] = torch.randn(48, 32, generator=g) * 0.02
    sd["model.norm.weight"] = 1 + torch.randn(32, generator=g) * 0.02
    sd["lm_head.weight"] = embed
    ck = {"model": sd, "optimizer": {"param_groups": [{"lr": 0.001, "betas": (0.9, 0.999)}]}, "epoch": 3, "scheduler": None}
    save("checkpoint.pt", ck, list(sd.items()), values=False)


class Evil:
    """Pickles as a call to os.system; never unpickled by these scripts."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def save_raw(name, obj):
    path = os.path.join(OUT, name)
    torch.save(obj, path)
    print(f"{name}: {os.path.getsize(path)} bytes (hostile, no expected values)")


class _Storage:
    def __init__(self, typ, key, numel, view=None):
        self.typ, self.key, self.numel, self.view = typ, key, numel, view


class _Rebuild:
    """Pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, {})."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


def write_legacy_big_endian(path):
    import pickle

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                return ("storage", obj.typ, obj.key, "cpu", obj.numel, obj.view)
            return None

    f32 = torch.arange(10, dtype=torch.float32) * 0.5 - 1
    f16 = torch.tensor([1.5, -2.0, 65504.0, 6.0e-5], dtype=torch.float16)
    root = _Storage(torch.FloatStorage, "1000", 10)
    # A storage view of elements [4, 10) of the same root storage.
    view = _Storage(torch.FloatStorage, "1000", 10, ("1000v", 4, 6))
    half = _Storage(torch.HalfStorage, "2000", 4)
    sd = collections.OrderedDict()
    sd["a"] = _Rebuild(root, 1, [3, 2], [2, 1])   # f32[1:7].view(3, 2)
    sd["b"] = _Rebuild(view, 0, [2, 3], [1, 2])   # f32[4:10] as a (2, 3) transposed view
    sd["h"] = _Rebuild(half, 0, [4], [1])
    want = [("a", f32[1:7].reshape(3, 2)), ("b", f32[4:10].reshape(3, 2).t()), ("h", f16)]
    buf = io.BytesIO()
    for obj in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": False,
                                               "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(obj, buf, protocol=2)
    P(buf, protocol=2).dump(sd)
    pickle.dump(["1000", "2000"], buf, protocol=2)
    for t in (f32, f16):
        buf.write(len(t).to_bytes(8, "big"))
        buf.write(t.numpy().astype(t.numpy().dtype.newbyteorder(">")).tobytes())
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    with open(path + ".expected.json", "w") as f:
        json.dump(expected(want), f, indent=1)
    print(f"legacy_bigendian.pt: {len(buf.getvalue())} bytes")


def write_big_endian(src, dst):
    sizes = {}  # storage key -> element size, from the pickle
    zin = zipfile.ZipFile(src)
    prefix = zin.namelist()[0].split("/")[0]
    data_pkl = zin.read(prefix + "/data.pkl")

    class U(torch.serialization.pickle.Unpickler):
        def find_class(self, mod, name):
            if name.endswith("Storage"):
                return name
            if name == "_rebuild_tensor_v2":
                return lambda *args: None  # only the storage keys matter here
            return super().find_class(mod, name)

        def persistent_load(self, pid):
            _, typ, key, _, _ = pid
            sizes[key] = {"FloatStorage": 4, "BFloat16Storage": 2, "HalfStorage": 2}[typ]
            return None

    U(io.BytesIO(data_pkl)).load()
    assert len(sizes) == 4, sizes
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            b = zin.read(info)
            key = info.filename[len(prefix) + len("/data/"):] if "/data/" in info.filename else None
            if key in sizes:
                es = sizes[key]
                b = b"".join(b[i:i + es][::-1] for i in range(0, len(b), es))
            zout.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)), b)
        zout.writestr(zipfile.ZipInfo(prefix + "/byteorder", date_time=(1980, 1, 1, 0, 0, 0)), b"big")
    print(f"bigendian.pt: {os.path.getsize(dst)} bytes")


if __name__ == "__main__":
    sys.exit(main())
