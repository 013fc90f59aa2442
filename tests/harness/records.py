"""Stand-ins on 127.0.0.1 for the record services repo2docker's content providers talk to.

One HTTP server answers, under its own path prefix each, what the real APIs document and
repo2docker reads: the DOI resolver's handle API (doi.org/api/handles), Zenodo's records
and files API, Figshare's articles API and download host, HydroShare's metadata and bag
download (with its redirect to the bag host), a Dataverse installation's datasets and
access API, a CKAN site's action API, and Software Heritage's revision and vault API.
Links inside the JSON are the services' public URLs, as the real ones send; the service
under test routes those base URLs here (``c.ZenodoProvider.host`` etc.).
"""

import io
import json
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit


def zip_bytes(files: dict[str, bytes], prefix: str = "") -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in files.items():
            z.writestr(prefix + name, data)
    return out.getvalue()


def tar_bytes(files: dict[str, bytes], prefix: str = "") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


class RecordServer:
    """Publish records with ``zenodo(...)``, ``figshare(...)``, ...; read ``requests``."""

    def __init__(self):
        self.dois: dict[str, str] = {}  # DOI -> URL it resolves to
        self.json: dict[str, object] = {}  # path (with query) -> JSON answer
        self.blobs: dict[str, bytes] = {}  # path -> bytes
        self.redirects: dict[str, str] = {}  # path -> Location
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.do_GET()

            def do_GET(self):
                server.requests.append(self.path)
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                if path.startswith("/doi/api/handles/"):
                    doi = path.removeprefix("/doi/api/handles/")
                    if doi not in server.dois:
                        return self.answer(404, {"responseCode": 100, "handle": doi})
                    return self.answer(200, {"responseCode": 1, "handle": doi, "values": [
                        {"index": 1, "type": "URL",
                         "data": {"format": "string", "value": server.dois[doi]}}]})
                key = path + ("?" + unquote(parts.query) if parts.query else "")
                for candidate in (key, path, path.rstrip("/")):
                    if candidate in server.redirects:
                        self.send_response(302)
                        self.send_header("Location", server.redirects[candidate])
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return None
                    if candidate in server.json:
                        return self.answer(200, server.json[candidate])
                    if candidate in server.blobs:
                        data = server.blobs[candidate]
                        self.send_response(200)
                        self.send_header("Content-Type", "application/octet-stream")
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        return None
                return self.answer(404, {"status": 404, "message": "not found"})

            def answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.netloc = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.url = f"http://{self.netloc}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def config(self) -> str:
        """binderlab config lines that route every provider's public hosts here."""
        u = self.url
        return f"""
for cls in ("ZenodoProvider", "FigshareProvider", "HydroshareProvider", "DataverseProvider",
            "CKANProvider", "SwhidProvider"):
    c[cls].doi_resolver = "{u}/doi"
    c[cls].allowed_protocols = ["https", "http"]
c.ZenodoProvider.host = "{u}/zenodo"
c.FigshareProvider.host = "{u}/figshare"
c.FigshareProvider.routes = {{"https://api.figshare.com": "{u}/figshare-api",
                             "https://ndownloader.figshare.com": "{u}/figshare-dl"}}
c.HydroshareProvider.host = "{u}/hydroshare"
c.DataverseProvider.installations = ["{self.netloc}"]
c.SwhidProvider.host = "{u}/swh"
"""

    # ---- publishing, one method per service -----------------------------------------

    def zenodo(self, doi: str, record_id: str, files: dict[str, bytes]) -> None:
        api = f"https://zenodo.org/api/records/{record_id}"
        self.dois[doi] = f"https://zenodo.org/records/{record_id}"
        self.json[f"/zenodo/api/records/{record_id}"] = {
            "id": int(record_id), "doi": doi, "links": {"files": f"{api}/files"},
            "metadata": {"upload_type": "software", "title": "A paper's code"}}
        self.json[f"/zenodo/api/records/{record_id}/files"] = {"entries": [
            {"key": name, "size": len(data),
             "links": {"content": f"{api}/files/{quote(name)}/content"}}
            for name, data in files.items()]}
        for name, data in files.items():
            self.blobs[f"/zenodo/api/records/{record_id}/files/{name}/content"] = data

    def figshare(self, doi: str, article_id: str, version: str,
                 files: dict[str, bytes]) -> None:
        self.dois[doi] = f"https://figshare.com/articles/software/code/{article_id}/{version}"
        entries = []
        for n, (name, data) in enumerate(files.items()):
            file_id = f"{article_id}{version}{n}"
            entries.append({"id": int(file_id), "name": name, "size": len(data),
                            "is_link_only": False,
                            "download_url": f"https://ndownloader.figshare.com/files/{file_id}"})
            self.blobs[f"/figshare-dl/files/{file_id}"] = data
        self.json[f"/figshare-api/v2/articles/{article_id}/versions/{version}"] = {
            "id": int(article_id), "version": int(version), "files": entries}

    def hydroshare(self, resource_id: str, files: dict[str, bytes],
                   modified: str = "2024-05-06T07:08:09.123456Z") -> None:
        self.json[f"/hydroshare/hsapi/resource/{resource_id}/scimeta/elements"] = {
            "dates": [{"type": "created", "start_date": "2024-01-01T00:00:00.000000Z"},
                      {"type": "modified", "start_date": modified}]}
        self.redirects[f"/hydroshare/django_s3/download/bags/{resource_id}.zip"] = \
            f"https://s3.hydroshare.org/bags/{resource_id}.zip"
        self.blobs[f"/hydroshare/s3/bags/{resource_id}.zip"] = zip_bytes(
            files, f"{resource_id}/data/contents/")

    def dataverse(self, doi: str, files: dict[str, bytes]) -> None:
        self.dois[doi] = f"{self.url}/dataset.xhtml?persistentId=doi:{doi}"
        entries = []
        for n, (name, data) in enumerate(files.items()):
            file_id = 1000 + len(self.blobs) + n
            folder, _, label = name.rpartition("/")
            entries.append({"label": label, "directoryLabel": folder,
                            "dataFile": {"id": file_id, "filesize": len(data)}})
            self.blobs[f"/api/access/datafile/{file_id}"] = data
        self.json[f"/api/datasets/:persistentId?persistentId=doi:{doi}"] = {
            "status": "OK", "data": {"latestVersion": {"files": entries}}}

    def ckan(self, name: str, files: dict[str, bytes]) -> str:
        """Publish a CKAN dataset; return its dataset page URL."""
        api = "/ckan/api/3/action/"
        self.json[api + "status_show"] = {"success": True, "result": {"ckan_version": "2.10"}}
        resources = []
        for n, (fname, data) in enumerate(files.items()):
            path = f"/ckan/dataset/{name}/resource/r{n}/download/{fname}"
            resources.append({"id": f"r{n}", "url": self.url + path})
            self.blobs[path] = data
        self.json[f"{api}package_show?id={name}"] = {"success": True, "result": {
            "name": name, "metadata_modified": "2024-05-06T07:08:09.123456",
            "resources": resources}}
        return f"{self.url}/ckan/dataset/{name}"

    def swh(self, revision: str, directory: str, files: dict[str, bytes]) -> None:
        base = "/swh/api/1"
        self.json[f"{base}/revision/{revision}/"] = {"id": revision, "directory": directory}
        raw = f"https://archive.softwareheritage.org/api/1/vault/directory/{directory}/raw/"
        self.json[f"{base}/vault/directory/{directory}/"] = {"status": "done",
                                                            "fetch_url": raw}
        self.blobs[f"{base}/vault/directory/{directory}/raw/"] = tar_bytes(
            files, f"{directory}/")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
