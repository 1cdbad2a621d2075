#!/usr/bin/python3
"""The cellflux package without a server: numpy ↔ wire images, TIFF writing, request building,
control references, plan rows, and the retry rule (with a fake stub and a recorded sleep)."""
import os
import struct
import sys
import tempfile
import unittest

import grpc
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "client",
                                "python"))

import cellflux  # noqa: E402
from cellflux import client as client_module  # noqa: E402
from cellflux import images, screen  # noqa: E402
from cellflux.v1 import cellflux_pb2 as pb  # noqa: E402

CHANNELS = ["DNA", "RNA", "ER", "AGP", "Mito"]


class FakeRpcError(grpc.RpcError):
    def __init__(self, code, details):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


class FakeStub:
    """Predict answers from a script: an exception code raises FakeRpcError, else a response."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = []

    def Predict(self, request, metadata=None, timeout=None):
        self.calls.append((request, metadata, timeout))
        step = self.script.pop(0)
        if isinstance(step, grpc.StatusCode):
            raise FakeRpcError(step, f"scripted {step.name}")
        return step


def info():
    return pb.GetModelInfoResponse(model_id="m", channel_names=CHANNELS, image_size=4,
                                   gene_ids=["g1", "g2", "g3"])


class ImagesTest(unittest.TestCase):
    def test_array_round_trip_is_exact_and_row_major(self):
        array = np.arange(5 * 3 * 4, dtype=np.uint16).reshape(5, 3, 4) * 100
        proto = images.image_to_proto(array, CHANNELS)
        self.assertEqual((proto.height, proto.width), (3, 4))
        self.assertEqual([c.name for c in proto.channels], CHANNELS)
        self.assertEqual(proto.channels[0].encoding, pb.RAW_U16_LE)
        self.assertEqual(proto.channels[1].data[:4], struct.pack("<HH", 1200, 1300))
        back = images.proto_to_array(proto)
        self.assertEqual(back.dtype, np.uint16)
        np.testing.assert_array_equal(back, array)

    def test_other_integer_types_convert_when_they_fit(self):
        array = np.full((5, 2, 2), 4095, dtype=np.int64)
        np.testing.assert_array_equal(images.proto_to_array(images.image_to_proto(array,
                                                                                  CHANNELS)),
                                      array)
        with self.assertRaisesRegex(ValueError, "16 bits"):
            images.image_to_proto(array * 100, CHANNELS)
        with self.assertRaisesRegex(ValueError, "16 bits"):
            images.image_to_proto(-array, CHANNELS)

    def test_bad_arrays(self):
        with self.assertRaisesRegex(ValueError, "C×H×W"):
            images.image_to_proto(np.zeros((4, 4), np.uint16), CHANNELS)
        with self.assertRaisesRegex(ValueError, "has 3 channels"):
            images.image_to_proto(np.zeros((3, 4, 4), np.uint16), CHANNELS)
        with self.assertRaisesRegex(TypeError, "float32"):
            images.image_to_proto(np.zeros((5, 4, 4), np.float32), CHANNELS)

    def test_proto_to_array_checks_sizes_and_encoding(self):
        proto = pb.Image(height=2, width=2)
        proto.channels.add(name="DNA", encoding=pb.RAW_U16_LE, data=b"\0" * 6)
        with self.assertRaisesRegex(ValueError, "has 6 bytes"):
            images.proto_to_array(proto)
        proto.channels[0].encoding = pb.PNG
        with self.assertRaisesRegex(ValueError, "PNG"):
            images.proto_to_array(proto)

    def test_write_tiff_layout_and_sniffing(self):
        plane = np.array([[1, 2, 3], [4095, 0, 65535]], dtype=np.uint16)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "x.tif")
            cellflux.write_tiff(path, plane)
            with open(path, "rb") as f:
                data = f.read()
            self.assertEqual(data[:4], b"II*\0")
            self.assertEqual(data[8:20], plane.astype("<u2").tobytes())  # one strip at offset 8
            self.assertEqual(images._sniff(data, path), (pb.TIFF, 3, 2))
            proto = images.files_to_proto([path] * 5, CHANNELS)
            self.assertEqual((proto.height, proto.width), (2, 3))
            self.assertEqual(proto.channels[4].name, "Mito")
            self.assertEqual(proto.channels[4].data, data)
        with self.assertRaisesRegex(ValueError, "2 control files"):
            images.files_to_proto([b"", b""], CHANNELS)
        with self.assertRaisesRegex(ValueError, "neither a TIFF nor a PNG"):
            images.files_to_proto([b"GIF89a.."] * 5, CHANNELS)

    def test_png_size(self):
        header = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", 7, 9)
        self.assertEqual(images._sniff(header, "p"), (pb.PNG, 7, 9))


class RequestTest(unittest.TestCase):
    def test_refs(self):
        self.assertEqual(client_module.parse_ref("24277:a01"),
                         pb.ControlRef(plate="24277", well="a01"))
        self.assertEqual(client_module.parse_ref("24277:a01:3").site, 3)
        self.assertEqual(client_module.parse_ref({"plate": 24277, "well": "a01", "site": 2}),
                         pb.ControlRef(plate="24277", well="a01", site=2))
        for bad in ("24277", "24277:a01:x", ":a01", "a:b:1:2"):
            with self.assertRaises(ValueError, msg=bad):
                client_module.parse_ref(bad)
        with self.assertRaisesRegex(ValueError, "plate and well"):
            client_module.parse_ref({"plate": "p"})
        self.assertIsNone(client_module.parse_ref(np.zeros((5, 4, 4))))

    def test_unset_options_stay_unset(self):
        request = client_module.build_request(info(), "BRD-1", "p:a01")
        self.assertEqual(request.WhichOneof("control"), "ref")
        for field in ("num_steps", "guidance_scale", "seed", "num_samples", "return_control"):
            self.assertFalse(request.options.HasField(field), field)
        self.assertEqual(request.options.output_encoding, pb.RAW_U16_LE)
        request = client_module.build_request(info(), "BRD-1", "p:a01", num_samples=2, seed=0,
                                              steps=3, guidance=1.0, return_control=True)
        o = request.options
        self.assertEqual((o.num_samples, o.seed, o.num_steps, o.guidance_scale,
                          o.return_control), (2, 0, 3, 1.0, True))

    def test_expression_forms(self):
        image = np.zeros((5, 4, 4), np.uint16)
        request = client_module.build_request(info(), "BRD-1", image, [1, 2, 3])
        self.assertEqual(list(request.data.expression.values), [1, 2, 3])
        self.assertEqual(list(request.data.expression.gene_ids), [])
        request = client_module.build_request(info(), "BRD-1", image, {"g3": 3.0, "g1": 1.0})
        self.assertEqual(list(request.data.expression.gene_ids), ["g3", "g1"])
        import pandas as pd
        series = pd.Series([5.0, 6.0], index=["g2", "g1"])
        request = client_module.build_request(info(), "BRD-1", image, series)
        self.assertEqual(list(request.data.expression.gene_ids), ["g2", "g1"])
        self.assertEqual(list(request.data.expression.values), [5.0, 6.0])
        with self.assertRaisesRegex(ValueError, "bank well"):
            client_module.build_request(info(), "BRD-1", "p:a01", [1, 2, 3])
        with self.assertRaisesRegex(TypeError, "control must be"):
            client_module.build_request(info(), "BRD-1", 42)

    def test_bit_depth(self):
        image = np.full((5, 4, 4), 100, np.uint16)
        request = client_module.build_request(info(), "BRD-1", image, [1, 2, 3])
        self.assertEqual(request.data.image.bit_depth, 0)  # 12-bit, the default
        image[2, 1, 1] = 5000  # above 12 bits: declared 16-bit, sent unchanged
        request = client_module.build_request(info(), "BRD-1", image, [1, 2, 3])
        self.assertEqual(request.data.image.bit_depth, 16)
        request = client_module.build_request(info(), "BRD-1", image, [1, 2, 3], bit_depth=12)
        self.assertEqual(request.data.image.bit_depth, 12)  # as told: the server will reject it
        with self.assertRaisesRegex(ValueError, "bit_depth must be 12 or 16"):
            client_module.build_request(info(), "BRD-1", image, [1, 2, 3], bit_depth=8)

    def test_plan_rows(self):
        row = screen._parse_row(3, {"perturbation_id": "B", "control_ref": "p:a01:2"}, 2, 10)
        self.assertEqual((row["plate"], row["well"], row["site"], row["seed"]), ("p", "a01", 2, 16))
        row = screen._parse_row(0, {"perturbation": "B", "plate": "p", "well": "w", "seed": 7.0,
                                    "site": float("nan")}, 1, None)
        self.assertEqual((row["control"], row["seed"]), ({"plate": "p", "well": "w", "site": 0}, 7))
        with self.assertRaisesRegex(ValueError, "plan row 4: no perturbation"):
            screen._parse_row(4, {"control_ref": "p:w"}, 1, None)
        with self.assertRaisesRegex(ValueError, "plan row 5: no control"):
            screen._parse_row(5, {"perturbation": "B"}, 1, None)


class SmilesTest(unittest.TestCase):
    def test_requests_by_structure(self):
        request = client_module.build_request(info(), None, "p:a01", smiles="CCO", dose_um=2.5)
        self.assertEqual((request.smiles, request.dose_um, request.perturbation_id),
                         ("CCO", 2.5, ""))
        request = client_module.build_request(info(), None, "p:a01", smiles="CCO")
        self.assertEqual(request.dose_um, 0.0)  # unknown
        with self.assertRaisesRegex(ValueError, "exactly one of perturbation"):
            client_module.build_request(info(), "BRD-1", "p:a01", smiles="CCO")
        with self.assertRaisesRegex(ValueError, "exactly one of perturbation"):
            client_module.build_request(info(), None, "p:a01")
        with self.assertRaisesRegex(ValueError, "dose_um goes with smiles"):
            client_module.build_request(info(), "BRD-1", "p:a01", dose_um=3)
        for bad in (-1, float("nan"), float("inf")):
            with self.assertRaisesRegex(ValueError, "dose_um must be", msg=bad):
                client_module.build_request(info(), None, "p:a01", smiles="CCO", dose_um=bad)
        with self.assertRaisesRegex(ValueError, "control is required"):
            client_module.build_request(info(), None, None, smiles="CCO")

    def test_result_carries_the_structure_match(self):
        r = RetryTest.response(None)
        stub = FakeStub([r])
        c = cellflux.Client("fake", _stub=stub, _sleep=lambda s: None)
        c._info = info()
        self.assertIsNone(c.predict("BRD-1", "p:a01").structure)
        r.structure.CopyFrom(pb.StructureMatch(canonical_smiles="CCO", in_vocabulary=False,
                                               nearest_perturbation_id="BRD-9",
                                               nearest_similarity=0.25, dose_um=2.5))
        stub.script = [r]
        result = c.predict(smiles="OCC", dose_um=2.5, control="p:a01")
        self.assertEqual(stub.calls[-1][0].smiles, "OCC")
        self.assertEqual(result.structure,
                         cellflux.StructureMatch("CCO", False, "BRD-9", 0.25, 2.5))

    def test_plan_rows_with_smiles(self):
        row = screen._parse_row(0, {"smiles": "CCO", "dose_um": 3.0, "control_ref": "p:a01",
                                    "perturbation_id": float("nan")}, 1, None)
        self.assertEqual((row["perturbation"], row["smiles"], row["dose_um"]), (None, "CCO", 3.0))
        row = screen._parse_row(1, {"perturbation_id": "B", "smiles": None, "dose_um": float("nan"),
                                    "control_ref": "p:a01"}, 1, None)
        self.assertEqual((row["perturbation"], row["smiles"], row["dose_um"]), ("B", None, None))
        with self.assertRaisesRegex(ValueError, "plan row 2: set exactly one"):
            screen._parse_row(2, {"perturbation_id": "B", "smiles": "C", "control_ref": "p:a"},
                              1, None)
        with self.assertRaisesRegex(ValueError, "plan row 3: dose_um goes with a smiles row"):
            screen._parse_row(3, {"perturbation_id": "B", "dose_um": 1, "control_ref": "p:a"},
                              1, None)

    def test_screen_table_has_the_structure_columns(self):
        import pandas as pd
        by_id = RetryTest.response(None)
        by_smiles = RetryTest.response(None)
        by_smiles.structure.CopyFrom(pb.StructureMatch(
            canonical_smiles="CCO", in_vocabulary=False, nearest_perturbation_id="BRD-9",
            nearest_similarity=0.25, dose_um=2.5))

        class Stub(FakeStub):
            def Predict(self, request, metadata=None, timeout=None):
                self.calls.append((request, metadata, timeout))
                return by_smiles if request.smiles else by_id

            def ListPerturbations(self, request, metadata=None, timeout=None):
                return pb.ListPerturbationsResponse(
                    perturbations=[pb.Perturbation(id="BRD-1", dose=10)])

        c = cellflux.Client("fake", _stub=Stub([]), _sleep=lambda s: None)
        c.info = info
        plan = pd.DataFrame({"perturbation_id": ["BRD-1", None], "smiles": [None, "OCC"],
                             "dose_um": [None, 2.5], "control_ref": ["p:a01", "p:a02"]})
        df = c.screen(plan, concurrency=1)
        self.assertEqual(list(df["Metadata_smiles"]), ["", "OCC"])
        self.assertEqual(list(df["Metadata_canonical_smiles"]), ["", "CCO"])
        self.assertEqual(list(df["Metadata_nearest_perturbation"]), ["", "BRD-9"])
        self.assertEqual(list(df["Metadata_perturbation"]), ["BRD-1", ""])
        self.assertEqual(list(df["Metadata_dose"]), [10.0, 2.5])
        self.assertEqual(df["Metadata_nearest_similarity"].iloc[1], 0.25)
        no_smiles = c.screen(plan[["perturbation_id", "control_ref"]].iloc[:1], concurrency=1)
        self.assertNotIn("Metadata_smiles", no_smiles.columns)


class RetryTest(unittest.TestCase):
    def response(self):
        r = pb.PredictResponse(model_id="m")
        p = r.predictions.add(seed=4, expression=[1, 2, 3])
        p.image.CopyFrom(images.image_to_proto(np.ones((5, 4, 4), np.uint16), CHANNELS))
        return r

    def client(self, script, retries=3):
        sleeps = []
        stub = FakeStub(script)
        c = cellflux.Client("fake", token=" t0k \n", retries=retries, _sleep=sleeps.append,
                            _stub=stub)
        c._info = info()
        return c, stub, sleeps

    def test_queue_full_and_unavailable_are_retried_with_growing_backoff(self):
        c, stub, sleeps = self.client([grpc.StatusCode.RESOURCE_EXHAUSTED,
                                       grpc.StatusCode.UNAVAILABLE, self.response()])
        result = c.predict("BRD-1", "p:a01")
        self.assertEqual(len(stub.calls), 3)
        self.assertEqual(len(sleeps), 2)
        self.assertTrue(0.25 <= sleeps[0] <= 0.75 and 0.5 <= sleeps[1] <= 1.5, sleeps)
        self.assertEqual(stub.calls[0][1], (("authorization", "Bearer t0k"),))
        self.assertEqual(result.seeds, [4])
        self.assertEqual(result.images.shape, (1, 5, 4, 4))
        self.assertEqual(result.gene_ids, ["g1", "g2", "g3"])

    def test_retries_run_out(self):
        c, stub, sleeps = self.client([grpc.StatusCode.RESOURCE_EXHAUSTED] * 3, retries=2)
        with self.assertRaises(cellflux.CellFluxError) as caught:
            c.predict("BRD-1", "p:a01")
        self.assertEqual(caught.exception.code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(caught.exception.message, "scripted RESOURCE_EXHAUSTED")
        self.assertEqual((len(stub.calls), len(sleeps)), (3, 2))

    def test_other_codes_are_not_retried(self):
        for code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.DEADLINE_EXCEEDED,
                     grpc.StatusCode.UNAUTHENTICATED):
            c, stub, sleeps = self.client([code, self.response()])
            with self.assertRaises(cellflux.CellFluxError) as caught:
                c.predict("BRD-1", "p:a01")
            self.assertEqual(caught.exception.code, code)
            self.assertEqual((len(stub.calls), sleeps), (1, []))

    def test_empty_token_and_bad_tls(self):
        with self.assertRaisesRegex(ValueError, "token is empty"):
            cellflux.Client("x:1", token="  ")
        with self.assertRaisesRegex(ValueError, "no PEM certificate"):
            cellflux.Client("x:1", tls=b"not a certificate")
        with self.assertRaises(TypeError):
            cellflux.Client("x:1", tls=3)


if __name__ == "__main__":
    unittest.main(verbosity=2)
