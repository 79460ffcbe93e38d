import numpy as np
import pytest

from audiomae.audio import SAMPLES_PER_PACKET
from audiomae.loss_models import (
    LossSpec,
    apply_loss,
    bernoulli,
    burst_lengths,
    draw_loss,
    gilbert_elliott,
    loss_rate,
    mean_burst_length,
    parse_condition,
    parse_loss_spec,
    read_trace,
    write_trace,
)


@pytest.mark.parametrize("rate,burst", [(0.05, 1.5), (0.1, 2.0), (0.2, 3.0), (0.3, 1.0)])
def test_gilbert_elliott_stationary_rate_and_burst(rate, burst):
    lost = gilbert_elliott(400_000, rate, burst, np.random.default_rng(1))
    assert lost.dtype == bool and lost.shape == (400_000,)
    assert loss_rate(lost) == pytest.approx(rate, rel=0.05)
    assert mean_burst_length(lost) == pytest.approx(burst, rel=0.05)


def test_gilbert_elliott_start_state_is_stationary():
    # Over many short draws the first packet is lost with the stationary probability.
    rng = np.random.default_rng(2)
    first = [gilbert_elliott(3, 0.2, 3.0, rng)[0] for _ in range(4000)]
    assert np.mean(first) == pytest.approx(0.2, abs=0.03)


def test_bernoulli_rate_and_edges():
    rng = np.random.default_rng(0)
    assert loss_rate(bernoulli(200_000, 0.1, rng)) == pytest.approx(0.1, rel=0.03)
    assert not bernoulli(100, 0.0, rng).any()
    assert bernoulli(100, 1.0, rng).all()
    assert gilbert_elliott(0, 0.1, 2, rng).shape == (0,)
    assert not gilbert_elliott(50, 0.0, 2, rng).any()


@pytest.mark.parametrize(
    "args,match",
    [((0.1, 0.5), "mean burst"), ((1.0, 2.0), r"\[0, 1\)"), ((-0.1, 2.0), r"\[0, 1\)"), ((0.8, 1.0), "> 1")],
)
def test_gilbert_elliott_rejects_bad_parameters(args, match):
    with pytest.raises(ValueError, match=match):
        gilbert_elliott(10, *args, np.random.default_rng(0))


def test_seeding_is_reproducible():
    a = draw_loss("ge10b2", 5000, seed=7)
    assert np.array_equal(a, draw_loss("ge:0.1:2", 5000, seed=7))
    assert not np.array_equal(a, draw_loss("ge10b2", 5000, seed=8))


def test_parse_condition_and_spec():
    assert parse_condition("ge10b2") == ("gilbert_elliott", 0.1, 2.0)
    kind, rate, burst = parse_condition("ge05b1.5")
    assert (kind, burst) == ("gilbert_elliott", 1.5) and rate == pytest.approx(0.05)
    assert parse_condition("ber5") == LossSpec("bernoulli", 0.05, 1.0)
    assert parse_loss_spec("bernoulli:0.1") == LossSpec("bernoulli", 0.1, 1.0)
    assert parse_loss_spec("ge:0.2:3").name == "ge20b3"
    assert parse_condition("ge05b1.5").name == "ge5b1.5"
    for bad in ("ge10", "gx10b2", "ge10b0.5", ""):
        with pytest.raises(ValueError, match="condition"):
            parse_condition(bad)
    for bad in ("ge:0.1", "bernoulli:x", "uniform:0.1", "bernoulli:1.5"):
        with pytest.raises(ValueError, match="loss spec"):
            parse_loss_spec(bad)


def test_trace_round_trip(tmp_path):
    lost = draw_loss("ge20b3", 333, seed=3)
    path = write_trace(tmp_path / "t.txt", lost)
    assert np.array_equal(read_trace(path), lost)
    assert path.read_text().splitlines()[:3] == ["1" if v else "0" for v in lost[:3]]
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]  # no temp files left behind


def test_bad_trace_lines_name_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("0\n1\n2\n0\n")
    with pytest.raises(ValueError, match=r"bad\.txt:3: expected 0 or 1"):
        read_trace(path)
    path.write_text("0\n\n1\n")
    with pytest.raises(ValueError, match=r":2:"):
        read_trace(path)
    path.write_text("0\n1\n\n\n")  # trailing blank lines are fine
    assert read_trace(path).tolist() == [False, True]
    path.write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_trace(path)
    with pytest.raises(FileNotFoundError):
        read_trace(tmp_path / "missing.txt")


def test_statistics():
    lost = np.array([0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1], dtype=bool)
    assert burst_lengths(lost).tolist() == [2, 4, 1]
    assert mean_burst_length(lost) == pytest.approx(7 / 3)
    assert loss_rate(lost) == pytest.approx(7 / 11)
    assert mean_burst_length(np.zeros(5, bool)) == 0.0


def test_apply_loss_zeroes_lost_packets_and_checks_length():
    n = 3 * SAMPLES_PER_PACKET + 100  # a partial last packet
    audio = np.ones(n, dtype=np.float32)
    lossy = apply_loss(audio, np.array([0, 1, 0, 1, 0], bool))  # a longer trace is fine
    assert lossy.shape == (n,) and lossy.dtype == np.float32
    assert lossy[SAMPLES_PER_PACKET : 2 * SAMPLES_PER_PACKET].max() == 0
    assert lossy[3 * SAMPLES_PER_PACKET :].max() == 0
    assert lossy[:SAMPLES_PER_PACKET].min() == 1 and audio.min() == 1
    with pytest.raises(ValueError, match="3 packets.*needs 4"):
        apply_loss(audio, np.zeros(3, bool))
