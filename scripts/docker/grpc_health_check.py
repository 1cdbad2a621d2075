#!/usr/bin/python3
"""Docker HEALTHCHECK for cellflux-server: one grpc.health.v1.Health/Check call.

Needs only python3-grpcio (no generated stubs, no grpc_health_probe): the request and response
are hand-encoded protobuf. HealthCheckRequest{service} is field 1 (string); HealthCheckResponse
{status} is field 1 (enum varint), SERVING = 1. The server answers SERVING only when a model is
loaded and warm (DESIGN.md §4) and NOT_SERVING while it drains.

    cellflux-healthcheck [--addr 127.0.0.1:50051] [--service NAME] [--timeout 3]

Exit 0 = SERVING, 1 = anything else (the reason on stderr). Kubernetes uses its native grpc probe.
"""
import argparse
import sys

import grpc

STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def encode_request(service):
    data = service.encode()
    if not data:
        return b""
    if len(data) > 127:
        raise ValueError("service name too long")
    return b"\x0a" + bytes([len(data)]) + data


def decode_status(msg):
    """Field 1 (varint) of HealthCheckResponse; absent = 0 (UNKNOWN)."""
    i = 0
    while i < len(msg):
        key = msg[i]
        i += 1
        value, shift = 0, 0
        while True:  # varint (wire type 0); the response has no other wire type
            b = msg[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if key == 0x08:
            return value
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--addr", default="127.0.0.1:50051")
    ap.add_argument("--service", default="", help='"" = the whole server')
    ap.add_argument("--timeout", type=float, default=3.0, help="seconds")
    args = ap.parse_args()
    with grpc.insecure_channel(args.addr) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        try:
            reply = check(encode_request(args.service), timeout=args.timeout)
        except grpc.RpcError as e:
            print(f"health {args.addr}: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    status = decode_status(reply)
    if status != 1:
        print(f"health {args.addr}: {STATUS.get(status, status)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
