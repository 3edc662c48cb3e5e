"""An independent client for cleave-edge: Python grpcio with stubs generated from our proto,
and tensor frames encoded and decoded from docs/FRAME_FORMAT.md alone (no cleave code).

Usage: client_test.py STUBS_DIR ADDRESS BUNDLE_DIR
"""
import array
import hashlib
import json
import os
import struct
import sys
import unittest
import zlib

import grpc

STUBS, ADDRESS, BUNDLE = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, STUBS)
from cleave.v1 import inference_pb2, inference_pb2_grpc  # noqa: E402

FLOAT32 = 1
RAW = 0


def checksum(frame: bytes) -> int:
    return zlib.crc32(frame[16:], zlib.crc32(frame[:12])) & 0xFFFFFFFF


def encode(shape, values) -> bytes:
    """A raw float32 frame, built from the spec."""
    payload = array.array("f", values).tobytes()
    header = b"CLVF" + struct.pack("<BBBBBBH", 1, RAW, 0, FLOAT32, len(shape), 0, 0)
    header += b"\0\0\0\0" + struct.pack("<QQ", len(payload), len(payload))
    header += b"".join(struct.pack("<q", d) for d in shape)
    frame = bytearray(header + payload)
    frame[12:16] = struct.pack("<I", checksum(bytes(frame)))
    return bytes(frame)


def decode(frame: bytes):
    """(shape, values) of a raw float32 frame, checking what the spec says to check."""
    assert frame[:4] == b"CLVF", "magic"
    version, codec, compression, dtype, rank, axis, params = struct.unpack_from("<BBBBBBH", frame, 4)
    assert (version, codec, compression, dtype, params) == (1, RAW, 0, FLOAT32, 0)
    (stored,) = struct.unpack_from("<I", frame, 12)
    assert stored == checksum(frame), "checksum"
    symbol_bytes, payload_bytes = struct.unpack_from("<QQ", frame, 16)
    shape = list(struct.unpack_from("<%dq" % rank, frame, 32))
    payload = frame[32 + 8 * rank:]
    assert len(payload) == payload_bytes == symbol_bytes
    return shape, array.array("f", payload).tolist()


class EdgeFromPython(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(BUNDLE, "manifest.json"), "rb") as f:
            manifest_bytes = f.read()
        cls.bundle_id = hashlib.sha256(manifest_bytes).hexdigest()
        manifest = json.loads(manifest_bytes)
        with open(os.path.join(BUNDLE, manifest["verification"]["inputs"][0]["file"]), "rb") as f:
            cls.input_shape, cls.input = decode(f.read())
        with open(os.path.join(BUNDLE, manifest["verification"]["outputs"][0]["file"]), "rb") as f:
            cls.output_shape, cls.expected = decode(f.read())
        cls.channel = grpc.insecure_channel(ADDRESS)
        cls.stub = inference_pb2_grpc.InferenceStub(cls.channel)

    def request(self, request_id=1, **overrides):
        fields = dict(request_id=request_id, bundle_id=self.bundle_id, cut_id=0,
                      activation=encode(self.input_shape, self.input))
        fields.update(overrides)
        return inference_pb2.InferRequest(**fields)

    def assert_expected(self, response):
        shape, values = decode(response.outputs[0])
        self.assertEqual(shape, self.output_shape)
        for got, want in zip(values, self.expected):
            self.assertAlmostEqual(got, want, delta=1e-4 + 1e-4 * abs(want))

    def test_unary_matches_the_original_model(self):
        response = self.stub.Infer(self.request(42), timeout=30)
        self.assertEqual(response.request_id, 42)
        self.assert_expected(response)

    def test_stream_answers_every_request_by_id(self):
        requests = [self.request(7), self.request(8), self.request(9, bundle_id="nope")]
        responses = {r.request_id: r for r in self.stub.InferStream(iter(requests), timeout=30)}
        self.assertEqual(sorted(responses), [7, 8, 9])
        self.assert_expected(responses[7])
        self.assert_expected(responses[8])
        self.assertEqual(responses[9].status_code, grpc.StatusCode.NOT_FOUND.value[0])
        self.assertIn("unknown bundle id", responses[9].status_message)

    def test_errors_carry_precise_status_codes(self):
        cases = [
            (self.request(bundle_id="nope"), grpc.StatusCode.NOT_FOUND),
            (self.request(cut_id=999), grpc.StatusCode.INVALID_ARGUMENT),
            (self.request(activation=b"not a frame"), grpc.StatusCode.INVALID_ARGUMENT),
            (self.request(activation=encode([1, 2, 28, 28], [0.0] * 1568)),
             grpc.StatusCode.INVALID_ARGUMENT),
        ]
        for request, code in cases:
            with self.assertRaises(grpc.RpcError) as caught:
                self.stub.Infer(request, timeout=30)
            self.assertEqual(caught.exception.code(), code, caught.exception.details())

    def test_health_reports_serving(self):
        check = self.channel.unary_unary("/grpc.health.v1.Health/Check",
                                         request_serializer=lambda b: b,
                                         response_deserializer=lambda b: b)
        # HealthCheckRequest{service: ""} is empty; HealthCheckResponse{status: SERVING} is 08 01.
        self.assertEqual(check(b"", timeout=10), b"\x08\x01")
        service = self.bundle_id.encode()
        self.assertEqual(check(b"\x0a" + bytes([len(service)]) + service, timeout=10), b"\x08\x01")


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0], "-v"])
