"""cellflux.v1: the generated messages (cellflux_pb2) and CellFluxStub (cellflux_pb2_grpc).

Generated from proto/cellflux/v1/cellflux.proto by client/python/gen_stubs.sh; do not edit the
two generated modules by hand (tests/python/stubs_test.py compares them with a fresh run).
"""
