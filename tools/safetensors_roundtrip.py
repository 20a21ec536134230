#!/usr/bin/env python3
"""safetensors_roundtrip.py -- cross-checks qkv's safetensors reader/writer against Hugging Face's
`safetensors` package (the reference implementation), with numpy.

    write FILE          write the round-trip spec with Python (qkv's test reads and checks it)
    check FILE          read FILE (written by qkv from the same spec) and check every byte
    inspect QKV DIR     write the spec into DIR, run `QKV inspect [--json]` on it and check that
                        it lists the same tensors and metadata as Python sees
    fixtures DIR        write the committed valid fixtures (tests/fixtures/safetensors/valid)

The spec (SPEC, METADATA, element_bytes) is mirrored in tests/test_safetensors_python.c; change
both together. Values are chosen to be exact in every dtype (F16, BF16 included); the F8 dtypes
are checked as raw bytes. Exit code 0 ok, 1 mismatch, 2 usage.
"""
import ctypes
import json
import os
import struct
import subprocess
import sys

import numpy as np
import safetensors
from safetensors import deserialize, safe_open

# safetensors dtype -> (element size, struct format or None, name in the Python binding)
DTYPES = {
    "BOOL": (1, "B", "bool"),
    "U8": (1, "B", "uint8"),
    "I8": (1, "b", "int8"),
    "I16": (2, "h", "int16"),
    "U16": (2, "H", "uint16"),
    "F16": (2, "e", "float16"),
    "BF16": (2, None, "bfloat16"),
    "I32": (4, "i", "int32"),
    "U32": (4, "I", "uint32"),
    "F32": (4, "f", "float32"),
    "F64": (8, "d", "float64"),
    "I64": (8, "q", "int64"),
    "U64": (8, "Q", "uint64"),
    "F8_E4M3": (1, None, "float8_e4m3fn"),
    "F8_E5M2": (1, None, "float8_e5m2"),
}
NUMPY = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "I16": np.int16, "U16": np.uint16,
         "F16": np.float16, "I32": np.int32, "U32": np.uint32, "F32": np.float32,
         "F64": np.float64, "I64": np.int64, "U64": np.uint64}

SPEC = [("t_" + d.lower(), d, [2, 3]) for d in DTYPES] + [
    ("scalar", "F32", []),
    ("empty", "F32", [0, 3]),
    ("empty_i8", "I8", [3, 0, 2]),
    ("big.weight", "F32", [33, 17]),
    ("unicod\u00e9.\u540d\u524d", "F16", [5]),
]
METADATA = {
    "format": "pt",
    "producer": "qkv round trip",
    "unicode": "h\u00e9llo \u2713 \u540d\u524d",
    "quotes": "a\"b\\c\nd\te",
    "empty": "",
}


def value(dtype, i):
    """Element i of a tensor of this dtype (an int for the F8 dtypes: the raw byte)."""
    if dtype in ("F16", "BF16", "F32", "F64"):
        return (i % 13) - 6 + 0.5 * (i % 2)
    if dtype in ("I8", "I16", "I32"):
        return (i % 13) - 6
    if dtype == "I64":
        return ((i % 13) - 6) * 2**40 + i
    if dtype in ("U8", "U16", "U32"):
        return i % 13
    if dtype == "U64":
        return (i % 13) * 2**50 + i
    if dtype == "BOOL":
        return 1 if i % 3 == 0 else 0
    return (i * 37 + 11) & 0xFF  # F8_E4M3, F8_E5M2


def element_bytes(dtype, i):
    size, fmt, _ = DTYPES[dtype]
    v = value(dtype, i)
    if dtype == "BF16":
        return struct.pack("<f", v)[2:4]  # exact: the values need at most 4 mantissa bits
    if fmt is None:
        return bytes([v])
    return struct.pack("<" + fmt, v)


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def tensor_bytes(dtype, shape):
    return b"".join(element_bytes(dtype, i) for i in range(numel(shape)))


def serialize_spec(path, spec=SPEC, metadata=METADATA):
    """Writes with the binding's low-level serializer, which takes every dtype as raw bytes."""
    keep = []
    tensors = {}
    for name, dtype, shape in spec:
        data = tensor_bytes(dtype, shape)
        lib = DTYPES[dtype][2]
        if hasattr(safetensors, "TensorSpec"):  # safetensors >= 0.7
            buf = ctypes.create_string_buffer(data, max(1, len(data)))
            keep.append(buf)
            tensors[name] = safetensors.TensorSpec(dtype=lib, shape=list(shape),
                                                   data_ptr=ctypes.addressof(buf),
                                                   data_len=len(data))
        else:
            tensors[name] = {"dtype": lib, "shape": list(shape), "data": data}
    safetensors.serialize_file(tensors, path, metadata=metadata)


