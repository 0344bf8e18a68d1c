"""
Shared by the property-based test modules (tests/test_data_props.py, tests/test_runtime_inputs_props.py):
the Hypothesis settings, the per-test case counter and its summary, and the odd numbers and shapes both draw.

    from tests.props_common import case_summary, props, record  # noqa: F401 - case_summary: autouse fixture
    @props(400)
    @given(data=st.data())
    def test_x(data): ...; record("x", "returned")

Examples are derandomized (same cases on every run and in CI) and counted per test; each module prints its
summary when it finishes (run pytest with -s to see it).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

COUNTS: dict[str, Counter] = defaultdict(Counter)

FLOATS = ["float16", "float32", "float64"]
INTS = ["int8", "int32", "int64", "uint8", "uint64"]
ODD = ["bool", "U3", "S2", "complex64", "object"]
SPECIAL = [np.nan, np.inf, -np.inf, 1e14, -3e20, 1e30, 3e38, 1e300, 65504.0, 2.0 ** 63]


def props(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.large_base_example])


@pytest.fixture(scope="module", autouse=True)
def case_summary():
    yield
    if COUNTS:
        print("\nHypothesis cases (ran = returned + raised the one-line error):")
        for name, c in COUNTS.items():
            ends = [f"returned {c['returned']}"] + [f"{k} {v}" for k, v in sorted(c.items())
                                                   if k not in ("ran", "returned")]
            print(f"  {name}: ran {c['ran']} = {' + '.join(ends)}")
    COUNTS.clear()


def record(name: str, outcome: str) -> None:
    COUNTS[name]["ran"] += 1
    COUNTS[name][outcome] += 1


@st.composite
def shapes(draw, max_dims=4):
    return tuple(draw(st.lists(st.integers(0, 5), max_size=max_dims)))
