"""DOI and archive records (Zenodo, Figshare, HydroShare, Dataverse, CKAN, Software Heritage)
fetched by repo2docker's content providers from stand-ins of each service on 127.0.0.1,
imported as commits into the mirror store, through the network guard and size limits."""

import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from traitlets.config import Config

from binderlab.errors import LaunchError
from binderlab.repos import archives
from binderlab.repos.mirrors import RepoMirrors
from tests.harness.records import RecordServer, tar_bytes

REQS = b"tabulate==0.9.0\n"
FILES = {"requirements.txt": REQS, "analysis.ipynb": b'{"cells": []}',
         "data/table.csv": b"a,b\n1,2\n"}


@pytest.fixture(scope="module")
def records():
    server = RecordServer()
    yield server
    server.close()


def make(cls, records, tmp_path, blocked=(), max_bytes=0, **settings):
    config = Config()
    exec(records.config(), {"c": config})  # the same lines the real-parts tests use
    for key, value in settings.items():
        setattr(config[cls.__name__], key, value)
    provider = cls(config=config)
    provider.attach(mirrors=RepoMirrors(tmp_path / "git", 60), work_dir=tmp_path / "build",
                    max_bytes=max_bytes)
    provider.test_blocked = list(blocked)
    return provider


async def resolve(provider, raw_spec):
    from binderlab.repos import netguard
    spec = provider.parse(raw_spec)
    return await provider.resolve(spec, netguard.parse_networks(provider.test_blocked))


async def files_of(provider, resolved) -> dict[str, bytes]:
    mirrors = provider.mirrors
    mirror = mirrors.path_for(resolved.spec.clone_url)
    listing = await mirrors._git(mirror, "ls-tree", "-r", "--name-only", resolved.commit)
    return {name: await mirrors.read_file(mirror, resolved.commit, name, 1 << 20)
            for name in listing.split()}


def unique(n=6):
    return str(uuid.uuid4().int)[:n]


# ---- spec formats (BinderHub's) -----------------------------------------------------------

@pytest.mark.parametrize("cls, raw, repo_url", [
    (archives.ZenodoProvider, "10.5281/zenodo.3242074", "https://doi.org/10.5281/zenodo.3242074"),
    (archives.ZenodoProvider, "doi:10.5281/zenodo.3242074",
     "https://doi.org/10.5281/zenodo.3242074"),
    (archives.FigshareProvider, "10.6084/m9.figshare.9782777.v1",
     "https://doi.org/10.6084/m9.figshare.9782777.v1"),
    (archives.DataverseProvider, "10.7910/DVN/TJCLKP", "https://doi.org/10.7910/DVN/TJCLKP"),
    (archives.HydroshareProvider, "b8f6eae9d89241cf8b5904033460af61",
     "https://www.hydroshare.org/resource/b8f6eae9d89241cf8b5904033460af61"),
    (archives.CKANProvider, quote("https://demo.ckan.org/dataset/sample", safe=""),
     "https://demo.ckan.org/dataset/sample"),
    (archives.SwhidProvider, "swh:1:dir:" + "a" * 40,
     "https://archive.softwareheritage.org/swh:1:dir:" + "a" * 40),
])
def test_specs_parse_as_binderhub_writes_them(cls, raw, repo_url):
    spec = cls().parse(raw)
    assert spec.repo_url == repo_url
    assert spec.spec == spec.with_ref("anything")  # no ref: the identifier names a version


