"""RTP receive path: the jitter buffer, and a clip sent through loopback sockets with loss,
reordering and duplicates comes out as the offline ``conceal()`` of the same trace."""

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from audiomae.audio import SAMPLES_PER_PACKET, load_audio
from audiomae.cli import main
from audiomae.loss_models import as_loss_spec, draw_loss, n_packets, read_trace
from audiomae.plc import OpusReceiver, conceal, make_concealer
from audiomae.plc.demo import demo_clip_path
from audiomae.plc.opus import OpusConcealer

rtp = pytest.importorskip("audiomae.rtp")
pytest.importorskip("aiortc")
P = SAMPLES_PER_PACKET


def test_jitter_buffer_reorders_and_reports():
    jb = rtp.JitterBuffer(depth=2)
    got = []
    # 65534, 65535, 0 (wrapped), 1 lost, 3 before 2, a duplicate of 0, then 1 far too late
    for seq in (65534, 65535, 0, 3, 2, 0, 4, 5, 1):
        got += jb.put(seq, bytes([seq & 0xFF]))
    got += jb.end()
    assert [i for i, _ in got] == list(range(8))
    assert [i for i, p in got if p is None] == [3]
    assert jb.stats.line() == "received 7, lost 1, late 1, duplicates 1, concealed 1"


def test_jitter_buffer_knows_the_stream_start_and_end():
    jb = rtp.JitterBuffer(depth=3)
    jb.start_at(100)  # the sender's report: packets 100 and 101 never arrive
    got = jb.put(102, b"x") + jb.end(last=105)
    assert [(i, p) for i, p in got] == [(0, None), (1, None), (2, b"x"), (3, None), (4, None), (5, None)]


def _loopback(clip, lost, method, payload="l16", **send):
    concealer = make_concealer(method)  # before sending: building it takes longer than the stream
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(
            zip(("audio", "stats"), rtp.receive(sock, concealer, payload, idle_timeout=2.0))
        )
    )
    thread.start()
    rtp.send(clip, sock.getsockname(), lost, payload=payload, interval=0.002, **send)
    thread.join(timeout=60)
    sock.close()
    return result["audio"], result["stats"]


@pytest.mark.parametrize("method", ["lpc", "lpc-la1"])
def test_loopback_stream_equals_offline_conceal(method):
    clip = load_audio(demo_clip_path())[: 16000 * 2 + 123]
    n = n_packets(clip.size)
    lost = draw_loss(as_loss_spec("ge20b3"), n, 4)
    lost[[0, -1]] = True  # the stream's first and last packets too: the sender's reports say so
    audio, stats = _loopback(clip, lost, method, seed=7, reorder=0.15, duplicate=0.1)
    assert audio.shape == (n * P,)
    assert stats.lost == stats.concealed == int(lost.sum()) and stats.late == 0
    assert stats.received == n - int(lost.sum()) and stats.duplicates > 0
    sent = np.zeros(n * P, dtype=np.float32)
    sent[: clip.size] = rtp.l16_quantise(clip)
    np.testing.assert_allclose(audio, conceal(sent, lost, method), atol=1e-6)


def test_opus_stream_is_received_and_concealed():
    pytest.importorskip("opuslib_next")
    clip = load_audio(demo_clip_path())[:16000]
    n = n_packets(clip.size)
    lost = draw_loss(as_loss_spec("ge10b2"), n, 1)
    audio, stats = _loopback(clip, lost, "g711", payload="opus", seed=2, reorder=0.1)
    assert audio.shape == (n * P,) and np.isfinite(audio).all()
    assert stats.concealed == int(lost.sum()) and stats.received == n - int(lost.sum())
    # the same as OpusReceiver fed the sender's payloads in order, with the trace's losses
    payloads = OpusConcealer().encode_stream(clip)
    receiver = OpusReceiver(make_concealer("g711"))
    direct = [receiver.push(None if lost[i] else payloads[i]) for i in range(n)] + [receiver.flush()]
    np.testing.assert_allclose(audio, np.concatenate(direct), atol=1e-6)


