#!/usr/bin/python3
"""The stubs committed in the cellflux package equal a fresh client/python/gen_stubs.sh run on
proto/cellflux/v1/cellflux.proto (Debian's protoc + grpc_python_plugin), so they cannot drift from
the proto: after editing the proto, run client/python/gen_stubs.sh and commit its output.
"""
import filecmp
import os
import subprocess
import sys
import tempfile
import unittest

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PACKAGE_DIR = os.path.join(SRC, "client", "python")
sys.path.insert(0, PACKAGE_DIR)


class StubsTest(unittest.TestCase):
    def test_committed_stubs_equal_a_fresh_generation(self):
        committed = os.path.join(PACKAGE_DIR, "cellflux", "v1")
        with tempfile.TemporaryDirectory() as out:
            done = subprocess.run(["bash", os.path.join(PACKAGE_DIR, "gen_stubs.sh"), out],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            self.assertEqual(done.returncode, 0, done.stdout)
            fresh = os.path.join(out, "cellflux", "v1")
            generated = sorted(os.listdir(fresh))
            self.assertEqual(generated, ["cellflux_pb2.py", "cellflux_pb2_grpc.py"])
            for name in generated:
                same = filecmp.cmp(os.path.join(fresh, name), os.path.join(committed, name),
                                   shallow=False)
                self.assertTrue(same, f"client/python/cellflux/v1/{name} differs from what "
                                "proto/cellflux/v1/cellflux.proto generates: run "
                                "client/python/gen_stubs.sh and commit the result")

    def test_the_package_imports_the_committed_stubs(self):
        from cellflux.v1 import cellflux_pb2, cellflux_pb2_grpc
        committed = os.path.join(PACKAGE_DIR, "cellflux", "v1")
        self.assertEqual(os.path.dirname(os.path.abspath(cellflux_pb2.__file__)), committed)
        self.assertEqual(os.path.dirname(os.path.abspath(cellflux_pb2_grpc.__file__)), committed)
        self.assertEqual(cellflux_pb2.DESCRIPTOR.name, "cellflux/v1/cellflux.proto")
        self.assertIn("CellFlux", cellflux_pb2.DESCRIPTOR.services_by_name)


if __name__ == "__main__":
    unittest.main(verbosity=2)
