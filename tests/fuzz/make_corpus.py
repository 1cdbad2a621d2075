#!/usr/bin/env python3
"""Writes the seed corpus tests/fuzz/corpus/safetensors/ (stdlib only; run from the repo root).

valid_* files must parse, invalid_* files must be rejected (safetensors_fuzz_replay_test checks
both). Re-running reproduces the committed files byte for byte.
"""
import json
import os
import shutil
import struct

OUT = "tests/fuzz/corpus/safetensors"


def blob(header, data=b"", pad=True):
    h = json.dumps(header, separators=(",", ":")).encode() if not isinstance(header, bytes) else header
    if pad:
        h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def main():
    os.makedirs(OUT, exist_ok=True)
    f32 = struct.pack("<6f", 0, 0.25, 0.5, 0.75, 1, 1.25)
    files = {
        "valid_f32_2x3": blob({"w": entry("F32", [2, 3], 0, 24)}, f32),
        "valid_mixed_dtypes": blob({
            "__metadata__": {"format": "pt", "step": "12"},
            "a.bf16": entry("BF16", [2], 0, 4),
            "b.f16": entry("F16", [1, 2], 4, 8),
            "c.i64": entry("I64", [1], 8, 16),
            "d.u8": entry("U8", [3], 16, 19),
            "e.bool": entry("BOOL", [1], 19, 20),
        }, b"\x00\x3f\x40\x40" + b"\x00\x3e\x00\xc0" + struct.pack("<q", -5) + b"\x01\x02\x03" + b"\x01"),
        "valid_empty_and_scalar": blob({
            "empty": entry("F32", [0, 4], 0, 0),
            "scalar": entry("F64", [], 0, 8),
        }, struct.pack("<d", 2.5)),
        "valid_no_tensors": blob({}),
        "valid_unpadded": blob({"x": entry("I32", [2], 0, 8)}, struct.pack("<2i", 1, -1), pad=False),
        "invalid_truncated": blob({"w": entry("F32", [2, 3], 0, 24)}, f32[:13]),
        "invalid_overlap": blob({"a": entry("U8", [4], 0, 4), "b": entry("U8", [4], 2, 6)}, b"123456"),
        "invalid_hole": blob({"a": entry("U8", [2], 0, 2), "b": entry("U8", [2], 4, 6)}, b"123456"),
        "invalid_bad_dtype": blob({"w": entry("F8", [1], 0, 1)}, b"x"),
        "invalid_shape_overflow": blob({"w": entry("F32", [2**40, 2**40, 0], 0, 0)}),
        "invalid_header_length": struct.pack("<Q", 2**63) + b"{}",
        "invalid_not_json": blob(b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]', b"1234"),
        "invalid_metadata": blob({"__metadata__": {"k": 1}}),
        "invalid_trailing": blob({"a": entry("U8", [1], 0, 1)}, b"12"),
        "invalid_short": b"\x02\x00\x00",
    }
    for name, data in files.items():
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(data)
    shutil.copyfile("tests/io/testdata/python_written.safetensors",
                    os.path.join(OUT, "valid_python_written.safetensors"))


if __name__ == "__main__":
    main()