@pytest.mark.parametrize("cls, raw", [
    (archives.ZenodoProvider, "zenodo.3242074"),
    (archives.ZenodoProvider, "10.5281/zenodo 3242074"),
    (archives.FigshareProvider, "--upload-pack=x"),
    (archives.DataverseProvider, "10.7910/DVN/TJ\nCLKP"),
    (archives.HydroshareProvider, "not-an-id"),
    (archives.CKANProvider, quote("https://demo.ckan.org/organization/x", safe="")),
    (archives.CKANProvider, quote("file:///etc/dataset/passwd", safe="")),
    (archives.CKANProvider, quote("https://user:pw@demo.ckan.org/dataset/x", safe="")),
    (archives.CKANProvider, quote("https://demo.ckan.org/dataset/a\u202eb", safe="")),
    (archives.ZenodoProvider, quote("10.5281/zenodo.1\u200b", safe="")),
    (archives.SwhidProvider, "swh:1:cnt:" + "a" * 40),
])
def test_malformed_specs_get_a_clear_400(cls, raw):
    with pytest.raises(LaunchError) as e:
        cls().parse(raw)
    assert e.value.status_code == 400 and cls.display_name in str(e.value)


def test_providers_are_entry_points_and_listed():
    from importlib.metadata import entry_points
    names = {e.name for e in entry_points(group="binderlab.repo_providers")}
    assert {"zenodo", "figshare", "hydroshare", "dataverse", "ckan", "swhid"} <= names
    info = archives.ZenodoProvider().info()
    assert info == {"id": "zenodo", "display_name": "Zenodo", "host": "https://zenodo.org",
                    "kind": "record"}


# ---- fetching through repo2docker's providers ---------------------------------------------

async def test_zenodo_record_becomes_a_commit_with_its_files(records, tmp_path):
    rid = unique()
    doi = f"10.5281/zenodo.{rid}"
    records.zenodo(doi, rid, FILES)
    provider = make(archives.ZenodoProvider, records, tmp_path)
    resolved = await resolve(provider, doi)
    assert await files_of(provider, resolved) == FILES
    assert resolved.persistent_spec == doi
    # a second launch of the same DOI needs no network: the record is immutable
    before = len(records.requests)
    again = await resolve(provider, doi)
    assert again.commit == resolved.commit and len(records.requests) == before


async def test_same_files_in_another_version_share_the_tree(records, tmp_path):
    a, b = unique(), unique()
    records.zenodo(f"10.5281/zenodo.{a}", a, FILES)
    records.zenodo(f"10.5281/zenodo.{b}", b, FILES)
    provider = make(archives.ZenodoProvider, records, tmp_path)
    first = await resolve(provider, f"10.5281/zenodo.{a}")
    second = await resolve(provider, f"10.5281/zenodo.{b}")
    trees = [await provider.mirrors.tree_hash(provider.mirrors.path_for(r.spec.clone_url),
                                              r.commit) for r in (first, second)]
    assert trees[0] == trees[1]


async def test_figshare_article_version(records, tmp_path):
    aid = unique(7)
    records.figshare(f"10.6084/m9.figshare.{aid}.v2", aid, "2", FILES)
    provider = make(archives.FigshareProvider, records, tmp_path)
    resolved = await resolve(provider, f"10.6084/m9.figshare.{aid}.v2")
    assert await files_of(provider, resolved) == FILES


async def test_hydroshare_bag(records, tmp_path):
    rid = uuid.uuid4().hex
    records.hydroshare(rid, FILES)
    provider = make(archives.HydroshareProvider, records, tmp_path)
    resolved = await resolve(provider, rid)
    assert await files_of(provider, resolved) == FILES


async def test_dataverse_dataset(records, tmp_path):
    doi = f"10.7910/DVN/T{unique()}"
    records.dataverse(doi, FILES)
    provider = make(archives.DataverseProvider, records, tmp_path)
    resolved = await resolve(provider, doi)
    assert await files_of(provider, resolved) == FILES


async def test_dataverse_host_not_in_installations_is_not_found(records, tmp_path):
    doi = f"10.7910/DVN/T{unique()}"
    records.dataverse(doi, FILES)
    provider = make(archives.DataverseProvider, records, tmp_path,
                    installations=["dataverse.harvard.edu"])
    with pytest.raises(LaunchError) as e:
        await resolve(provider, doi)
    assert e.value.status_code == 404


async def test_ckan_dataset(records, tmp_path):
    flat = {"requirements.txt": REQS, "analysis.ipynb": b"{}"}
    url = records.ckan(f"ds{unique()}", flat)
    provider = make(archives.CKANProvider, records, tmp_path)
    resolved = await resolve(provider, quote(url, safe=""))
    assert await files_of(provider, resolved) == flat


