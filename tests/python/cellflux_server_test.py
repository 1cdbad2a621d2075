#!/usr/bin/python3
"""The cellflux Python package (client/python) against the real server (server_fixture.py):
info/perturbations, predict from a bank well, from arrays and from TIFF files, screen → DataFrame
and AnnData, server errors as CellFluxError, TLS + token, and `pip install ./client/python` into a
fresh --system-site-packages venv running the example client.

    CELLFLUX_BUILD_DIR=build /usr/bin/python3 tests/python/cellflux_server_test.py
"""
import glob
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unittest

import grpc
import numpy as np

import server_fixture
from server_fixture import PACKAGE_DIR

import cellflux  # noqa: E402  (server_fixture puts client/python on sys.path)

SERVER = None


def setUpModule():
    global SERVER
    SERVER = server_fixture.RealServer()
    try:
        SERVER.start()
    except Exception:
        SERVER.stop()
        raise


def tearDownModule():
    if SERVER is not None:
        SERVER.stop()


def bank_ref(i=0):
    plate, well = SERVER.bank_wells[i % len(SERVER.bank_wells)]
    return f"{plate}:{well}"


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = SERVER.client()
        cls.info = cls.client.info()

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def random_control(self, height, width, seed):
        rng = np.random.default_rng(seed)
        image = rng.integers(0, 4096, size=(len(self.info.channel_names), height, width),
                             dtype=np.uint16)
        expression = rng.normal(size=len(self.info.gene_ids)).astype(np.float32)
        return image, expression

    # --- info / vocabulary ------------------------------------------------------------------

    def test_info(self):
        self.assertEqual(list(self.info.channel_names), ["DNA", "RNA", "ER", "AGP", "Mito"])
        self.assertEqual(self.info.image_size, 64)
        self.assertEqual(len(self.info.gene_ids), 978)
        self.assertEqual(self.info.num_perturbations, len(SERVER.vocabulary))
        self.assertEqual(self.info.num_controls, SERVER.bank_sites)
        self.assertEqual(self.info.defaults.num_steps, 50)

    def test_smiles_to_an_id_model_is_failed_precondition(self):
        self.assertEqual(self.info.condition, "id")
        with self.assertRaises(cellflux.CellFluxError) as caught:
            self.client.predict(smiles="CCO", control=bank_ref(), steps=2)
        self.assertEqual(caught.exception.code, grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("conditions on perturbation IDs only", caught.exception.message)

    def test_perturbations(self):
        vocab = self.client.perturbations()
        self.assertEqual([p.id for p in vocab], SERVER.vocabulary)
        self.assertIsInstance(vocab[0], cellflux.Perturbation)
        import pandas as pd
        self.assertEqual(list(pd.DataFrame(vocab).columns), ["id", "dose", "name"])

    # --- predict ----------------------------------------------------------------------------

    def test_predict_from_bank_ref(self):
        result = self.client.predict(SERVER.vocabulary[0], control=bank_ref(), num_samples=2,
                                     seed=11, steps=3, return_control=True)
        self.assertEqual(result.images.shape, (2, 5, 64, 64))
        self.assertEqual(result.images.dtype, np.uint16)
        self.assertEqual(result.images[1].shape, (5, 64, 64))
        self.assertEqual(result.expression.shape, (2, 978))
        self.assertEqual(result.expression.dtype, np.float32)
        self.assertEqual(result.gene_ids, list(self.info.gene_ids))
        self.assertEqual(result.channel_names, list(self.info.channel_names))
        self.assertEqual(result.seeds, [11, 12])
        self.assertEqual(result.model_id, self.info.model_id)
        self.assertTrue(np.isfinite(result.expression).all())
        self.assertLessEqual(int(result.images.max()), 4095)
        self.assertEqual(result.control_image.shape, (5, 64, 64))
        self.assertEqual(result.control_expression.shape, (978,))
        frame = result.expression_frame()
        self.assertEqual(frame.shape, (2, 978))
        self.assertEqual(list(frame.index), [11, 12])
        # Sample 1 alone with its own seed is the same sample (the proto's reproducibility rule).
        again = self.client.predict(SERVER.vocabulary[0], control=bank_ref(), num_samples=1,
                                    seed=12, steps=3)
        np.testing.assert_allclose(again.expression[0], result.expression[1], atol=1e-4)

    def test_predict_from_arrays_crops_and_keeps_channel_order(self):
        # 80×72 (H×W) > 64: the server centre-crops rows 8..71 and columns 4..67.
        image, expression = self.random_control(80, 72, seed=1)
        result = self.client.predict(SERVER.vocabulary[1], control=image, expression=expression,
                                     num_samples=1, seed=3, steps=2, return_control=True)
        self.assertEqual(result.images.shape, (1, 5, 64, 64))
        self.assertEqual(result.images.dtype, np.uint16)
        self.assertEqual(result.expression.shape, (1, 978))
        np.testing.assert_array_equal(result.control_image, image[:, 8:72, 4:68])
        np.testing.assert_allclose(result.control_expression, expression, rtol=1e-6)

    def test_expression_by_gene_id_is_reordered_by_the_server(self):
        image, expression = self.random_control(64, 64, seed=2)
        in_order = self.client.predict(SERVER.vocabulary[2], control=image, expression=expression,
                                       seed=5, steps=2, num_samples=1, return_control=True)
        genes = list(self.info.gene_ids)
        shuffled = list(range(len(genes)))
        random.Random(0).shuffle(shuffled)
        as_dict = {genes[i]: float(expression[i]) for i in shuffled}
        by_id = self.client.predict(SERVER.vocabulary[2], control=image, expression=as_dict,
                                    seed=5, steps=2, num_samples=1, return_control=True)
        np.testing.assert_array_equal(by_id.control_expression, in_order.control_expression)
        np.testing.assert_allclose(by_id.expression, in_order.expression, atol=1e-4)

    def test_predict_from_tiff_files_written_by_write_tiff(self):
        image, expression = self.random_control(64, 64, seed=4)
        with tempfile.TemporaryDirectory() as d:
            paths = []
            for name, plane in zip(self.info.channel_names, image):
                paths.append(os.path.join(d, f"{name}.tif"))
                cellflux.write_tiff(paths[-1], plane)
            result = self.client.predict(SERVER.vocabulary[0], control=paths,
                                         expression=expression, seed=1, steps=2, num_samples=1,
                                         return_control=True)
        # The server's TIFF decoder reads back exactly the pixels written.
        np.testing.assert_array_equal(result.control_image, image)

    # --- errors -----------------------------------------------------------------------------

    def test_unknown_perturbation_is_invalid_argument(self):
        with self.assertRaises(cellflux.CellFluxError) as caught:
            self.client.predict("BRD-NOTINVOCAB-000-00-0", control=bank_ref(), steps=2)
        e = caught.exception
        self.assertEqual(e.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(e.code_name, "INVALID_ARGUMENT")
        self.assertIn("BRD-NOTINVOCAB-000-00-0", e.message)
        self.assertIn("vocabulary", e.message)
        self.assertTrue(str(e).startswith("INVALID_ARGUMENT: "))

    def test_unknown_well_is_not_found(self):
        with self.assertRaises(cellflux.CellFluxError) as caught:
            self.client.predict(SERVER.vocabulary[0], control="NOPLATE:z99", steps=2)
        self.assertEqual(caught.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertIn("NOPLATE", caught.exception.message)
        self.assertIn("not in the control bank", caught.exception.message)

    def test_options_out_of_limits_and_wrong_channels_are_invalid_argument(self):
        with self.assertRaises(cellflux.CellFluxError) as caught:
            self.client.predict(SERVER.vocabulary[0], control=bank_ref(), steps=100000)
        self.assertEqual(caught.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("num_steps", caught.exception.message)
        image, expression = self.random_control(64, 64, seed=5)
        with self.assertRaises(cellflux.CellFluxError) as caught:  # 10 of 978 genes
            self.client.predict(SERVER.vocabulary[0], control=image, expression=expression[:10],
                                steps=2)
        self.assertEqual(caught.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("10 values", caught.exception.message)

    def test_bad_arrays_fail_before_sending(self):
        image, expression = self.random_control(64, 64, seed=6)
        with self.assertRaises(ValueError):
            self.client.predict(SERVER.vocabulary[0], control=image[0], expression=expression)
        with self.assertRaises(TypeError):
            self.client.predict(SERVER.vocabulary[0], control=image.astype(np.float32),
                                expression=expression)

    def test_token_and_tls_are_required(self):
        with SERVER.client(token=None, retries=0) as anonymous:
            with self.assertRaises(cellflux.CellFluxError) as caught:
                anonymous.info(timeout=10)
        self.assertEqual(caught.exception.code, grpc.StatusCode.UNAUTHENTICATED)
        self.assertIn("Bearer", caught.exception.message)
        with SERVER.client(token="wrong", retries=0) as wrong:
            with self.assertRaises(cellflux.CellFluxError) as caught:
                wrong.info(timeout=10)
        self.assertEqual(caught.exception.code, grpc.StatusCode.UNAUTHENTICATED)
        with SERVER.client(tls=None, retries=0) as plaintext:
            with self.assertRaises(cellflux.CellFluxError) as caught:
                plaintext.info(timeout=5)
        self.assertEqual(caught.exception.code, grpc.StatusCode.UNAVAILABLE)

    # --- screen -----------------------------------------------------------------------------

    def plan(self, rows):
        import pandas as pd
        return pd.DataFrame({
            "perturbation_id": [SERVER.vocabulary[i % len(SERVER.vocabulary)]
                                for i in range(rows)],
            "control_ref": [bank_ref(i) for i in range(rows)],
            "note": [f"row {i}" for i in range(rows)],
        })

    def test_screen_dataframe(self):
        plan = self.plan(5)
        df = self.client.screen(plan, concurrency=3, num_samples=2, seed=5, steps=2)
        meta = ["Metadata_perturbation", "Metadata_dose", "Metadata_plate", "Metadata_well",
                "Metadata_site", "Metadata_seed", "Metadata_note"]
        self.assertEqual(list(df.columns), meta + list(self.info.gene_ids))
        self.assertEqual(df.shape, (10, len(meta) + 978))
        self.assertEqual(list(df.index[:3]), ["r000000_s0", "r000000_s1", "r000001_s0"])
        # Row i's samples use seed + i × num_samples and seed + i × num_samples + 1.
        self.assertEqual(list(df["Metadata_seed"]), list(range(5, 15)))
        self.assertEqual(list(df["Metadata_perturbation"][::2]), list(plan["perturbation_id"]))
        self.assertEqual(list(df["Metadata_plate"][::2] + ":" + df["Metadata_well"][::2]),
                         list(plan["control_ref"]))
        self.assertEqual(set(df["Metadata_site"]), {0})
        doses = {p.id: p.dose for p in self.client.perturbations()}
        self.assertEqual(list(df["Metadata_dose"]), [doses[p] for p in df["Metadata_perturbation"]])
        self.assertEqual(df["Metadata_note"].iloc[3], "row 1")
        self.assertEqual(df[self.info.gene_ids[0]].dtype, np.float32)
        self.assertEqual(df.attrs["model_id"], self.info.model_id)
        self.assertEqual(df.attrs["failures"], [])
        # A screen prediction is the prediction of the same request alone.
        alone = self.client.predict(plan["perturbation_id"][3], plan["control_ref"][3],
                                    seed=12, steps=2, num_samples=1)
        np.testing.assert_allclose(df.loc["r000003_s1", list(self.info.gene_ids)].to_numpy(
            dtype=np.float32), alone.expression[0], atol=1e-4)

    def test_screen_plate_well_columns_dose_seed_and_anndata(self):
        import pandas as pd
        plate, well = SERVER.bank_wells[0]
        plan = pd.DataFrame({"perturbation": SERVER.vocabulary[:2], "plate": [plate, plate],
                             "well": [well, well], "site": [1, 2], "dose": [0.5, 10.0],
                             "seed": [100, 200]})
        adata = self.client.screen(plan, concurrency=2, steps=2, anndata=True)
        self.assertEqual(adata.shape, (2, 978))
        self.assertEqual(adata.X.dtype, np.float32)
        self.assertEqual(list(adata.var_names), list(self.info.gene_ids))
        self.assertEqual(list(adata.obs["Metadata_seed"]), [100, 200])
        self.assertEqual(list(adata.obs["Metadata_dose"]), [0.5, 10.0])
        self.assertEqual(list(adata.obs["Metadata_site"]), [1, 2])
        self.assertEqual(adata.uns["model_id"], self.info.model_id)

    def test_screen_failed_row(self):
        plan = self.plan(4)
        plan.loc[2, "perturbation_id"] = "BRD-NOTINVOCAB-000-00-0"
        with self.assertRaises(cellflux.CellFluxError) as caught:
            self.client.screen(plan, concurrency=2, steps=2)
        self.assertEqual(caught.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(caught.exception.row, 2)
        self.assertIn("plan row 2: INVALID_ARGUMENT", str(caught.exception))
        df = self.client.screen(plan, concurrency=2, steps=2, on_error="skip")
        self.assertEqual(list(df.index), ["r000000_s0", "r000001_s0", "r000003_s0"])
        [failure] = df.attrs["failures"]
        self.assertEqual((failure.row, failure.code), (2, grpc.StatusCode.INVALID_ARGUMENT))

    def test_screen_with_array_controls(self):
        import pandas as pd
        image, expression = self.random_control(64, 64, seed=7)
        plan = pd.DataFrame({"perturbation": [SERVER.vocabulary[0]], "control": [image],
                             "expression": [expression], "plate": ["mine"], "well": ["b02"]})
        df = self.client.screen(plan, steps=2, num_samples=3)
        self.assertEqual(df.shape[0], 3)
        self.assertEqual(list(df["Metadata_plate"]), ["mine"] * 3)
        self.assertEqual(list(df["Metadata_well"]), ["b02"] * 3)


class InstallTest(unittest.TestCase):
    """pip install ./client/python into a fresh venv that sees Debian's grpcio/protobuf/numpy;
    the installed package (not the checkout) runs the example client against the server."""

    def test_pip_install_into_fresh_venv(self):
        with tempfile.TemporaryDirectory() as tmp:
            source = os.path.join(tmp, "src")  # a copy: pip builds in the source tree
            shutil.copytree(PACKAGE_DIR, source,
                            ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
            venv = os.path.join(tmp, "venv")
            self.run_ok(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv])
            python = os.path.join(venv, "bin", "python")
            self.run_ok([python, "-m", "pip", "install", "--disable-pip-version-check",
                         "--no-input", source])
            where = self.run_ok([python, "-c", "import cellflux, cellflux.v1.cellflux_pb2_grpc; "
                                 "print(cellflux.__file__, cellflux.__version__)"], cwd=tmp)
            self.assertTrue(where.startswith(os.path.join(venv, "lib")), where)
            out = os.path.join(tmp, "out")
            plate, well = SERVER.bank_wells[0]
            log = self.run_ok([python, os.path.join(PACKAGE_DIR, "examples", "cellflux_example.py"),
                               "--server", SERVER.address, "--tls-ca", SERVER.ca,
                               "--token-file", SERVER.token_file, "--perturbation",
                               SERVER.vocabulary[0], "--plate", plate, "--well", well,
                               "--steps", "2", "--samples", "2", "--seed", "9", "--out", out],
                              cwd=tmp)
            self.assertIn("2 samples from", log)
            self.assertEqual(len(glob.glob(os.path.join(out, "*.tif"))), 10)
            with open(os.path.join(out, "expression.tsv")) as f:
                lines = f.read().splitlines()
            self.assertEqual(lines[0], "gene\tseed9\tseed10")
            self.assertEqual(len(lines), 1 + 978)
            # The example's screen: a plan CSV → expression.csv, one line per prediction.
            plan = os.path.join(tmp, "plan.csv")
            with open(plan, "w") as f:
                f.write("perturbation_id,control_ref,note\n")
                for i in range(3):
                    f.write(f"{SERVER.vocabulary[i]},{bank_ref(i)},row {i}\n")
            log = self.run_ok([python, os.path.join(PACKAGE_DIR, "examples", "cellflux_example.py"),
                               "--server", SERVER.address, "--tls-ca", SERVER.ca,
                               "--token-file", SERVER.token_file, "--plan", plan, "--steps", "2",
                               "--samples", "2", "--seed", "1", "--out", out], cwd=tmp)
            self.assertIn("6 predictions from", log)
            with open(os.path.join(out, "expression.csv")) as f:
                table = f.read().splitlines()
            self.assertEqual(len(table), 1 + 6)
            self.assertTrue(table[0].startswith("prediction,Metadata_perturbation,"), table[0][:80])
            self.assertEqual(len(table[0].split(",")), 1 + 7 + 978)

    def run_ok(self, argv, cwd=None):
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        self.assertEqual(done.returncode, 0, f"{' '.join(argv)}:\n{done.stdout[-3000:]}")
        return done.stdout


if __name__ == "__main__":
    if not server_fixture.RealServer().built():
        print("SKIP: the cellflux binaries are not built")
        sys.exit(77)  # CTest: SKIP_RETURN_CODE
    unittest.main(verbosity=2)
