"""A real `mlflow models serve` process: same numbers as in process, 4xx for bad input."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import numpy as np
import pytest
import zarr

from tests.serve.test_registry import project  # noqa: F401  (module fixture)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, payload: dict | bytes, content_type="application/json") -> tuple[int, dict]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=payload if isinstance(payload, bytes) else json.dumps(payload).encode(),
        headers={"Content-Type": content_type},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _serve(lab: dict, model_uri: str):
    """A real `mlflow models serve` process for ``model_uri``; yields its port."""
    from spinfer.faults.process import served, venv_env
    from spinfer.serve.registry import promote, register
    from spinfer.tracking import resolve_uri

    params, root = lab["params"], lab["root"]
    register(params, root)
    promote(params, root)
    env = venv_env(MLFLOW_TRACKING_URI=resolve_uri(params.tracking.uri, root))
    with served(model_uri, env) as port:
        yield port


@pytest.fixture(scope="module")
def server(project):  # noqa: F811
    yield from _serve(project, "models:/spinfer@champion")


@pytest.fixture(scope="module")
def compact_server(project):  # noqa: F811
    yield from _serve(project, "models:/spinfer-compact@champion")


def test_served_numbers_match_in_process_prediction(server, project, tiny_data):  # noqa: F811
    import mlflow

    texture = zarr.open_array(tiny_data["textures"] / "spins", mode="r")[:2]
    status, body = _post(server, {"inputs": texture.tolist()})
    assert status == 200, body
    rows = body["predictions"]
    model = mlflow.pyfunc.load_model("models:/spinfer@champion")
    local = model.predict(np.asarray(texture, dtype=np.float32))
    for j, row in enumerate(rows):
        for key in ("lambda", "K", "D", "lambda_n", "K_n", "D_n", "lambda_std", "K_std", "D_std"):
            assert row[key] == pytest.approx(float(local[key].iloc[j]), abs=1e-5)
        assert all(row[f"{k}_std"] > 0 for k in ("lambda", "K", "D"))  # served uncertainty


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (np.ones((1, 16, 16, 2)).tolist(), "shape"),
        ([[[[float("nan"), 0.0, 1.0]] * 16] * 16], "NaN"),
        ((2 * np.ones((1, 16, 16, 3))).tolist(), "unit vectors"),
        (np.ones((1, 8, 8, 3)).tolist(), "at least 16x16"),
    ],
)
def test_bad_requests_get_4xx_and_the_next_good_one_works(server, tiny_data, payload, needle):
    body = json.dumps({"inputs": payload}).replace("NaN", "NaN")
    req = urllib.request.Request(
        f"http://127.0.0.1:{server}/invocations",
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=60)
    assert 400 <= err.value.code < 500
    message = json.loads(err.value.read())["message"]
    assert needle in message
    assert len(message) < 2000  # names the problem, does not echo the payload
    good = zarr.open_array(tiny_data["textures"] / "spins", mode="r")[:1]
    status, _ = _post(server, {"inputs": good.tolist()})
    assert status == 200


def test_larger_images_are_centre_cropped_or_cut_into_a_grid(server, tiny_data):
    tex = zarr.open_array(tiny_data["textures"] / "spins", mode="r")[0]
    big = np.tile(tex, (2, 2, 1))[None]  # 32 x 32 periodic copy: 4 panels equal to tex
    status, centre = _post(server, {"inputs": big.tolist()})
    assert status == 200 and len(centre["predictions"]) == 1
    status, grid = _post(server, {"inputs": big.tolist(), "params": {"crops": "grid"}})
    assert status == 200 and len(grid["predictions"]) == 4
    values = {round(row["K"], 6) for row in grid["predictions"]}
    assert len(values) == 1  # the four panels are the same texture


def test_compact_requests_give_the_tensor_models_numbers(compact_server, project, tiny_data):  # noqa: F811
    """JSON (base64 rows) and Parquet bodies to the compact variant of the champion."""
    import mlflow

    from spinfer.serve.pyfunc import compact_request, encode_compact

    texture = np.asarray(zarr.open_array(tiny_data["textures"] / "spins", mode="r")[:3])
    local = mlflow.pyfunc.load_model("models:/spinfer@champion").predict(texture)
    parquet = encode_compact(texture).to_parquet()
    for body, kind in ((compact_request(texture), "application/json"),
                       (parquet, "application/vnd.apache.parquet")):  # fmt: skip
        status, out = _post(compact_server, body, kind)
        assert status == 200, out
        rows = out["predictions"]
        assert len(rows) == 3
        for j, row in enumerate(rows):
            for key in ("lambda", "K", "D", "lambda_std", "K_std", "D_std", "K_n"):
                assert row[key] == pytest.approx(float(local[key].iloc[j]), abs=1e-5)


def test_bad_compact_requests_get_4xx_naming_the_problem(compact_server, tiny_data):
    from spinfer.serve.pyfunc import compact_request

    good = np.asarray(zarr.open_array(tiny_data["textures"] / "spins", mode="r")[:1])
    short = compact_request(good)
    short["dataframe_split"]["data"][0][1] = 17  # lx no longer matches the bytes
    mixed = compact_request(np.concatenate([good, good]))
    mixed["dataframe_split"]["data"][1][1:] = [8, 8]
    nan = good.copy()
    nan[0, 3, 3, 0] = np.nan
    for payload, needle in ((short, "bytes, expected"), (mixed, "same lx, ly"),
                            (compact_request(nan), "NaN")):  # fmt: skip
        status, out = _post(compact_server, payload)
        assert 400 <= status < 500, out
        assert needle in out["message"] and len(out["message"]) < 2000
    status, _ = _post(compact_server, compact_request(good))
    assert status == 200
