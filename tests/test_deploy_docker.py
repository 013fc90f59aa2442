"""deploy/docker: the one-box production deployment, checked as far as this machine allows.

- the systemd unit passes `systemd-analyze verify` (systemd's own parser; this machine has
  no systemd running, so the unit is not started by systemd here);
- the example binderlab_config.py and the hub overlay load with traitlets, every option
  they set exists, and they agree with nginx's configuration;
- nginx's site passes `nginx -t` (Debian's nginx) with test certificates;
- logrotate's file rotates a log for real (Debian's logrotate, own state file);
- install.sh places the files (DESTDIR) and keeps an operator's edits;
- end to end: the unit's ExecStart, Environment and EnvironmentFile run `binderlab up` with
  the example configuration (ports and state dir moved for the test), behind the real nginx
  site over TLS; the binder service, JupyterHub's API and the http->https redirect answer
  on one host name.
"""

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from requests.adapters import HTTPAdapter
from traitlets.config import Config, PyFileConfigLoader

TOP = Path(__file__).resolve().parent.parent
DOCKER = TOP / "deploy" / "docker"
UNIT = DOCKER / "binderlab.service"
EXAMPLE = DOCKER / "binderlab_config.py"
HUB_OVERLAY = DOCKER / "jupyterhub_config.py"
NGINX = DOCKER / "nginx" / "binderlab.conf"
HOST = "binder.example.org"
HUB_HOST = "hub.example.org"  # sessions: <user>.hub.example.org