async def test_software_heritage_revision(records, tmp_path):
    rev, directory = uuid.uuid4().hex + "abcdef01", uuid.uuid4().hex + "12345678"
    records.swh(rev, directory, FILES)
    provider = make(archives.SwhidProvider, records, tmp_path)
    resolved = await resolve(provider, f"swh:1:rev:{rev}")
    assert await files_of(provider, resolved) == FILES


async def test_unknown_doi_is_404(records, tmp_path):
    provider = make(archives.ZenodoProvider, records, tmp_path)
    with pytest.raises(LaunchError) as e:
        await resolve(provider, "10.5281/zenodo.999999999")
    assert e.value.status_code == 404


# ---- the guard and the limits -------------------------------------------------------------

async def test_file_on_a_blocked_address_is_refused(records, tmp_path):
    rid = unique()
    records.zenodo(f"10.5281/zenodo.{rid}", rid, {"requirements.txt": REQS})
    # the record's file list points at another address of this machine
    port = records.netloc.split(":")[1]
    records.json[f"/zenodo/api/records/{rid}/files"]["entries"][0]["links"]["content"] = \
        f"http://127.0.0.3:{port}/secret"
    provider = make(archives.ZenodoProvider, records, tmp_path, blocked=["127.0.0.3/32"])
    with pytest.raises(LaunchError) as e:
        await resolve(provider, f"10.5281/zenodo.{rid}")
    assert e.value.status_code == 403 and "127.0.0.3" in str(e.value)
    assert "/secret" not in records.requests
    assert not list((tmp_path / "git").glob("*/binderlab-records.json"))


async def test_redirect_to_a_blocked_address_is_refused(records, tmp_path):
    rid = unique()
    records.zenodo(f"10.5281/zenodo.{rid}", rid, {"requirements.txt": REQS})
    port = records.netloc.split(":")[1]
    records.redirects[f"/zenodo/api/records/{rid}/files/requirements.txt/content"] = \
        f"http://127.0.0.3:{port}/secret-redirect"
    provider = make(archives.ZenodoProvider, records, tmp_path, blocked=["127.0.0.3/32"])
    with pytest.raises(LaunchError) as e:
        await resolve(provider, f"10.5281/zenodo.{rid}")
    assert e.value.status_code == 403
    assert "/secret-redirect" not in records.requests


async def test_whole_service_on_a_blocked_address_is_refused(records, tmp_path):
    provider = make(archives.ZenodoProvider, records, tmp_path, blocked=["127.0.0.0/8"])
    with pytest.raises(LaunchError) as e:
        await resolve(provider, "10.5281/zenodo.1")
    assert e.value.status_code == 403


async def test_http_is_refused_unless_allowed(records, tmp_path):
    rid = unique()
    records.zenodo(f"10.5281/zenodo.{rid}", rid, FILES)
    provider = make(archives.ZenodoProvider, records, tmp_path, allowed_protocols=["https"])
    with pytest.raises(LaunchError) as e:
        await resolve(provider, f"10.5281/zenodo.{rid}")
    assert e.value.status_code == 403 and "http" in str(e.value)


async def test_record_larger_than_the_limit_is_413_and_leaves_nothing(records, tmp_path):
    rid = unique()
    records.zenodo(f"10.5281/zenodo.{rid}", rid, {"requirements.txt": REQS,
                                                  "big.bin": b"x" * 300_000})
    provider = make(archives.ZenodoProvider, records, tmp_path, max_bytes=100_000)
    with pytest.raises(LaunchError) as e:
        await resolve(provider, f"10.5281/zenodo.{rid}")
    assert e.value.status_code == 413
    assert not list((tmp_path / "build").iterdir())  # the half-fetched files are gone


