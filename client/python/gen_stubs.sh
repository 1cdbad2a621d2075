#!/usr/bin/env bash
# Regenerates the committed gRPC stubs of the cellflux package from the proto:
#   cellflux/v1/cellflux_pb2.py       messages   (protoc --python_out)
#   cellflux/v1/cellflux_pb2_grpc.py  CellFluxStub (grpc_python_plugin)
# with Debian's protoc and /usr/bin/grpc_python_plugin (python3-grpc-tools' bundled protoc
# predates proto3 `optional`). Run it after every change to proto/cellflux/v1/cellflux.proto and
# commit the result; tests/python/stubs_test.py fails while the committed stubs differ from it.
#
#   client/python/gen_stubs.sh [OUT_DIR]    OUT_DIR defaults to client/python (the package root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
out=${1:-$here}
protoc=${PROTOC:-protoc}
plugin=${GRPC_PYTHON_PLUGIN:-$(command -v grpc_python_plugin || echo /usr/bin/grpc_python_plugin)}
command -v "$protoc" > /dev/null || { echo "gen_stubs.sh: protoc not found (apt install protobuf-compiler)" >&2; exit 1; }
[ -x "$plugin" ] || { echo "gen_stubs.sh: grpc_python_plugin not found (apt install protobuf-compiler-grpc)" >&2; exit 1; }
mkdir -p "$out"
"$protoc" --proto_path="$src/proto" --python_out="$out" --grpc_out="$out" \
  --plugin=protoc-gen-grpc="$plugin" "$src/proto/cellflux/v1/cellflux.proto"