def need(tool: str) -> str:
    path = shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}")
                                       if os.access(p, os.X_OK)), None)
    if path is None:  # the harness installs them: fail, do not skip
        pytest.fail(f"{tool} is not installed; run tests/harness/setup.sh")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file; a key may repeat (Environment=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def binderlab_executable() -> str:
    path = Path(sys.executable).parent / "binderlab"
    assert path.exists(), "binderlab is not installed in this Python"
    return str(path)


# ---- the systemd unit ----------------------------------------------------------------------

def test_unit_passes_systemd_analyze_verify(tmp_path):
    tool = need("systemd-analyze")
    unit = parse_unit(UNIT)
    argv = shlex.split(unit["Service"]["ExecStart"][0])
    assert argv[0] == "/opt/binderlab/.venv/bin/binderlab"
    # verify checks that the command exists: point it at this machine's binderlab
    text = UNIT.read_text().replace(argv[0], binderlab_executable())
    text = text.replace("/opt/binderlab/.venv/bin/python",
                        str(Path(binderlab_executable()).parent / "python"))
    (tmp_path / "binderlab.service").write_text(text)
    result = subprocess.run([tool, "verify", "--man=no", str(tmp_path / "binderlab.service")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout + result.stderr == "", \
        result.stdout + result.stderr


def test_unit_sets_up_session_isolation_before_the_service(monkeypatch):
    service = parse_unit(UNIT)["Service"]
    [pre] = service["ExecStartPre"]
    argv = shlex.split(pre.lstrip("+"))
    assert pre.startswith("+")  # iptables and the network need root; the service does not
    assert argv[1:4] == ["-m", "binderlab.platform.isolation", "apply"]
    from binderlab.platform import isolation

    env = dict(e.split("=", 1) for e in service["Environment"])
    assert env["BINDERLAB_SESSION_NETWORK"] == isolation.SESSION_NETWORK
    # the hub then puts sessions there
    monkeypatch.setenv("BINDERLAB_SESSION_NETWORK", env["BINDERLAB_SESSION_NETWORK"])
    assert load_hub_overlay(monkeypatch).DockerSpawner.network_name == isolation.SESSION_NETWORK
    # and the hub port the rules let sessions reach is the hub's own
    hub_port = int(argv[argv.index("--hub-port") + 1])
    assert urlparse(load_example().UpApp.hub_internal_url).port == hub_port


def test_verify_would_catch_a_mistake(tmp_path):
    """The check above can fail: a misspelt directive is reported."""
    tool = need("systemd-analyze")
    text = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    text = text.replace("/opt/binderlab/.venv/bin/binderlab", binderlab_executable())
    (tmp_path / "binderlab.service").write_text(text)
    result = subprocess.run([tool, "verify", "--man=no", str(tmp_path / "binderlab.service")],
                            capture_output=True, text=True, timeout=60)
    assert "Unknown key" in result.stdout + result.stderr


def test_unit_runs_up_as_its_own_user_with_state_restart_and_hardening():
    service = parse_unit(UNIT)["Service"]
    one = {k: v[-1] for k, v in service.items()}
    argv = shlex.split(one["ExecStart"])
    assert argv[1:] == ["up", "--config", "/etc/binderlab/binderlab_config.py"]
    assert one["User"] == "binderlab" and one["SupplementaryGroups"] == "docker"
    assert one["StateDirectory"] == "binderlab" and one["WorkingDirectory"] == \
        "/var/lib/binderlab"
    assert one["Restart"] == "on-failure"
    assert one["NoNewPrivileges"] == "yes" and one["ProtectSystem"] == "strict"
    assert one["CapabilityBoundingSet"] == ""
    assert "AF_UNIX" in one["RestrictAddressFamilies"]  # the Docker socket
    # what would break it: hidden GPU device files, no JIT for the Node.js proxy
    assert one.get("PrivateDevices", "no") == "no"
    assert "MemoryDenyWriteExecute" not in service
    assert one["EnvironmentFile"].startswith("-")  # optional
    unit = parse_unit(UNIT)["Unit"]
    assert "docker.service" in unit["Requires"][0] and "docker.service" in unit["After"][0]
    # the state dir matches the example configuration
    assert load_example().BinderLab.state_dir == "/var/lib/binderlab"


# ---- the example configuration and the hub overlay -----------------------------------------

def load_example(path: Path = EXAMPLE) -> Config:
    return PyFileConfigLoader(path.name, str(path.parent)).load_config()


def configurables() -> dict[str, type]:
    from binderlab.app import BinderLab
    from binderlab.builders.repo2docker import Repo2DockerBuilder
    from binderlab.commands.up import UpApp
    from binderlab.gpus.allocator import GPUAllocator, StaticGPUInventory
    from binderlab.repos.providers import GitHubRepoProvider, GitRepoProvider
    from binderlab.sessions.launcher import HubLauncher

    classes = [BinderLab, UpApp, HubLauncher, Repo2DockerBuilder, GPUAllocator,
               StaticGPUInventory, GitRepoProvider, GitHubRepoProvider]
    return {cls.__name__: cls for cls in classes}


def test_example_config_compiles_and_sets_only_real_options():
    compile(EXAMPLE.read_text(), str(EXAMPLE), "exec")
    config = load_example()
    known = configurables()
    for section, settings in config.items():
        assert section in known, f"c.{section} is not a binderlab class"
        traits = known[section].class_traits(config=True)
        for name in settings:
            assert name in traits, f"c.{section}.{name} is not an option"
            assert (traits[name].help or "").strip(), f"c.{section}.{name} has no help"


def test_example_config_values_are_valid(monkeypatch):
    from binderlab.commands.up import UpApp
    from binderlab.gpus.allocator import GPUAllocator
    from binderlab.sessions.launcher import HubLauncher

    monkeypatch.setenv("BINDERLAB_WEBHOOK_SECRET", "from-the-env-file")
    config = load_example()
    app = UpApp(config=config)  # traits validate their values when the config is applied
    assert app.public_url == f"https://{HOST}/" and app.base_url == "/"
    assert app.ip == "127.0.0.1"
    assert app.github_webhook_secret == "from-the-env-file"
    assert app.hub_config_file == "/etc/binderlab/jupyterhub_config.py"
    launcher = HubLauncher(config=config)
    assert launcher.hub_url == f"https://{HUB_HOST}/"  # sessions apart from the service
    assert launcher.api_url("/") == "http://127.0.0.1:8000/hub/api/"
    gpus = GPUAllocator(devices=[], tracker=None, config=config)
    assert gpus.max_gpus_per_session == 1


def load_hub_overlay(monkeypatch, public_url=f"https://{HUB_HOST}/", bind=None) -> Config:
    monkeypatch.setenv("BINDERLAB_HUB_PUBLIC_URL", public_url)
    monkeypatch.setenv("BINDERLAB_SERVICE_TOKEN", "t" * 64)
    if bind:
        monkeypatch.setenv("BINDERLAB_PROXY_BIND_URL", bind)
    return load_example(HUB_OVERLAY)


def test_hub_overlay_keeps_the_shipped_wiring_and_moves_the_proxy(monkeypatch):
    config = load_hub_overlay(monkeypatch)
    # the shipped wiring is there
    assert config.JupyterHub.spawner_class == "binderlab"
    assert [s["name"] for s in config.JupyterHub.services][:1] == ["binderlab"]
    # the proxy on loopback, where nginx and c.HubLauncher.hub_api_url expect it; the
    # public URL told, not guessed
    assert config.JupyterHub.bind_url == "http://127.0.0.1:8000"
    assert config.JupyterHub.public_url == f"https://{HUB_HOST}/"
    # every session on an origin of its own, under the hub's name, not the service's
    assert config.JupyterHub.subdomain_host == f"https://{HUB_HOST}"
    example = load_example()
    assert example.HubLauncher.hub_api_url.startswith(config.JupyterHub.bind_url + "/")
    assert example.HubLauncher.hub_url == f"https://{HUB_HOST}/"
    assert example.BinderLab.public_url == f"https://{HOST}/"


# ---- nginx ---------------------------------------------------------------------------------

def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={HOST}", "-addext",
                    f"subjectAltName=DNS:{HOST},DNS:{HUB_HOST},DNS:*.{HUB_HOST}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def nginx_site(tmp_path: Path, https: int, http: int, service: int, hub: int) -> Path:
    """The shipped site, with test certificates, ports and a main file of its own."""
    cert, key = self_signed(tmp_path)
    site = NGINX.read_text()
    for name in (HOST, HUB_HOST):
        site = site.replace(f"/etc/letsencrypt/live/{name}/fullchain.pem", str(cert))
        site = site.replace(f"/etc/letsencrypt/live/{name}/privkey.pem", str(key))
    site = re.sub(r"listen (\[::\]:)?443 ", lambda m: f"listen {m.group(1) or '127.0.0.1:'}"
                  f"{https} ", site)
    site = re.sub(r"listen (\[::\]:)?80;", lambda m: f"listen {m.group(1) or '127.0.0.1:'}"
                  f"{http};", site)
    site = site.replace("[::]:", "[::1]:")
    site = site.replace("server 127.0.0.1:8585;", f"server 127.0.0.1:{service};")
    site = site.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{hub};")
    (tmp_path / "binderlab.conf").write_text(site)
    main = tmp_path / "nginx.conf"
    for sub in ("logs", "tmp"):
        (tmp_path / sub).mkdir(exist_ok=True)
    main.write_text(f"""
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/logs/error.log warn;
worker_processes 1;
events {{ worker_connections 64; }}
http {{
    access_log {tmp_path}/logs/access.log;
    client_body_temp_path {tmp_path}/tmp/body;
    proxy_temp_path {tmp_path}/tmp/proxy;
    fastcgi_temp_path {tmp_path}/tmp/fastcgi;
    uwsgi_temp_path {tmp_path}/tmp/uwsgi;
    scgi_temp_path {tmp_path}/tmp/scgi;
    include {tmp_path}/binderlab.conf;
}}
""")
    return main


def nginx_test(main: Path) -> subprocess.CompletedProcess:
    return subprocess.run([need("nginx"), "-t", "-c", str(main), "-p", str(main.parent)],
                          capture_output=True, text=True, timeout=60)


def test_nginx_site_passes_nginx_t(tmp_path):
    result = nginx_test(nginx_site(tmp_path, 8443, 8080, 8585, 8000))
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_t_would_catch_a_mistake(tmp_path):
    main = nginx_site(tmp_path, 8443, 8080, 8585, 8000)
    site = tmp_path / "binderlab.conf"
    site.write_text(site.read_text().replace("proxy_buffering off;", "proxy_buffering of;"))
    assert nginx_test(main).returncode != 0


def server_blocks(site: str) -> dict[str, str]:
    """nginx's TLS server blocks by server_name (one level of nested braces)."""
    blocks = re.findall(r"server \{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}", site)
    return {re.search(r"server_name ([^;]+);", b).group(1): b for b in blocks
            if "ssl_certificate " in b}


def test_nginx_routes_agree_with_binderlab_config():
    site = NGINX.read_text()
    config = load_example()
    upstreams = dict(re.findall(r"upstream (\w+) \{\s*server ([\d.:]+);", site))
    assert upstreams["binderlab_service"] == f"{config.BinderLab.ip}:{config.BinderLab.port}"
    hub_api = config.HubLauncher.hub_api_url
    assert hub_api.startswith(f"http://{upstreams['binderlab_hub']}/")
    blocks = server_blocks(site)
    assert set(blocks) == {HOST, f"{HUB_HOST} *.{HUB_HOST}"}
    assert config.BinderLab.public_url == f"https://{HOST}/"
    assert config.HubLauncher.hub_url == f"https://{HUB_HOST}/"
    service, hub = blocks[HOST], blocks[f"{HUB_HOST} *.{HUB_HOST}"]
    locations = dict(re.findall(r"location (/[^ ]*|= /metrics) \{\s*([^}]*)\}", service))
    assert "proxy_pass http://binderlab_service;" in locations["/"]
    assert "proxy_buffering off;" in locations["/"]  # the event stream
    assert "deny all;" in locations["= /metrics"]
    # nothing a repository controls on the service's name; the hub's name strips the
    # header that would widen a session's service worker
    assert "binderlab_hub" not in service
    assert "proxy_pass http://binderlab_hub;" in hub and "binderlab_service" not in hub
    assert "proxy_hide_header Service-Worker-Allowed;" in hub


# ---- logrotate -----------------------------------------------------------------------------

def test_logrotate_rotates_the_hub_log(tmp_path):
    tool = need("logrotate")
    log = tmp_path / "state" / "jupyterhub.log"
    log.parent.mkdir(mode=0o700)
    log.write_text("hub log line\n" * 100)
    text = (DOCKER / "logrotate.conf").read_text()
    assert "/var/lib/binderlab/jupyterhub.log" in text
    text = text.replace("/var/lib/binderlab/jupyterhub.log", str(log))
    text = text.replace("su binderlab binderlab", "su root root")  # no such user here
    conf = tmp_path / "binderlab"
    conf.write_text(text)
    conf.chmod(0o644)
    state = tmp_path / "logrotate.state"
    hub = open(log, "ab")  # the hub holds its log open in append mode (hub.py)
    debug = subprocess.run([tool, "-d", "-s", str(state), str(conf)], capture_output=True,
                           text=True, timeout=60)
    assert debug.returncode == 0, debug.stderr
    forced = subprocess.run([tool, "-f", "-s", str(state), str(conf)], capture_output=True,
                            text=True, timeout=60)
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "state" / "jupyterhub.log.1").read_text().startswith("hub log line")
    assert log.exists() and log.stat().st_size == 0
    # the hub's next line lands in the live log, not in the rotated copy (copytruncate)
    hub.write(b"after rotation\n")
    hub.close()
    assert log.read_text() == "after rotation\n"


# ---- install.sh ----------------------------------------------------------------------------

def test_install_script_places_files_and_keeps_edits(tmp_path):
    env = {**os.environ, "DESTDIR": str(tmp_path)}
    first = subprocess.run(["bash", str(DOCKER / "install.sh")], env=env, capture_output=True,
                           text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    expected = {
        "etc/binderlab/binderlab_config.py": (EXAMPLE, 0o644),
        "etc/binderlab/jupyterhub_config.py": (HUB_OVERLAY, 0o644),
        "etc/binderlab/binderlab.env": (DOCKER / "binderlab.env.example", 0o600),
        "etc/systemd/system/binderlab.service": (UNIT, 0o644),
        "etc/logrotate.d/binderlab": (DOCKER / "logrotate.conf", 0o644),
        "etc/nginx/sites-available/binderlab": (NGINX, 0o644),
    }
    for rel, (source, mode) in expected.items():
        path = tmp_path / rel
        assert path.read_bytes() == source.read_bytes(), rel
        assert path.stat().st_mode & 0o777 == mode, rel
    edited = tmp_path / "etc/binderlab/binderlab_config.py"
    edited.write_text(edited.read_text() + "\n# the operator's edit\n")
    second = subprocess.run(["bash", str(DOCKER / "install.sh")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert edited.read_text().endswith("# the operator's edit\n")
    assert "kept      /etc/binderlab/binderlab_config.py" in second.stdout


def test_env_file_example_is_what_the_hub_reads():
    names = {line.split("=", 1)[0] for line in
             (DOCKER / "binderlab.env.example").read_text().splitlines()
             if line and not line.startswith("#")}
    hub_config = (TOP / "jupyterhub_config.py").read_text() + HUB_OVERLAY.read_text() + \
        EXAMPLE.read_text()
    for name in names:
        assert f'"{name}"' in hub_config or f"'{name}'" in hub_config, name


# ---- end to end: the unit's command behind the real nginx site ------------------------------

def unit_environment(tmp_path: Path) -> dict[str, str]:
    service = parse_unit(UNIT)["Service"]
    env = {}
    for item in service.get("Environment", []):
        key, _, value = item.partition("=")
        env[key] = value
    env_file = DOCKER / "binderlab.env.example"  # installed as the EnvironmentFile
    for line in env_file.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


class PublicName(HTTPAdapter):
    """Connect to 127.0.0.1 but speak TLS to binder.example.org (SNI, certificate name)."""

    def init_poolmanager(self, *args, **kwargs):
        kwargs["server_hostname"] = HOST
        kwargs["assert_hostname"] = HOST
        return super().init_poolmanager(*args, **kwargs)


@pytest.mark.docker
@pytest.mark.slow
def test_the_service_starts_from_the_unit_behind_nginx(tmp_path, docker_client):
    ports = {name: free_port() for name in
             ("service", "proxy", "hub", "proxy_api", "https", "http")}
    state = tmp_path / "state"
    # the example configuration, with this test's ports and state dir appended
    config = tmp_path / "binderlab_config.py"
    config.write_text(EXAMPLE.read_text() + f"""
# ---- test overrides ----
c.BinderLab.port = {ports['service']}
c.BinderLab.state_dir = {str(state)!r}
c.BinderLab.image_disk_budget_gb = 0
c.HubLauncher.hub_api_url = "http://127.0.0.1:{ports['proxy']}/hub/api"
c.UpApp.hub_config_file = {str(HUB_OVERLAY)!r}
c.UpApp.hub_internal_url = "http://127.0.0.1:{ports['hub']}"
c.UpApp.proxy_api_url = "http://127.0.0.1:{ports['proxy_api']}"
""")
    service = parse_unit(UNIT)["Service"]
    argv = shlex.split(service["ExecStart"][0])
    argv[0] = binderlab_executable()
    argv[argv.index("--config") + 1] = str(config)
    env = {**os.environ, **unit_environment(tmp_path)}
    env["HOME"] = str(tmp_path)
    env["PATH"] = os.environ["PATH"]  # this machine's venv and configurable-http-proxy
    env["BINDERLAB_PROXY_BIND_URL"] = f"http://127.0.0.1:{ports['proxy']}"
    state.mkdir()
    log = open(tmp_path / "binderlab.log", "wb")
    proc = subprocess.Popen(argv, cwd=state, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    nginx = None

    def logs() -> str:
        text = (tmp_path / "binderlab.log").read_text(errors="replace")[-6000:]
        hub = state / "jupyterhub.log"
        if hub.exists():
            text += "\n--- jupyterhub.log ---\n" + hub.read_text(errors="replace")[-6000:]
        return text

    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, logs()
            assert time.monotonic() < deadline, logs()
            try:
                requests.get(f"http://127.0.0.1:{ports['service']}/versions", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.3)
        (tmp_path / "nginx").mkdir()
        main = nginx_site(tmp_path / "nginx", ports["https"], ports["http"], ports["service"],
                          ports["proxy"])
        assert nginx_test(main).returncode == 0
        nginx = subprocess.Popen([need("nginx"), "-c", str(main), "-p", str(main.parent),
                                  "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
        # as a browser would reach binder.example.org: TLS checked against the test
        # certificate for that name (SNI included), the connection to this machine
        session = requests.Session()
        session.trust_env = False  # no proxy, no CA bundle from the environment
        session.verify = str(tmp_path / "nginx" / "cert.pem")
        session.mount("https://", PublicName())
        base = f"https://127.0.0.1:{ports['https']}"
        deadline = time.monotonic() + 30
        while True:
            try:
                versions = session.get(f"{base}/versions", headers={"Host": HOST}, timeout=5)
                break
            except requests.ConnectionError:
                assert nginx.poll() is None, nginx.stderr.read().decode()
                assert time.monotonic() < deadline
                time.sleep(0.2)
        # / and everything not /hub/ or /user/: the binder service
        assert versions.status_code == 200 and "binderlab" in versions.json()
        index = session.get(f"{base}/", headers={"Host": HOST}, timeout=10)
        assert index.status_code == 200 and "<html" in index.text.lower()
        # hub.example.org: JupyterHub, through its proxy on loopback
        hub = session.get(f"{base}/hub/api/", headers={"Host": HUB_HOST}, timeout=10)
        assert hub.status_code == 200 and "version" in hub.json(), hub.text
        # a session's own name: the hub's proxy answers; with none running, JupyterHub
        # sends the browser to the hub's page for that server
        user = session.get(f"{base}/user/nobody/api/status",
                           headers={"Host": f"nobody.{HUB_HOST}"}, timeout=10,
                           allow_redirects=False)
        assert user.status_code == 302, user.text
        assert f"https://{HUB_HOST}/hub/user/nobody/" in user.headers["Location"]
        # and the service's name serves nothing of the hub's
        assert session.get(f"{base}/hub/api/", headers={"Host": HOST},
                           timeout=10).status_code == 404
        # the event stream passes unbuffered, with its type
        with session.get(f"{base}/build/gh/o/r/HEAD", headers={
                "Host": HOST, "Accept": "text/event-stream"}, timeout=30, stream=True) as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            first = next(stream.iter_lines(decode_unicode=True))
            assert first.startswith(("data:", ":"))
        # plain http goes to https
        redirect = session.get(f"http://127.0.0.1:{ports['http']}/v2/gh/o/r/HEAD",
                               headers={"Host": HOST}, allow_redirects=False, timeout=10)
        assert redirect.status_code == 301
        assert redirect.headers["Location"] == f"https://{HOST}/v2/gh/o/r/HEAD"
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # what systemd sends (KillMode=mixed)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        # the example config keeps sessions and the proxy on exit (an upgrade must not end
        # them); `binderlab down`, as the stop message says, stops what was kept
        down = subprocess.run([binderlab_executable(), "down", "--config", str(config)],
                              cwd=state, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, logs()  # a clean stop on SIGTERM
    assert down.returncode == 0, down.stdout + down.stderr
    assert "proxy" in down.stdout + down.stderr, down.stdout + down.stderr