def test_rtp_commands_over_loopback(tmp_path):
    """The two commands as the README shows them, the receiver in a process of its own. The
    sender starts when the receiver says it listens, however long building its concealer
    takes; the receiver binds a free port itself (``--port 0``) and prints it."""
    out, trace = tmp_path / "out.wav", tmp_path / "trace.txt"
    clip_path = demo_clip_path()
    command = [sys.executable, "-m", "audiomae.cli", "rtp-receive", "--port", "0", "-o", str(out),
               "--timeout", "2"]  # fmt: skip
    with open(tmp_path / "stderr.txt", "w") as errors:
        receiver = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    watchdog = threading.Timer(120, receiver.kill)  # a receiver that never listens fails, not hangs
    watchdog.start()
    try:
        line = receiver.stdout.readline()
        while line and "listening on" not in line:
            line = receiver.stdout.readline()
        assert "listening on 127.0.0.1:" in line, (tmp_path / "stderr.txt").read_text()
        port = int(line.split("listening on 127.0.0.1:")[1].split()[0])
        sent_rc = main(
            ["rtp-send", str(clip_path), "--to", f"127.0.0.1:{port}", "--loss", "ge10b2", "--seed", "3",
             "--reorder", "0.05", "--trace", str(trace), "--interval-ms", "2"]
        )  # fmt: skip
        printed = receiver.communicate()[0]
    finally:
        watchdog.cancel()
        if receiver.poll() is None:
            receiver.kill()
    assert (sent_rc, receiver.returncode) == (0, 0), (tmp_path / "stderr.txt").read_text()
    lost = read_trace(trace)
    assert f"lost {int(lost.sum())}, late 0" in printed and f"concealed {int(lost.sum())}" in printed
    clip = load_audio(clip_path)
    sent = np.zeros(lost.size * P, dtype=np.float32)
    sent[: clip.size] = rtp.l16_quantise(clip)
    received = load_audio(out)
    assert received.size == lost.size * P
    assert np.abs(received - conceal(sent, lost, "lpc")).max() <= 1.5 / 32768  # the 16-bit file


def test_send_rejects_a_short_trace():
    with pytest.raises(ValueError, match="covers 3 packets"):
        rtp.send(np.zeros(10 * P, dtype=np.float32), ("127.0.0.1", 9), np.zeros(3, dtype=bool))


def test_rtp_receive_runs_the_model_it_is_given(tmp_path, monkeypatch, capsys):
    from audiomae.plc.models import is_residual

    served = []

    def receive(sock, concealer, **options):
        served.append(concealer)
        return np.zeros(P, dtype=np.float32), rtp.ReceiveStats()

    monkeypatch.setattr(rtp, "receive", receive)
    model = str(Path(demo_clip_path()).parent / "plc_residual_speech")
    base = ["rtp-receive", "--port", "0", "-o", str(tmp_path / "out.wav"), "--model", model]
    assert main(base + ["--method", "mae"]) == 0
    assert "listening on 127.0.0.1:" in capsys.readouterr().out
    assert is_residual(served[0].model)
    # A method that runs no model refuses one before it listens.
    assert main(base + ["--method", "lpc"]) == 2
    captured = capsys.readouterr()
    assert "--model: method 'lpc' runs no model" in captured.err and "listening" not in captured.out


def test_rtp_receive_lpc_listens_without_loading_a_model(tmp_path, monkeypatch, capsys):
    """The default receive path runs no model, so it neither loads nor quantises one before it
    listens."""
    import audiomae.plc.models as models
    from audiomae.model import AudioMAE

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    for name in ("_cached_default_model", "load_default_plc_model", "int8_copy"):
        monkeypatch.setattr(models, name, refuse)
    monkeypatch.setattr(AudioMAE, "from_pretrained", classmethod(refuse))
    served = []

    def receive(sock, concealer, **options):
        served.append(concealer)
        return np.zeros(P, dtype=np.float32), rtp.ReceiveStats()

    monkeypatch.setattr(rtp, "receive", receive)
    out = tmp_path / "out.wav"
    assert main(["rtp-receive", "--port", "0", "-o", str(out), "--method", "lpc"]) == 0
    assert "listening on 127.0.0.1:" in capsys.readouterr().out
    assert not served[0]._model.loaded and out.is_file()
