"""Half-open and slow connections cannot lock clients out: connection cap with eviction, header timeout."""

from __future__ import annotations

import socket

import numpy as np
import tritonclient.http as triton

from tests.serve.conftest import mlp_oracle

_HALF_OPEN = 300  # well past the server's cap of 32, yet bounded for the test machine


def _infer_once(url: str) -> np.ndarray:
    x = np.arange(16, dtype=np.float32).reshape(1, 16)
    tensor = triton.InferInput("x", [1, 16], "FP32")
    tensor.set_data_from_numpy(x)
    with triton.InferenceServerClient(url, connection_timeout=300, network_timeout=300) as client:
        return client.infer("mlp", [tensor]).as_numpy("y"), mlp_oracle(x)


def test_hundreds_of_half_open_connections_do_not_lock_out_a_client(start_server):
    server = start_server(max_connections=32, header_timeout_s=60.0)
    stalled = []
    try:
        for i in range(_HALF_OPEN):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            if i % 2:  # half of them start a request header and never finish it
                sock.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 10")
            stalled.append(sock)
        got, want = _infer_once(server.url)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        # The oldest idle connections were closed to make room: the first socket sees EOF.
        assert stalled[0].recv(1) == b""
    finally:
        for sock in stalled:
            sock.close()


def test_a_header_that_never_completes_is_cut_off_by_the_header_timeout(start_server):
    server = start_server(max_connections=32, header_timeout_s=0.2)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as slow:
        slow.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n")  # no blank line: header unfinished
        assert slow.recv(1) == b""  # closed by the server (the 30 s socket timeout would raise instead)
    got, want = _infer_once(server.url)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_body_that_stalls_after_a_complete_header_is_cut_off(start_server):
    """A complete header promising a body that never comes keeps the connection busy (beyond
    eviction): the body's stall timer closes it, so such clients cannot fill the cap."""
    server = start_server(max_connections=2, header_timeout_s=0.2)
    stalled = []
    try:
        for _ in range(2):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            sock.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inp")
            stalled.append(sock)
        for sock in stalled:
            assert sock.recv(1) == b""  # closed by the server (the 30 s socket timeout would raise instead)
        got, want = _infer_once(server.url)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        # Each cut-off request is a client failure in the statistics, not an internal error.
        stats = server.app.state.edgetrt.stats_of("mlp")
        assert stats.failure["OTHER"].count == 2 and stats.failure["BACKEND"].count == 0
    finally:
        for sock in stalled:
            sock.close()