async def test_record_with_too_many_files_is_413(records, tmp_path):
    rid = unique()
    records.zenodo(f"10.5281/zenodo.{rid}", rid, {f"f{i}.txt": b"x" for i in range(5)})
    provider = make(archives.ZenodoProvider, records, tmp_path, max_files=3)
    with pytest.raises(LaunchError) as e:
        await resolve(provider, f"10.5281/zenodo.{rid}")
    assert e.value.status_code == 413 and "5 files" in str(e.value)


async def test_archive_with_an_escaping_path_is_refused(records, tmp_path):
    rev, directory = uuid.uuid4().hex + "0" * 8, uuid.uuid4().hex + "1" * 8
    records.swh(rev, directory, {"ok.txt": b"fine"})
    records.blobs[f"/swh/api/1/vault/directory/{directory}/raw/"] = \
        tar_bytes({"../../escaped.txt": b"gotcha"}, f"{directory}/")
    provider = make(archives.SwhidProvider, records, tmp_path)
    with pytest.raises(LaunchError) as e:
        await resolve(provider, f"swh:1:rev:{rev}")
    assert e.value.status_code == 400 and "escaped.txt" in str(e.value)
    assert str(tmp_path) not in str(e.value)
    assert not any(Path(p).name == "escaped.txt" for p in tmp_path.rglob("*"))


async def test_fetch_timeout_stops_the_worker(records, tmp_path):
    rid = uuid.uuid4().hex
    records.hydroshare(rid, FILES)
    # a bag that is never ready: repo2docker polls every 10 s
    records.redirects[f"/hydroshare/django_s3/download/bags/{rid}.zip"] = \
        f"https://www.hydroshare.org/not-ready/{rid}"
    records.json[f"/hydroshare/not-ready/{rid}"] = {"status": "preparing"}
    provider = make(archives.HydroshareProvider, records, tmp_path, fetch_timeout=2)
    with pytest.raises(LaunchError) as e:
        await resolve(provider, rid)
    assert e.value.status_code == 504


async def test_changing_record_is_fetched_again_after_refresh_interval(records, tmp_path):
    rid = uuid.uuid4().hex
    records.hydroshare(rid, FILES)
    provider = make(archives.HydroshareProvider, records, tmp_path)  # default: 3600 s
    first = await resolve(provider, rid)
    before = len(records.requests)
    assert (await resolve(provider, rid)).commit == first.commit
    assert len(records.requests) == before  # reused within the interval
    # the resource changed in place; with no reuse the launch sees the new files
    records.hydroshare(rid, {**FILES, "analysis.ipynb": b'{"cells": [1]}'},
                       modified="2025-01-01T00:00:00.000000Z")
    provider.refresh_interval = 0
    changed = await resolve(provider, rid)
    assert len(records.requests) > before and changed.commit != first.commit
    assert (await files_of(provider, changed))["analysis.ipynb"] == b'{"cells": [1]}'


async def test_worker_memory_limit_applies(records, tmp_path):
    rid = unique()
    records.zenodo(f"10.5281/zenodo.{rid}", rid, FILES)
    provider = make(archives.ZenodoProvider, records, tmp_path, fetch_memory_mb=1)
    with pytest.raises(LaunchError) as e:
        await resolve(provider, f"10.5281/zenodo.{rid}")
    assert e.value.status_code == 502 and "more memory" in str(e.value)
    assert not list((tmp_path / "git").glob("*/binderlab-records.json"))


def test_connections_go_to_the_checked_address_only():
    from binderlab.repos import archivefetch, netguard
    seen = []
    connect = archivefetch.guarded_connect(netguard.parse_networks(["127.0.0.3/32"]),
                                           {"proxy.internal"},
                                           lambda address, *a, **k: seen.append(address))
    connect(("localhost", 80))
    assert seen[-1][0] in ("127.0.0.1", "::1")  # the resolved address, not the name again
    with pytest.raises(archivefetch.FetchRefused) as e:
        connect(("127.0.0.3", 443))
    assert e.value.status == 403 and len(seen) == 1
    connect(("proxy.internal", 3128))  # the operator's proxy is not looked up here
    assert seen[-1] == ("proxy.internal", 3128)
