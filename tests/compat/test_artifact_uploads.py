"""Uploads that go wrong, and rhizo's own signed URLs (artifacts.md §8 "HMAC-signed,
expiring URLs served by the Hypha server itself"), with the real hypha-rpc client.

* an upload cut off midway leaves no file, not half of one: the commit still reports the
  file missing, and a second, whole upload then commits;
* a URL rhizo signed, once expired, is refused (403) although its signature is right;
* a multipart upload through rhizo's URLs joins its parts, and refuses a wrong ETag.

The signing key is derived from the JWT secret the suite starts rhizo with, so the test
can sign an already expired URL instead of waiting for the 60 s minimum of
``expires_in``."""

from __future__ import annotations

import hashlib
import hmac
import socket
import time
from urllib.parse import quote, urlsplit

import pytest

from artifact_helpers import alias, assert_error, download, http, put_bytes, upload
from compat_helpers import expect_error
from conftest import TEST_JWT_SECRET


def _served_by(url: str, server: str) -> bool:
    return urlsplit(url).netloc == urlsplit(server).netloc


def _cut_off_put(url: str, total: int, sent: bytes) -> None:
    """PUTs ``url`` announcing ``total`` bytes, sends ``sent`` and closes the connection."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as s:
        target = parts.path + ("?" + parts.query if parts.query else "")
        head = (
            f"PUT {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Length: {total}\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        s.sendall(head.encode() + sent)
        time.sleep(0.3)
    time.sleep(0.5)


@pytest.mark.rhizo_only
async def test_an_upload_cut_off_midway_leaves_no_half_file(artifact_user):
    u = await artifact_user()
    art = await u.am.create(alias=alias("cut"), manifest={"name": "cut"}, version="stage")
    url = await u.am.put_file(art["id"], file_path="big.bin", use_proxy=True)
    assert _served_by(url, u.url), url
    data = bytes(range(256)) * 4096  # 1 MiB
    _cut_off_put(url, len(data), data[: len(data) // 2])
    # Nothing is visible at the path: not in the staged listing, not to a commit.
    staged = await u.am.list_files(art["id"], version="stage")
    assert [f["name"] for f in staged] == [], staged
    exc = await expect_error(u.am.commit(art["id"]))
    assert_error(exc, "FileNotFoundError")
    assert "big.bin" in str(exc)
    # A whole upload to the same URL then commits, with every byte.
    await upload(url, data)
    done = await u.am.commit(art["id"])
    assert done["file_count"] == 1
    assert await download(await u.am.get_file(art["id"], file_path="big.bin", use_proxy=True)) == data


def _sign(key: str, method: str, expires: int) -> str:
    material = hashlib.sha256(
        b"rhizo-service-key\0" + b"artifact-object-url" + b"\0" + TEST_JWT_SECRET.encode()
    ).digest()
    msg = f"rhizo-object-url\n{method}\n{key}\n{expires}".encode()
    return hmac.new(material, msg, hashlib.sha256).hexdigest()


@pytest.mark.rhizo_only
async def test_an_expired_signed_url_is_refused(artifact_user, is_external):
    if is_external:
        pytest.skip("needs the JWT secret the suite starts rhizo with")
    u = await artifact_user()
    art = await u.am.create(alias=alias("exp"), manifest={"name": "e"}, version="stage")
    await put_bytes(u.am, art["id"], "a.txt", b"A", use_proxy=True)
    await u.am.commit(art["id"])
    url = await u.am.get_file(art["id"], file_path="a.txt", use_proxy=True)
    parts = urlsplit(url)
    key = parts.path[len("/s3/"):]
    base = f"{parts.scheme}://{parts.netloc}/s3/{key}"
    async with http() as h:
        # A URL signed the same way, valid for a minute: accepted (the test signs as rhizo does).
        fresh = int(time.time()) + 60
        r = await h.get(f"{base}?method=GET&expires={fresh}&signature={_sign(key, 'GET', fresh)}")
        assert r.status_code == 200 and r.content == b"A", r.status_code
        # Correctly signed, but its time is up: 403.
        past = int(time.time()) - 5
        r = await h.get(f"{base}?method=GET&expires={past}&signature={_sign(key, 'GET', past)}")
        assert r.status_code == 403, r.status_code
        assert "expired" in r.text
        # A GET URL does not allow a PUT, and another key is another signature.
        r = await h.put(f"{base}?method=GET&expires={fresh}&signature={_sign(key, 'GET', fresh)}", content=b"x")
        assert r.status_code == 403, r.status_code
        other = quote(key.rsplit("/", 1)[0] + "/b.txt")
        r = await h.get(f"{parts.scheme}://{parts.netloc}/s3/{other}?method=GET&expires={fresh}&signature={_sign(key, 'GET', fresh)}")
        assert r.status_code == 403, r.status_code
    # The file is unchanged.
    assert await download(url) == b"A"


@pytest.mark.rhizo_only
async def test_multipart_upload_through_rhizo_urls(artifact_user):
    u = await artifact_user()
    art = await u.am.create(alias=alias("mp"), manifest={"name": "mp"}, version="stage")
    start = await u.am.put_file_start_multipart(art["id"], file_path="joined.bin", part_count=3, use_proxy=True)
    assert [p["part_number"] for p in start["parts"]] == [1, 2, 3]
    chunks = [b"a" * 70_000, b"b" * 50_000, b"c" * 10]
    etags = []
    async with http() as h:
        for p, data in zip(start["parts"], chunks):
            assert _served_by(p["url"], u.url), p["url"]
            r = await h.put(p["url"], content=data)
            assert r.status_code == 200, r.status_code
            etags.append(r.headers["etag"])
    parts = [{"part_number": i + 1, "etag": e} for i, e in enumerate(etags)]
    # A wrong ETag, and an upload id of nobody, are refused; nothing is written.
    bad = [dict(parts[0], etag='"0000"')] + parts[1:]
    exc = await expect_error(u.am.put_file_complete_multipart(art["id"], upload_id=start["upload_id"], parts=bad))
    assert_error(exc, "ETag")
    exc = await expect_error(u.am.put_file_complete_multipart(art["id"], upload_id="nope", parts=parts))
    assert_error(exc, "expired or not found")
    # Parts in any order: joined by number.
    done = await u.am.put_file_complete_multipart(art["id"], upload_id=start["upload_id"], parts=list(reversed(parts)))
    assert done["success"] is True
    await u.am.commit(art["id"])
    got = await download(await u.am.get_file(art["id"], file_path="joined.bin", use_proxy=True))
    assert got == b"".join(chunks)
