#!/usr/bin/env python3
"""Writes the PredictRequest seed corpus (tests/fuzz/corpus/predict_request/) for request_fuzz.

Requests are encoded by hand in the protobuf wire format (field numbers from
proto/cellflux/v1/cellflux.proto), for the model of tests/fuzz/request_fuzz_body.cc (FuzzModelInfo:
5 channels of 8x8, genes g0_at..g3_at with means 0, 1, -2, 5, perturbations BRD-F0..BRD-F5, bank
controls P1/a01 sites 1-2). Names start with valid_ when the request validates.
  python3 tests/fuzz/make_request_corpus.py
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "predict_request")


def varint(n):
    out = b""
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wire, payload):
    key = varint((num << 3) | wire)
    if wire == 0:
        return key + varint(payload)
    if wire == 1:
        return key + struct.pack("<d", payload)
    return key + varint(len(payload)) + payload  # wire 2


def s(num, text):
    return field(num, 2, text.encode() if isinstance(text, str) else text)


def floats(num, values):
    return field(num, 2, b"".join(struct.pack("<f", v) for v in values))


CHANNELS = ["DNA", "RNA", "ER", "AGP", "Mito"]
MEANS = [0.0, 1.0, -2.0, 5.0]


def options(steps=4, samples=2, seed=7, guidance=None, encoding=None):
    o = field(1, 0, steps) + field(3, 0, seed) + field(4, 0, samples)
    if guidance is not None:
        o += field(2, 1, guidance)
    if encoding is not None:
        o += field(5, 0, encoding)
    return o


def image(h=8, w=8, channels=CHANNELS, raw_bytes=None):
    img = field(1, 0, h) + field(2, 0, w)
    for name in channels:
        data = raw_bytes if raw_bytes is not None else b"\x01\x00" * (h * w)
        img += s(3, s(1, name) + field(2, 0, 1) + s(3, data))  # encoding 1 = RAW_U16_LE
    return img


def data_request(pert="BRD-F2", values=MEANS, img=None, gene_ids=None, opts=None):
    expr = floats(1, values)
    for g in gene_ids or []:
        expr += s(2, g)
    control = s(1, img if img is not None else image()) + s(2, expr)
    return s(1, pert) + s(3, control) + s(4, opts if opts is not None else options()) + s(5, "fuzz")


def bank_request(pert="BRD-F2", plate="P1", well="A01", site=0):
    ref = s(1, plate) + s(2, well) + (field(3, 0, site) if site else b"")
    return s(1, pert) + s(2, ref) + s(4, options())


SEEDS = {
    "valid_bank": bank_request(),
    "valid_bank_site2": bank_request(site=2),
    "valid_data": data_request(),
    "valid_data_gene_ids": data_request(values=[5.0, -2.0, 1.0, 0.0],
                                        gene_ids=["g3_at", "g2_at", "g1_at", "g0_at"]),
    "valid_data_larger_image": data_request(img=image(10, 12)),
    "invalid_unknown_perturbation": bank_request(pert="BRD-NOPE"),
    "invalid_huge_perturbation": bank_request(pert="x" * 8192),
    "invalid_bank_miss": bank_request(plate="P9"),
    "invalid_channel_count": data_request(img=image(channels=CHANNELS[:4])),
    "invalid_channel_name": data_request(img=image(channels=["DNA", "RNA", "ER", "AGP", "y" * 300])),
    "invalid_raw_length": data_request(img=image(raw_bytes=b"\x00" * 7)),
    "invalid_expression_huge": data_request(values=[0.0, 1.0, 1e30, 5.0]),
    "invalid_expression_nan": data_request(values=[0.0, float("nan"), -2.0, 5.0]),
    "invalid_expression_length": data_request(values=[0.0, 1.0]),
    "invalid_samples": data_request(opts=options(samples=0)),
    "invalid_guidance": data_request(opts=options(guidance=float("inf"))),
    "invalid_no_control": s(1, "BRD-F2") + s(4, options()),
    "invalid_not_proto": b"\xff\xff\xff\xff\x0f",
}

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name + ".pb"), "wb") as f:
            f.write(data)
    print(f"wrote {len(SEEDS)} requests to {OUT}")
