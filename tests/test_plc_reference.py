"""Every concealer's output on the demo clip equals the stored reference (16-bit PCM resolution).

The references (``tests/data/plc_reference.npz``) were written by ``tests/plc_reference.py``; a
change that alters any concealer's output fails here. Rewrite them only for an intended change.
"""

import numpy as np
import plc_reference as ref
import pytest


@pytest.fixture(scope="module")
def stored():
    return ref.load()


@pytest.fixture(scope="module")
def clean():
    return ref.clip()


def test_references_cover_every_registered_method(stored):
    cases = {k.split("|")[0] for k in stored}
    assert cases == set(ref.methods()) | set(ref.EXTRA)
    assert {k.split("|")[1] for k in stored} == set(ref.CONDITIONS)


@pytest.mark.parametrize("condition", ref.CONDITIONS)
@pytest.mark.parametrize("case", [*ref.methods(), *ref.EXTRA])
def test_output_equals_reference(case, condition, stored, clean):
    expected = ref.reference(case, condition, clean, stored) / ref.SCALE
    got = ref.conceal_case(case, condition, clean)
    assert got.shape == expected.shape
    diff = np.abs(got.astype(np.float64) - expected)
    worst = int(np.argmax(diff))
    assert diff[worst] <= ref.ATOL, f"{case} at {condition}: sample {worst} differs by {diff[worst]:.3g}"