def header_of(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def check(path):
    """Reads a qkv-written file with the reference implementation and checks everything."""
    errors = []
    with open(path, "rb") as f:
        raw = f.read()
    found = {name: info for name, info in deserialize(raw)}
    want = {name: (dtype, shape) for name, dtype, shape in SPEC}
    if set(found) != set(want):
        errors.append("names differ: %s vs %s" % (sorted(found), sorted(want)))
    for name, (dtype, shape) in want.items():
        info = found.get(name)
        if info is None:
            continue
        if info["dtype"] != dtype or list(info["shape"]) != shape:
            errors.append("%s: %s %s, expected %s %s" % (name, info["dtype"], info["shape"],
                                                         dtype, shape))
        if bytes(info["data"]) != tensor_bytes(dtype, shape):
            errors.append("%s: data differs" % name)
    with safe_open(path, framework="np") as f:
        if f.metadata() != METADATA:
            errors.append("metadata %r, expected %r" % (f.metadata(), METADATA))
        for name, dtype, shape in SPEC:  # numeric check through numpy where it has the dtype
            if dtype not in NUMPY:
                continue
            arr = f.get_tensor(name)
            exp = np.array([value(dtype, i) for i in range(numel(shape))],
                           dtype=NUMPY[dtype]).reshape(shape)
            if arr.dtype != exp.dtype or arr.shape != exp.shape or not np.array_equal(arr, exp):
                errors.append("%s: numpy values differ" % name)
    # Layout: qkv writes in the given order, header padded so the data starts at a multiple of 8.
    n = struct.unpack("<Q", raw[:8])[0]
    if (8 + n) % 8:
        errors.append("data section starts at %d, not a multiple of 8" % (8 + n))
    hdr = header_of(path)
    order = [k for k in hdr if k != "__metadata__"]
    if order != [name for name, _, _ in SPEC]:
        errors.append("header order %s differs from the given order" % order)
    for e in errors:
        print("MISMATCH:", e, file=sys.stderr)
    print("check %s: %d tensors, %d problems" % (path, len(found), len(errors)))
    return 1 if errors else 0


def inspect(qkv, tmpdir):
    errors = []
    path = os.path.join(tmpdir, "py_inspect.safetensors")
    serialize_spec(path)
    hdr = header_of(path)
    with safe_open(path, framework="np") as f:
        meta = f.metadata()
        names = set(f.keys())
    res = subprocess.run([qkv, "inspect", "--json", path], capture_output=True)
    if res.returncode != 0:
        print("qkv inspect --json failed (%d): %s" % (res.returncode, res.stderr.decode()),
              file=sys.stderr)
        return 1
    out = json.loads(res.stdout.decode("utf-8"))
    got = out["tensors"]
    if {t["name"] for t in got} != names:
        errors.append("names %s vs %s" % (sorted(t["name"] for t in got), sorted(names)))
    offsets = [t["offset"] for t in got]
    if offsets != sorted(offsets):
        errors.append("tensors not in file order")
    for t in got:
        h = hdr.get(t["name"])
        if h is None:
            continue
        b, e = h["data_offsets"]
        if (t["dtype"], t["shape"], t["bytes"], t["offset"]) != (h["dtype"], h["shape"], e - b, b):
            errors.append("%s: %s vs header %s" % (t["name"], t, h))
    if out["metadata"] != meta:
        errors.append("metadata %r vs %r" % (out["metadata"], meta))
    if out["tensor_count"] != len(names):
        errors.append("tensor_count %d" % out["tensor_count"])
    if out["parameter_count"] != sum(numel(s) for _, _, s in SPEC):
        errors.append("parameter_count %d" % out["parameter_count"])
    if out["bytes"] != sum(numel(s) * DTYPES[d][0] for _, d, s in SPEC):
        errors.append("bytes %d" % out["bytes"])
    if out["file"] != path:
        errors.append("file %r" % out["file"])
    # The table lists every tensor and every metadata key too.
    res = subprocess.run([qkv, "inspect", path], capture_output=True)
    text = res.stdout.decode("utf-8")
    if res.returncode != 0:
        errors.append("qkv inspect exited %d" % res.returncode)
    for name in names:
        if name not in text:
            errors.append("table lacks %r" % name)
    for k in meta:
        if ("  %s = " % k) not in text:
            errors.append("table lacks metadata key %r" % k)
    for e in errors:
        print("MISMATCH:", e, file=sys.stderr)
    print("inspect: %d tensors, %d problems" % (len(got), len(errors)))
    return 1 if errors else 0


def fixtures(outdir):
    """The committed valid fixtures, written by the reference implementation."""
    from safetensors.numpy import save_file
    os.makedirs(outdir, exist_ok=True)
    serialize_spec(os.path.join(outdir, "all_dtypes.safetensors"))
    save_file({}, os.path.join(outdir, "no_tensors.safetensors"))
    save_file({}, os.path.join(outdir, "metadata_only.safetensors"),
              metadata={"format": "pt", "note": "no tensors"})
    rng = np.random.default_rng(1234)
    model = {
        "embeddings.word_embeddings.weight": rng.standard_normal((30, 8)).astype(np.float32),
        "embeddings.position_embeddings.weight": rng.standard_normal((16, 8)).astype(np.float32),
        "embeddings.LayerNorm.weight": np.ones(8, dtype=np.float32),
        "embeddings.LayerNorm.bias": np.zeros(8, dtype=np.float32),
        "encoder.layer.0.attention.self.query.weight":
            rng.standard_normal((8, 8)).astype(np.float16),
        "encoder.layer.0.attention.self.query.bias": np.zeros(8, dtype=np.float16),
        "pooler.dense.weight": rng.standard_normal((8, 8)).astype(np.float64),
        "position_ids": np.arange(16, dtype=np.int64).reshape(1, 16),
    }
    save_file(model, os.path.join(outdir, "tiny_model.safetensors"), metadata={"format": "pt"})
    # Zero-size and 0-d tensors
    save_file({"scalar": np.array(3.5, dtype=np.float32),
               "empty": np.zeros((0, 4), dtype=np.float32),
               "empty3": np.zeros((2, 0, 3), dtype=np.int32),
               "one": np.array([7], dtype=np.uint8)},
              os.path.join(outdir, "zero_size.safetensors"))
    return 0


def main(argv):
    if len(argv) == 3 and argv[1] == "write":
        serialize_spec(argv[2])
        return 0
    if len(argv) == 3 and argv[1] == "check":
        return check(argv[2])
    if len(argv) == 4 and argv[1] == "inspect":
        return inspect(argv[2], argv[3])
    if len(argv) == 3 and argv[1] == "fixtures":
        return fixtures(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
