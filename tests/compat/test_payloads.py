"""Payload fidelity, large messages (message_cache chunking, protocol.md §5.1) and numpy."""

import hashlib
import os

import numpy as np
import pytest

from compat_helpers import unique_id

MiB = 1024 * 1024


@pytest.fixture
async def echo_pair(connect):
    """(provider, consumer, proxy) across two workspaces; proxy has echo/make/digest."""
    prov = await connect(client_id=unique_id("prov"))
    info = await prov.register_service(
        {
            "id": "payload",
            "config": {"visibility": "public"},
            "echo": lambda x: x,
            "make": lambda n: bytes(range(256)) * (n // 256) + b"\x00" * (n % 256),
            "digest": lambda data: [len(data), hashlib.sha256(data).hexdigest()],
        }
    )
    cons = await connect(client_id=unique_id("cons"))
    assert cons.config.workspace != prov.config.workspace
    return prov, cons, await cons.get_service(info["id"])


async def test_structured_values_round_trip(echo_pair):
    _, _, svc = echo_pair
    value = {
        "str": "héllo wörld ✓ 🚀",
        "int": 2**53 - 1,
        "neg": -(2**40),
        "float": 3.25,
        "bool": [True, False],
        "none": None,
        "list": [1, "two", [3, {"four": 4}]],
        "bytes": b"\x00\x01\xff",
        "empty": {"list": [], "dict": {}, "str": "", "bytes": b""},
    }
    assert await svc.echo(value) == value


@pytest.mark.parametrize("size_mib", [1, 10])
@pytest.mark.timeout_s(60)
async def test_large_bytes_echo(echo_pair, size_mib):
    _, _, svc = echo_pair
    data = os.urandom(size_mib * MiB)
    result = await svc.echo(data)
    assert isinstance(result, bytes)
    assert len(result) == len(data)
    assert result == data


@pytest.mark.timeout_s(60)
async def test_large_argument_reaches_provider_intact(echo_pair):
    _, _, svc = echo_pair
    data = os.urandom(10 * MiB)
    assert await svc.digest(data) == [len(data), hashlib.sha256(data).hexdigest()]


@pytest.mark.timeout_s(60)
async def test_large_return_value(echo_pair):
    _, _, svc = echo_pair
    n = 10 * MiB
    result = await svc.make(n)
    assert len(result) == n
    assert result[:512] == bytes(range(256)) * 2
    assert hashlib.sha256(result).hexdigest() == hashlib.sha256(
        bytes(range(256)) * (n // 256)
    ).hexdigest()


async def test_large_string_echo(echo_pair):
    _, _, svc = echo_pair
    text = "abcdefghij" * 200_000  # 2 MB of str
    assert await svc.echo(text) == text


async def test_numpy_arrays_round_trip(echo_pair):
    _, _, svc = echo_pair
    a = np.random.default_rng(0).standard_normal((64, 33)).astype(np.float32)
    b = np.arange(-500, 500, dtype=np.int64)
    ra = await svc.echo(a)
    rb = await svc.echo(b)
    assert isinstance(ra, np.ndarray) and isinstance(rb, np.ndarray)
    assert ra.dtype == np.float32 and ra.shape == (64, 33)
    assert rb.dtype == np.int64 and rb.shape == (1000,)
    np.testing.assert_array_equal(ra, a)
    np.testing.assert_array_equal(rb, b)


@pytest.mark.timeout_s(60)
async def test_large_numpy_array(echo_pair):
    _, _, svc = echo_pair
    a = np.random.default_rng(1).random((1024, 1024), dtype=np.float64)  # 8 MiB
    r = await svc.echo(a)
    np.testing.assert_array_equal(r, a)
