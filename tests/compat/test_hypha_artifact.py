"""The artifact manager driven by the real ``hypha-artifact`` package (0.2.5), an fsspec-like
client that calls ``{server}/public/services/artifact-manager/<method>`` over plain HTTP with
``Authorization: Bearer <token>`` and moves bytes through the presigned URLs it gets back
(artifacts.md §3.9-3.14; multipart §3.10-3.11)."""

from __future__ import annotations

import asyncio
import os

import pytest
from hypha_artifact import AsyncHyphaArtifact, HyphaArtifact

from artifact_helpers import alias, assert_error, download, make_dataset
from compat_helpers import expect_error

MiB = 1024 * 1024


def _client(u, art_alias: str) -> AsyncHyphaArtifact:
    return AsyncHyphaArtifact(f"{u.ws}/{art_alias}", token=u.token, server_url=u.url)


async def test_write_list_read_exists_remove_and_commit(artifact_user):
    u = await artifact_user()
    a = alias("ha")
    await u.am.create(alias=a, manifest={"name": "via hypha-artifact"}, version="stage")
    async with _client(u, a) as art:
        async with art.open("hello.txt", "w") as f:
            await f.write("hello from hypha-artifact")
        async with art.open("data/nums.bin", "wb") as f:
            await f.write(bytes(range(200)))
        # A never-committed draft is listed at v0 without a version.
        assert sorted(await art.ls("/")) == ["data", "hello.txt"]
        await art.commit(comment="first")

        assert sorted(await art.ls("/")) == ["data", "hello.txt"]
        detail = {i["name"]: i for i in await art.ls("data", detail=True)}
        assert detail["nums.bin"]["type"] == "file" and detail["nums.bin"]["size"] == 200
        assert await art.cat("hello.txt") == "hello from hypha-artifact"
        async with art.open("data/nums.bin", "rb") as f:
            assert await f.read() == bytes(range(200))
        assert await art.exists("hello.txt") is True
        assert await art.exists("data") is True
        assert await art.exists("missing.txt") is False
        assert await art.isdir("data") is True
        assert await art.isfile("hello.txt") is True
        assert await art.size("data/nums.bin") == 200
        with pytest.raises(OSError):
            await art.cat("missing.txt")

        await art.edit(stage=True)
        await art.rm("hello.txt")
        await art.commit()
        assert await art.ls("/") == ["data"]
        assert await art.exists("hello.txt") is False

    got = await u.am.read(f"{u.ws}/{a}")
    assert got["staging"] is None and got["file_count"] == 1
    assert [v["version"] for v in got["versions"]] == ["v0"]
    assert got["versions"][0]["comment"] == "first"


async def test_create_edit_new_version_and_discard_through_the_package(artifact_user):
    u = await artifact_user()
    a = alias("hc")
    async with _client(u, a) as art:
        await art.create(manifest={"name": "pkg-made", "description": "d"}, stage=True)
        async with art.open("v0.txt", "w") as f:
            await f.write("zero")
        await art.commit()
        await art.edit(stage=True, version="new", manifest={"name": "pkg-made v1"})
        async with art.open("v1.txt", "w") as f:
            await f.write("one")
        await art.commit()
        assert await art.ls("/") == ["v1.txt"]
        assert await art.ls("/", version="v0") == ["v0.txt"]
        assert await art.cat("v0.txt", version="v0") == "zero"
        await art.edit(stage=True, version="new")
        async with art.open("dropped.txt", "w") as f:
            await f.write("x")
        await art.discard()
        assert await art.ls("/") == ["v1.txt"]
    got = await u.am.read(f"{u.ws}/{a}")
    assert got["created_by"] == u.user_id
    assert got["manifest"]["name"] == "pkg-made v1"
    assert [v["version"] for v in got["versions"]] == ["v0", "v1"]
    assert got["staging"] is None


