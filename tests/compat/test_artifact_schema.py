"""A collection's ``collection_schema`` (artifacts.md §1.4, §3.4 step 5): a child's manifest
is checked against it at commit, with the real hypha-rpc client."""

from __future__ import annotations

from artifact_helpers import alias, assert_error, make_collection
from compat_helpers import expect_error

SCHEMA = {
    "type": "object",
    "required": ["name", "description"],
    "properties": {"name": {"type": "string"}, "size": {"type": "integer"}},
}


async def test_commit_checks_the_manifest_against_the_collection_schema(artifact_user):
    u = await artifact_user()
    col = await u.am.create(
        type="collection", alias=alias("schema"),
        manifest={"name": "S", "description": "with a schema"},
        config={"collection_schema": SCHEMA, "permissions": {"*": "r"}},
    )
    child = await u.am.create(
        parent_id=col["id"], alias=alias("child"), manifest={"name": "c", "size": "big"}, stage=True
    )
    exc = await expect_error(u.am.commit(child["id"]))
    assert_error(exc, "ValidationError")
    # Still staged, not committed.
    assert (await u.am.read(child["id"], version="stage"))["staging"] is not None
    await u.am.edit(child["id"], stage=True, manifest={"name": "c", "description": "fixed", "size": 3})
    done = await u.am.commit(child["id"])
    assert [v["version"] for v in done["versions"]] == ["v0"]
    assert done["manifest"]["size"] == 3
    # A collection without a schema takes any manifest.
    free = await make_collection(u)
    other = await u.am.create(parent_id=free["id"], alias=alias("free"), manifest={"size": "big"}, stage=True)
    assert (await u.am.commit(other["id"]))["versions"][0]["version"] == "v0"
