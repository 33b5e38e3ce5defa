"""`edgetrt serve` as a process: sd_notify READY/WATCHDOG/STOPPING, SIGTERM drain, CLI errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request

import numpy as np
import pytest
import tritonclient.http as triton

from edge.cli import main
from edge.serve import sdnotify
from tests.serve.conftest import mlp_oracle

_CLI = "import sys; from edge.cli import main; sys.exit(main(sys.argv[1:]))"


def _pending(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    line = next(row for row in text.splitlines() if row.startswith('nv_inference_pending_request_count{model="mlp"'))
    return float(line.split()[-1])


def test_sd_notify_and_sigterm_drains_in_flight_requests(engine_files, tmp_path):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(1)
    messages: list[str] = []

    def receive() -> None:  # keep reading, as systemd does
        while proc.poll() is None:
            try:
                messages.append(notify.recv(4096).decode())
            except TimeoutError:
                pass

    # A 1.5 s batching delay keeps the three requests queued while SIGTERM arrives; it comes
    # from the environment, as a service's environment file sets it.
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000", "EDGETRT_MAX_QUEUE_DELAY_MS": "1500"}
    argv = ["serve", f"mlp={engine_files['mlp']}", "--port", "0", "--max-batch", "64"]
    proc = subprocess.Popen([sys.executable, "-c", _CLI, *argv], env=env, stderr=subprocess.PIPE, text=True)
    receiver = threading.Thread(target=receive)
    receiver.start()
    try:
        line = proc.stderr.readline()
        assert "serving mlp on http://127.0.0.1:" in line, line  # loopback unless --host says otherwise
        assert "mlp v1: dynamic batching up to 64, 1500 ms delay" in proc.stderr.readline()
        port = int(line.split("http://127.0.0.1:")[1].split(";")[0])
        while "WATCHDOG=1" not in messages:
            receiver.join(0.01)
        assert messages[0].startswith("READY=1")

        xs = [np.random.default_rng(i).standard_normal((1, 16)).astype(np.float32) for i in range(3)]
        results: dict[int, np.ndarray] = {}

        def request(i: int) -> None:
            with triton.InferenceServerClient(f"127.0.0.1:{port}") as client:
                tensor = triton.InferInput("x", [1, 16], "FP32")
                tensor.set_data_from_numpy(xs[i])
                results[i] = client.infer("mlp", [tensor]).as_numpy("y")

        threads = [threading.Thread(target=request, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        while _pending(port) < 3:
            pass
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join()
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        receiver.join()
    notify.setblocking(False)
    while True:  # what arrived after the process exited
        try:
            messages.append(notify.recv(4096).decode())
        except BlockingIOError:
            break
    for i, x in enumerate(xs):
        np.testing.assert_allclose(results[i], mlp_oracle(x), rtol=1e-5, atol=1e-5)
    assert any(m.startswith("STOPPING=1") for m in messages), messages
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


def test_notify_never_blocks_on_a_receiver_that_stopped_reading(tmp_path, monkeypatch):
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stalled.bind(str(tmp_path / "stalled"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "stalled"))
    sent: list[bool] = []
    sender = threading.Thread(target=lambda: sent.extend(sdnotify.notify("WATCHDOG=1") for _ in range(500)))
    sender.start()
    sender.join(60)
    assert not sender.is_alive(), "sd_notify blocked the caller"
    assert sent[0] and not all(sent)  # the first datagrams went through, then the queue was full
    assert stalled.recv(64) == b"WATCHDOG=1"
    monkeypatch.setenv("NOTIFY_SOCKET", "@edgetrt-test-" + str(os.getpid()))
    assert not sdnotify.notify("READY=1")  # nobody listens on that abstract name


def test_watchdog_interval(monkeypatch):
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert sdnotify.watchdog_interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sdnotify.watchdog_interval_s() is None  # meant for another process
    monkeypatch.delenv("WATCHDOG_USEC")
    assert sdnotify.watchdog_interval_s() is None


def test_cli_errors_are_one_line(engine_files, tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing.engine")]) == 1
    assert "engine file" in capsys.readouterr().err
    assert main(["serve", str(engine_files["mlp"]), "--max-batch", "0"]) == 1
    assert "--max-batch is out of range" in capsys.readouterr().err
    assert main(["serve", str(engine_files["mlp"]), f"mlp={engine_files['pair']}"]) == 1
    assert "both named 'mlp'" in capsys.readouterr().err
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["serve", str(engine_files["mlp"]), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


def test_serve_help_has_examples(capsys):
    assert main(["serve", "--help"]) == 0
    assert "Examples" in capsys.readouterr().out
