#!/usr/bin/env python3
"""gen_safetensors_fixtures.py -- writes tests/fixtures/safetensors/{malformed,valid}/.

    python3 tools/gen_safetensors_fixtures.py [OUTDIR]   (default tests/fixtures/safetensors)

malformed/: hostile files built byte by byte (no dependency), and MANIFEST.tsv with one line per
file: name, the qkv_status qkv must return, a phrase its message must contain, and what the
reference implementation (Hugging Face safetensors) says, when the package is installed
("rejects", or "accepts" where qkv is deliberately stricter). test_safetensors_malformed reads
the manifest.

valid/: files written by the reference implementation (tools/safetensors_roundtrip.py fixtures)
plus hand-made edge cases the reference accepts (checked here when it is installed). The
reference orders __metadata__ keys by a Rust HashMap, so two runs may differ in header bytes
(not in content).
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

try:
    import safetensors  # noqa: F401
    from safetensors import deserialize
    HAVE_REF = True
except ImportError:
    HAVE_REF = False


def header_bytes(obj, pad=True, raw=None):
    text = raw if raw is not None else json.dumps(obj, separators=(",", ":")).encode("utf-8")
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    return text


def st_file(obj=None, data=b"", raw=None, pad=True, n=None):
    """8-byte length + header + data; n overrides the length field."""
    h = header_bytes(obj, pad, raw)
    return struct.pack("<Q", len(h) if n is None else n) + h + data


def entry(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}


# A small valid file the malformed ones are derived from.
BASE_HDR = {
    "__metadata__": {"format": "pt"},
    "a": entry("F32", [2, 2], 0, 16),
    "b": entry("I8", [4], 16, 20),
}
BASE_DATA = bytes(range(20))
BASE = st_file(BASE_HDR, BASE_DATA)
BASE_N = struct.unpack("<Q", BASE[:8])[0]


def with_tensor(name, e, data=BASE_DATA, meta=True):
    hdr = {"__metadata__": {"format": "pt"}} if meta else {}
    hdr.update({"a": entry("F32", [2, 2], 0, 16), name: e} if name != "a" else {"a": e})
    return st_file(hdr, data)


def cases():
    """(file name, bytes, expected status, phrase in the message)."""
    F = "QKV_ERR_FORMAT"
    c = []
    add = lambda name, data, word, status=F: c.append((name + ".safetensors", data, status, word))
    # --- the 8-byte length prefix
    add("empty_file", b"", "too short")
    add("seven_bytes", b"\x10\0\0\0\0\0\0", "too short")
    add("header_len_huge", struct.pack("<Q", 2**64 - 1) + b"{}", "over the limit")
    add("header_len_over_cap", struct.pack("<Q", 100_000_001) + b"{}" + b" " * 6, "over the limit")
    add("header_len_past_end", struct.pack("<Q", 1000) + b"{}", "past the end of the file")
    add("header_len_zero", struct.pack("<Q", 0) + BASE_DATA, "not valid JSON")
    # --- truncations of a valid file at many points
    for cut in (3, 8, 9, 8 + BASE_N // 2, 8 + BASE_N - 1):
        add("truncated_at_%d" % cut, BASE[:cut], "too short" if cut < 8 else "past the end of the file")
    for cut in (8 + BASE_N, 8 + BASE_N + 1, 8 + BASE_N + 16, len(BASE) - 1):
        add("truncated_at_%d" % cut, BASE[:cut], "past the end of the data section")
    # --- layout of the data section
    add("trailing_bytes_after_data", BASE + b"\0\0\0", "trailing bytes")
    add("no_tensors_but_data", st_file({}, b"\0" * 8), "trailing bytes")
    add("data_shorter_than_declared",
        st_file({"a": entry("F32", [2, 2], 0, 16), "b": entry("F32", [4], 16, 32)}, BASE_DATA),
        "past the end of the data section")
    add("end_far_past_file", with_tensor("b", entry("I8", [1000], 16, 1016)),
        "past the end of the data section")
    add("overlapping_offsets", with_tensor("b", entry("I8", [4], 12, 16), BASE_DATA[:16]), "overlap")
    add("same_offsets", with_tensor("b", entry("F32", [2, 2], 0, 16), BASE_DATA[:16]), "overlap")
    add("gap_in_offsets", with_tensor("b", entry("I8", [4], 20, 24), bytes(24)), "gap")
    add("offsets_not_from_zero",
        st_file({"a": entry("F32", [2, 2], 4, 20), "b": entry("I8", [4], 20, 24)}, bytes(24)),
        "gap")
    add("begin_after_end", with_tensor("b", entry("I8", [0], 20, 16)), "begin is after end")
    add("size_mismatch", with_tensor("b", entry("I8", [3], 16, 20)), "needs 3 bytes")
    add("zero_size_with_span", with_tensor("b", entry("F32", [0, 4], 16, 20)), "needs 0 bytes")
    # --- dtypes and shapes
    add("unknown_dtype", with_tensor("b", entry("F128", [4], 16, 20)), "unknown dtype 'F128'")
    add("lowercase_dtype", with_tensor("b", entry("i8", [4], 16, 20)), "unknown dtype 'i8'")
    add("dtype_not_string", with_tensor("b", {"dtype": 8, "shape": [4], "data_offsets": [16, 20]}),
        "dtype is a JSON integer")
    add("shape_product_overflow", with_tensor("b", entry("I8", [2**62, 8], 16, 20)), "overflows")
    add("shape_bytes_overflow", with_tensor("b", entry("F64", [2**61 + 1], 16, 20)), "overflows")
    add("negative_dim", with_tensor("b", entry("I8", [-4], 16, 20)), "is -4, expected a non-negative")
    add("non_integer_dim", with_tensor("b", entry("I8", [4.0], 16, 20)), "real number")
    add("string_dim", with_tensor("b", entry("I8", ["4"], 16, 20)), "is a JSON string")
    add("too_many_dims", with_tensor("b", entry("I8", [1] * 8 + [4], 16, 20)), "9 dims")
    add("shape_not_array", with_tensor("b", {"dtype": "I8", "shape": 4, "data_offsets": [16, 20]}),
        "shape is a JSON integer")
    add("negative_offset", with_tensor("b", entry("I8", [4], -4, 20)), "non-negative")
    add("offsets_wrong_length",
        with_tensor("b", {"dtype": "I8", "shape": [4], "data_offsets": [16, 20, 24]}),
        "wrong length")
    add("offsets_not_array",
        with_tensor("b", {"dtype": "I8", "shape": [4], "data_offsets": "16-20"}),
        "data_offsets is a JSON string")
    add("offset_huge_integer",
        st_file(None, BASE_DATA, raw=b'{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},'
                b'"b":{"dtype":"I8","shape":[4],"data_offsets":[16,99999999999999999999]}}'),
        "not valid JSON")
    # --- tensor entries
    add("missing_dtype", with_tensor("b", {"shape": [4], "data_offsets": [16, 20]}),
        "missing key 'dtype'")
    add("missing_shape", with_tensor("b", {"dtype": "I8", "data_offsets": [16, 20]}),
        "missing key 'shape'")
    add("missing_data_offsets", with_tensor("b", {"dtype": "I8", "shape": [4]}),
        "missing key 'data_offsets'")
    add("extra_key", with_tensor("b", dict(entry("I8", [4], 16, 20), offsets=[16, 20])),
        "unknown key 'offsets'")
    add("entry_not_object", with_tensor("b", [16, 20]), "entry is a JSON array")
    add("entry_null", with_tensor("b", None), "entry is a JSON null")
    add("duplicate_names",
        st_file(None, BASE_DATA, raw=b'{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},'
                b'"a":{"dtype":"I8","shape":[4],"data_offsets":[16,20]}}'),
        "duplicate")
    # --- __metadata__
    add("metadata_value_number",
        st_file(dict(BASE_HDR, __metadata__={"format": "pt", "step": 10}), BASE_DATA),
        "value of 'step' is a JSON integer")
    add("metadata_value_object",
        st_file(dict(BASE_HDR, __metadata__={"nested": {"x": "y"}}), BASE_DATA),
        "value of 'nested' is a JSON object")
    add("metadata_not_object", st_file(dict(BASE_HDR, __metadata__=["pt"]), BASE_DATA),
        "__metadata__ is a JSON array")
    add("metadata_null", st_file(dict(BASE_HDR, __metadata__=None), BASE_DATA),
        "__metadata__ is a JSON null")
    # --- the header text
    good = json.dumps(BASE_HDR, separators=(",", ":")).encode()
    add("header_not_object", st_file([1, 2, 3]), "expected an object")
    add("header_string", st_file(None, raw=b'"abc"'), "not valid JSON")
    add("header_unterminated", st_file(None, BASE_DATA, raw=good[:-1]), "not valid JSON")
    add("bad_json_syntax", st_file(None, BASE_DATA, raw=good.replace(b":", b"=", 1)),
        "not valid JSON")
    add("trailing_garbage_json", st_file(None, BASE_DATA, raw=good + b"x"), "not valid JSON")
    add("trailing_nul_padding", st_file(None, BASE_DATA, raw=good + b"\0" * 4), "not valid JSON")
    add("second_json_object", st_file(None, BASE_DATA, raw=good + b"{}"), "not valid JSON")
    add("bad_utf8_in_name", st_file(None, BASE_DATA, raw=good.replace(b'"b"', b'"\xffb"')),
        "UTF-8")
    add("overlong_utf8", st_file(None, BASE_DATA, raw=good.replace(b'"b"', b'"\xc0\xafb"')),
        "UTF-8")
    add("surrogate_utf8", st_file(None, BASE_DATA, raw=good.replace(b'"b"', b'"\xed\xa0\x80"')),
        "UTF-8")
    add("truncated_utf8", st_file(None, BASE_DATA, raw=good.replace(b'"b"', b'"\xe2\x82"')),
        "UTF-8")
    add("utf8_in_padding", st_file(None, BASE_DATA, raw=good + b"  \xff     "), "UTF-8")
    add("lone_surrogate_escape", st_file(None, BASE_DATA, raw=good.replace(b'"b"', b'"\\ud800"')),
        "not valid JSON")
    add("nul_escape_in_name", st_file(None, BASE_DATA, raw=good.replace(b'"b"', b'"b\\u0000"')),
        "not valid JSON")
    add("deep_nesting",
        st_file(None, raw=b'{"__metadata__":' + b"[" * 5000 + b"]" * 5000 + b"}"),
        "not valid JSON")
    return c


def reference_verdict(data):
    if not HAVE_REF:
        return "?"
    try:
        deserialize(data)
        return "accepts"
    except Exception:  # SafetensorError, and the binding's own errors
        return "rejects"


def hand_valid():
    """Edge cases the format allows and writers rarely produce."""
    out = {}
    # Tensors listed out of offset order, zero-size tensors sharing an offset, a header padded
    # with every kind of JSON whitespace, and a data section that does not start at a multiple
    # of 8 (nothing requires it).
    hdr = (b' \n{"z":{"dtype":"I8","shape":[3],"data_offsets":[5,8]},'
           b'"e1":{"dtype":"F32","shape":[0],"data_offsets":[5,5]},'
           b'"e0":{"dtype":"F16","shape":[4,0],"data_offsets":[0,0]},'
           b'"a":{"dtype":"U8","shape":[5],"data_offsets":[0,5]},'
           b'"s":{"dtype":"U8","shape":[],"data_offsets":[8,9]}}\t\r\n   ')
    out["hand_unordered.safetensors"] = st_file(None, bytes([1, 2, 3, 4, 5, 6, 7, 8, 9]),
                                                raw=hdr, pad=False)
    # Only zero-size tensors: the data section is empty.
    out["hand_all_empty.safetensors"] = st_file(
        {"x": entry("F32", [0], 0, 0), "y": entry("BF16", [7, 0, 2], 0, 0)})
    # Eight dims, the most qkv supports.
    out["hand_eight_dims.safetensors"] = st_file({"t": entry("U16", [1, 2, 1, 2, 1, 2, 1, 1], 0, 16)},
                                                 bytes(range(16)))
    return out


def main(argv):
    root = argv[1] if len(argv) > 1 else os.path.join(HERE, "..", "tests", "fixtures", "safetensors")
    mdir = os.path.join(root, "malformed")
    vdir = os.path.join(root, "valid")
    os.makedirs(mdir, exist_ok=True)
    os.makedirs(vdir, exist_ok=True)
    # Regenerate from scratch; keep valid/ when the reference is not here to rewrite it.
    for d in (mdir, vdir) if HAVE_REF else (mdir,):
        for f in os.listdir(d):
            if f.endswith(".safetensors") or f == "MANIFEST.tsv":
                os.remove(os.path.join(d, f))
    lines = ["# file\tstatus\tmessage contains\treference (Hugging Face safetensors %s)"
             % (safetensors.__version__ if HAVE_REF else "not installed")]
    names = set()
    for name, data, status, word in cases():
        assert name not in names, name
        names.add(name)
        with open(os.path.join(mdir, name), "wb") as f:
            f.write(data)
        lines.append("%s\t%s\t%s\t%s" % (name, status, word, reference_verdict(data)))
    with open(os.path.join(mdir, "MANIFEST.tsv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    for name, data in hand_valid().items():
        if HAVE_REF:
            assert reference_verdict(data) == "accepts", name
        with open(os.path.join(vdir, name), "wb") as f:
            f.write(data)
    if HAVE_REF:
        import safetensors_roundtrip
        safetensors_roundtrip.fixtures(vdir)
    else:
        print("safetensors not installed: valid/ holds only the hand-made files", file=sys.stderr)
    print("%d malformed files, manifest in %s" % (len(names), mdir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
