"""The audit pages' tamper check compares stored and hashed values as the canonical form
would, without serializing both sides: same answer for any JSON-like values."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from console.audit.chain import _same, canonical_json
from tests.property.conftest import SCALE

scalars = st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["", "a", "1"])
values = st.recursive(
    scalars | st.floats(allow_nan=False, min_value=-2, max_value=2),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300 * SCALE)
@given(a=values, b=values)
def test_same_is_equality_of_the_canonical_forms(a, b):
    assert _same(a, b) == (canonical_json(a) == canonical_json(b))
    assert _same(a, a)


@settings(max_examples=100 * SCALE)
@given(a=values)
def test_a_changed_leaf_is_never_the_same(a):
    # The stored copy with one boolean turned into its integer (True -> 1): JSON tells them apart.
    def swap(v):  # type: ignore[no-untyped-def]
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, list):
            return [swap(x) for x in v]
        if isinstance(v, dict):
            return {k: swap(x) for k, x in v.items()}
        return v

    swapped = swap(a)
    assert _same(a, swapped) == (canonical_json(a) == canonical_json(swapped))
