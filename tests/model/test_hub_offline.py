"""Hub-only pretrained weights fail fast and clearly when the hub cannot be reached."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lookalike._io import reachable
from lookalike.errors import WeightsError
from lookalike.model.backbones import build_backbone


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    yield port


def test_reachable_tells_open_from_closed(closed_port: int) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert reachable(f"http://127.0.0.1:{server.getsockname()[1]}")
    assert not reachable(f"http://127.0.0.1:{closed_port}")
    assert not reachable("not a url")


@pytest.mark.parametrize("name", ["efficientnet_b0", "timm:resnet10t"])
def test_unreachable_hub_fails_without_asking_timm(
    name: str, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOOKALIKE_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")
    import timm

    asked: list[Any] = []
    real = timm.create_model

    def spy(arch: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("pretrained"):
            asked.append(arch)  # the hub client would retry for ~50 s here
        return real(arch, *args, **{**kwargs, "pretrained": False})

    monkeypatch.setattr(timm, "create_model", spy)
    start = time.perf_counter()
    with pytest.raises(WeightsError, match=r"cannot be reached.*--no-pretrained"):
        build_backbone(name, pretrained=True)
    assert asked == []
    assert time.perf_counter() - start < 20  # was ~50 s of hub retries; generous on busy CI