@pytest.mark.timeout_s(120)
async def test_put_and_get_local_files_including_multipart(artifact_user, tmp_path):
    u = await artifact_user()
    a = alias("hp")
    await u.am.create(alias=a, manifest={"name": "uploads"}, version="stage")
    small = tmp_path / "small.txt"
    small.write_bytes(b"small file\n" * 10)
    big = tmp_path / "big.bin"
    # 11 MiB with 5 MiB chunks: a 3-part multipart upload (the package's minimum chunk size is
    # 5 MiB, which is also S3's minimum part size).
    big_data = os.urandom(11 * MiB)
    big.write_bytes(big_data)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "one.txt").write_text("1")
    (tree / "sub" / "two.txt").write_text("22")
    async with _client(u, a) as art:
        await art.put(str(small), "small.txt")
        await art.put(
            str(big), "blobs/big.bin", multipart_config={"enable": True, "chunk_size": 5 * MiB}
        )
        await art.put(str(tree), "tree", recursive=True)
        await art.commit()

        listing = {i["name"]: i for i in await art.ls("blobs", detail=True)}
        assert listing["big.bin"]["size"] == len(big_data)
        assert sorted(await art.ls("tree")) == ["one.txt", "sub"]

        out = tmp_path / "out"
        await art.get("small.txt", str(out / "small.txt"))
        assert (out / "small.txt").read_bytes() == small.read_bytes()
        await art.get("blobs/big.bin", str(out / "big.bin"))
        assert (out / "big.bin").read_bytes() == big_data
        await art.get("tree", str(out / "tree"), recursive=True)
        assert (out / "tree" / "sub" / "two.txt").read_text() == "22"
        assert (out / "tree" / "one.txt").read_text() == "1"

    got = await u.am.read(f"{u.ws}/{a}")
    assert got["file_count"] == 4
    # The multipart upload ends up as one ordinary object.
    assert await download(await u.am.get_file(got["id"], file_path="blobs/big.bin")) == big_data


async def test_multipart_rpc_calls(artifact_user):
    # The two calls the package makes, over hypha-rpc directly.
    import httpx

    u = await artifact_user()
    art = await u.am.create(alias=alias("mp"), manifest={"name": "mp"}, version="stage")
    part1, part2 = os.urandom(5 * MiB), b"tail bytes"
    info = await u.am.put_file_start_multipart(art["id"], file_path="m.bin", part_count=2)
    assert info["upload_id"] and [p["part_number"] for p in info["parts"]] == [1, 2]
    etags = []
    async with httpx.AsyncClient(timeout=60) as h:
        for part, data in zip(info["parts"], (part1, part2)):
            r = await h.put(part["url"], content=data)
            assert r.status_code == 200, r.text
            etags.append({"part_number": part["part_number"], "etag": r.headers["etag"]})
    res = await u.am.put_file_complete_multipart(art["id"], upload_id=info["upload_id"], parts=etags)
    assert res["success"] is True
    await u.am.commit(art["id"])
    assert await download(await u.am.get_file(art["id"], file_path="m.bin")) == part1 + part2
    await u.am.edit(art["id"], stage=True)
    exc = await expect_error(u.am.put_file_complete_multipart(art["id"], upload_id="no-such-upload", parts=etags))
    assert_error(exc, "expired or not found", "not found")
    exc = await expect_error(u.am.put_file_start_multipart(art["id"], file_path="z.bin", part_count=0))
    assert_error(exc, "part count", "part_count")


async def test_sync_client_reads_a_committed_artifact(artifact_user):
    u = await artifact_user()
    art = await make_dataset(u, {"readme.md": b"# sync", "d/x.txt": b"x"})

    def use_sync():
        # One client per call: the sync wrapper runs every call in a new event loop (in a
        # worker thread) but keeps its httpx client, which breaks a second call.
        def client():
            return HyphaArtifact(art["id"], token=u.token, server_url=u.url)

        return sorted(client().ls("/")), client().cat("readme.md"), client().exists("d/x.txt")

    names, text, exists = await asyncio.to_thread(use_sync)
    assert names == ["d", "readme.md"]
    assert text == "# sync"
    assert exists is True


async def test_package_errors(artifact_user):
    u = await artifact_user()
    art = await make_dataset(u, {"a.txt": b"A"})
    other = await artifact_user("other")
    async with _client(u, art["alias"]) as mine:
        # Writing into a committed (not staged) artifact fails.
        with pytest.raises(Exception) as info:
            async with mine.open("b.txt", "w") as f:
                await f.write("late")
        assert "staging" in str(info.value) or "staging" in repr(info.value.__cause__), info.value
    # Another user cannot read a private artifact.
    async with AsyncHyphaArtifact(art["id"], token=other.token, server_url=u.url) as theirs:
        with pytest.raises(OSError):
            await theirs.cat("a.txt")
        assert await theirs.exists("a.txt") is False
    # An unknown artifact.
    async with _client(u, alias("nope")) as missing:
        assert await missing.exists("a.txt") is False
        with pytest.raises(Exception) as info:
            await missing.ls("/")
        assert "does not exist" in str(info.value) or "KeyError" in str(info.value), info.value
