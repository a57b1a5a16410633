"""Helpers for the artifact-manager compatibility tests (test_artifacts.py,
test_hypha_artifact.py); the ``artifact_server`` / ``artifact_user`` fixtures live in
conftest.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from compat_helpers import unique_id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def user_token(user_id: str, ws: str, secret: str, permission: str = "a", expires_in: int = 3600) -> str:
    """An HS256 JWT for a registered (non-anonymous, non-root) user, in the claim layout of
    Hypha's own tokens, signed with the server's ``HYPHA_JWT_SECRET``."""
    now = int(time.time())
    claims = {
        "iss": "https://amun.ai/",
        "aud": "https://amun-ai.eu.auth0.com/api/v2/",
        "sub": user_id,
        "iat": now,
        "exp": now + expires_in,
        "scope": f"ws:{ws}#{permission} wid:{ws}",
        "gty": "client-credentials",
        "https://amun.ai/roles": [],
        "https://amun.ai/email": f"{user_id}@example.org",
    }
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(sig)}"


@dataclass
class ArtifactUser:
    url: str
    api: Any
    am: Any
    ws: str
    user_id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def art_url(self, alias: str, tail: str = "") -> str:
        return f"{self.url}/{self.ws}/artifacts/{alias}{tail}"


def alias(prefix: str) -> str:
    """A fresh, valid artifact alias."""
    return unique_id(prefix).lower().replace("_", "-")


def http(**kw) -> httpx.AsyncClient:
    kw.setdefault("timeout", 20)
    return httpx.AsyncClient(**kw)


async def upload(url: str, data: bytes) -> None:
    """HTTP PUT the bytes to a put_file URL; the upload must answer exactly 200."""
    async with http() as h:
        r = await h.put(url, content=data)
    assert r.status_code == 200, (r.status_code, r.text[:500])


async def download(url: str) -> bytes:
    async with http(follow_redirects=True) as h:
        r = await h.get(url)
    assert r.status_code == 200, (r.status_code, r.text[:500])
    return r.content


async def put_bytes(am, artifact_id: str, path: str, data: bytes, **kw) -> None:
    url = await am.put_file(artifact_id, file_path=path, **kw)
    assert isinstance(url, str) and url.startswith("http"), url
    await upload(url, data)


async def make_collection(u: ArtifactUser, permissions: dict | None = None, **kw) -> dict:
    return await u.am.create(
        type="collection",
        alias=kw.pop("alias", None) or alias("col"),
        manifest=kw.pop("manifest", None) or {"name": "A collection", "description": "test collection"},
        config={"permissions": permissions if permissions is not None else {"*": "r"}},
        **kw,
    )


async def make_dataset(
    u: ArtifactUser,
    files: dict[str, bytes],
    parent_id: str | None = None,
    manifest: dict | None = None,
    config: dict | None = None,
    **kw,
) -> dict:
    """Creates a staged artifact, uploads ``files``, commits it; returns the committed artifact."""
    create_kw = dict(
        alias=kw.pop("alias", None) or alias("ds"),
        manifest=manifest or {"name": "A dataset", "description": "test dataset"},
        version="stage",
        **kw,
    )
    if parent_id is not None:
        create_kw["parent_id"] = parent_id
    if config is not None:
        create_kw["config"] = config
    art = await u.am.create(**create_kw)
    for path, data in files.items():
        await put_bytes(u.am, art["id"], path, data)
    return await u.am.commit(art["id"])


def err_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def assert_error(exc: BaseException, *needles: str) -> None:
    """The remote error text contains at least one of ``needles`` (case-insensitive)."""
    text = err_text(exc)
    low = text.lower()
    assert any(n.lower() in low for n in needles), f"expected one of {needles!r} in: {text[:1500]}"
