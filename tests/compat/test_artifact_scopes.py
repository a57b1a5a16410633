"""The static view (§4.4), and workspace-scoped principals (artifacts.md §2.1: ``"<ws>/*"`` applies only when the
caller's *current* workspace is ``<ws>``) over the HTTP routes, which name a workspace in
the URL: visiting ``/<ws>/artifacts/…`` must not make a caller a member of ``<ws>``."""

from __future__ import annotations

import pytest

from artifact_helpers import alias, http, make_dataset


@pytest.mark.rhizo_only
async def test_a_url_workspace_does_not_grant_workspace_scoped_permissions(artifact_user):
    owner = await artifact_user("owner")
    other = await artifact_user("other")
    scoped = await make_dataset(
        owner, {"a.txt": b"A"}, alias=alias("scoped"),
        config={"permissions": {f"{owner.ws}/*": "r"}},
    )
    async with http() as h:
        listing = await h.get(f"{owner.url}/{owner.ws}/artifacts/", headers=other.auth)
        assert listing.status_code == 200, listing.text[:300]
        assert scoped["id"] not in [a["id"] for a in listing.json()]
        found = await h.get(f"{owner.url}/{owner.ws}/artifacts/-/search", headers=other.auth)
        assert scoped["id"] not in [a["id"] for a in found.json()]
        r = await h.get(owner.art_url(scoped["alias"]), headers=other.auth)
        assert r.status_code == 403, r.status_code
        r = await h.get(owner.art_url(scoped["alias"], "/files/a.txt"), params={"use_proxy": "true"}, headers=other.auth)
        assert r.status_code == 403, r.status_code
        # The owner, whose current workspace it is, sees it.
        listing = await h.get(f"{owner.url}/{owner.ws}/artifacts/", headers=owner.auth)
        assert scoped["id"] in [a["id"] for a in listing.json()]


async def test_static_view_serves_index_and_files(artifact_user):
    u = await artifact_user()
    site = await make_dataset(
        u, {"index.html": b"<h1>home</h1>", "docs/page.html": b"<p>page</p>"},
        alias=alias("site"), config={"permissions": {"*": "r"}},
    )
    async with http() as h:
        r = await h.get(f"{u.url}/{u.ws}/view/{site['alias']}/")
        assert r.status_code == 200 and r.content == b"<h1>home</h1>", (r.status_code, r.text[:200])
        assert r.headers["content-type"].startswith("text/html")
        r = await h.get(f"{u.url}/{u.ws}/view/{site['alias']}/docs/page.html")
        assert r.status_code == 200 and r.content == b"<p>page</p>"
        r = await h.get(f"{u.url}/{u.ws}/view/{site['alias']}/missing.html")
        assert r.status_code == 404
    after = await u.am.read(site["id"], silent=True)
    assert after["view_count"] >= 3
