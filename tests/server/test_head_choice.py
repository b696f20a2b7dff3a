"""The REST side of the page's labelling and training answers (issue 15, items 3 and 12):

- the same two images (by content, in either order) are one labelled pair: a second label
  is 409 with the reason, and the list keeps the file names;
- after head training, the better of head and plain cosine on the held-out pairs serves:
  a head that did worse is not used, and the job says which one is (``used``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server_helpers import (
    client_fixture,  # noqa: F401 (the client fixture)
    glyph,
    labelled_pairs,
    model_dir_fixture,  # noqa: F401 (the model_dir fixture)
    png_bytes,
    state_of,
)

A, B = png_bytes(glyph(1)), png_bytes(glyph(2))


def add(client: TestClient, a: tuple[str, bytes], b: tuple[str, bytes], label: str) -> Any:
    return client.post("/api/pairs", files={"a": a, "b": b}, data={"label": label})


def test_the_same_pair_twice_is_refused_in_either_order(client: TestClient) -> None:
    assert add(client, ("a.png", A), ("b.png", B), "same").status_code == 201
    for again in (add(client, ("b.png", B), ("a.png", A), "different"),
                  add(client, ("copy-of-a.png", A), ("b.png", B), "same")):  # fmt: skip
        assert again.status_code == 409, again.text
        detail = again.json()["detail"]
        assert "already labelled 'same'" in detail and "a.png & b.png" in detail
    listed = client.get("/api/pairs").json()
    assert [(p["a_name"], p["b_name"]) for p in listed["pairs"]] == [("a.png", "b.png")]
    assert (
        add(client, ("a.png", A), ("a2.png", png_bytes(glyph(3))), "different").status_code == 201
    )


def train(client: TestClient) -> dict[str, Any]:
    for i, (a, b, label) in enumerate(labelled_pairs(8)):
        assert add(client, (f"{i}a.png", a), (f"{i}b.png", b), label).status_code == 201
    started = client.post("/api/train-head", json={"steps": 5})
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(started.json()["url"]).json()
        if job["state"] != "running":
            return job
        time.sleep(0.1)
    raise AssertionError("the training job did not finish")


@pytest.mark.parametrize(("head", "cosine", "used"), [(0.25, 0.75, "cosine"), (0.75, 0.75, "head")])
def test_the_better_of_head_and_cosine_serves(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, head: float, cosine: float, used: str
) -> None:
    from lookalike.training import fewshot

    real = fewshot.train_head_on_pairs

    def measured(*args: Any, **kwargs: Any) -> fewshot.HeadReport:
        # A real training run whose held-out figures are set: which one serves follows them.
        report = real(*args, **kwargs)
        return dataclasses.replace(report, holdout_accuracy=head, cosine_holdout_accuracy=cosine)

    monkeypatch.setattr(fewshot, "train_head_on_pairs", measured)
    job = train(client)
    assert job["state"] == "succeeded", job
    assert job["used"] == used and job["n_holdout"] == 2
    served = state_of(client).model.head
    answer = client.post("/api/compare", files={"a": ("a.png", A), "b": ("b.png", B)}).json()
    if used == "cosine":
        assert served is None and answer["probability"] is None
        assert not state_of(client).head_dir.joinpath("head.json").exists()
    else:
        assert served is not None and answer["probability"] is not None
