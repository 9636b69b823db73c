"""The compact request encoding: exact round trip and one-line refusals (no server)."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import pytest

from spinfer.serve.pyfunc import (
    COMPACT_COLUMNS,
    InputRejected,
    compact_request,
    decode_compact,
    encode_compact,
)


def _spins(n=2, lx=12, ly=9, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, lx, ly, 3))
    return (s / np.linalg.norm(s, axis=-1, keepdims=True)).astype(np.float32)


def test_encoding_round_trips_bit_for_bit_including_non_square_images():
    spins = _spins()
    frame = encode_compact(spins)
    assert list(frame.columns) == list(COMPACT_COLUMNS) and len(frame) == 2
    assert np.array_equal(decode_compact(frame), spins)
    body = compact_request(spins)["dataframe_split"]
    assert body["columns"] == list(COMPACT_COLUMNS)
    raw = [base64.b64decode(row[0]) for row in body["data"]]
    assert raw == list(frame["spins"]) and body["data"][0][1:] == [12, 9]
    assert np.array_equal(decode_compact(encode_compact(spins[0])), spins[:1])  # one image


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        (np.zeros((1, 4, 4, 3)), "takes a table"),
        (pd.DataFrame({"spins": [b""], "lx": [4]}), "missing column(s) ly"),
        (pd.DataFrame({"spins": [], "lx": [], "ly": []}), "empty"),
        (pd.DataFrame({"spins": ["abc"], "lx": [1], "ly": [1]}), "must be bytes"),
        (pd.DataFrame({"spins": [b"\0" * 12], "lx": [0], "ly": [1]}), "positive"),
        (pd.DataFrame({"spins": [b"\0" * 12], "lx": [None], "ly": [1]}), "integers"),
        (pd.DataFrame({"spins": [b"\0" * 8], "lx": [1], "ly": [1]}), "8 bytes, expected 12"),
        (pd.DataFrame({"spins": [b"\0" * 12] * 2, "lx": [1, 2], "ly": [1, 1]}), "same lx, ly"),
    ],
)
def test_malformed_tables_are_refused_naming_the_problem(frame, needle):
    with pytest.raises(InputRejected) as err:
        decode_compact(frame)
    assert needle in str(err.value)
