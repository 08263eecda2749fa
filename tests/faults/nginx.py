"""nginx (Debian's package) as a child process: a round-robin load balancer on a loopback port.

Generated config, ``daemon off``, pid, logs and temp folders in the test's own directory, so
nothing outside it is touched and nothing is left running. Every response carries the
upstream that answered it (``X-Upstream``), so a test can show that its requests were spread
over both processes rather than assume it.

With ``AAYU_REQUIRE_SERVICES=1`` (CI) a missing ``nginx`` fails the test instead of skipping it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.client.server import free_port
from tests.fixtures.services import require

UPSTREAM_HEADER = "X-Upstream"

CONFIG = """\
worker_processes 1;
daemon off;
master_process on;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  upstream aayu {{
{servers}
    keepalive 16;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://aayu;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      add_header {header} $upstream_addr always;
    }}
  }}
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    require("nginx", found is not None)
    assert found is not None
    return found


@dataclass
class Nginx:
    port: int
    root: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def nginx_in_front(upstream_ports: list[int], root: Path) -> Iterator[Nginx]:
    """nginx on a free loopback port, round-robin over ``upstream_ports``."""
    binary = nginx_binary()
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    servers = "\n".join(f"    server 127.0.0.1:{p};" for p in upstream_ports)
    conf = root / "nginx.conf"
    conf.write_text(
        CONFIG.format(root=root, servers=servers, port=port, header=UPSTREAM_HEADER),
        encoding="utf-8",
    )
    checked = subprocess.run(
        [binary, "-t", "-q", "-p", str(root), "-e", str(root / "startup.log"), "-c", str(conf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(
        [binary, "-p", str(root), "-e", str(root / "startup.log"), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, (root / "error.log").read_text(errors="replace")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "nginx did not answer in time"
            time.sleep(0.05)
        yield Nginx(port=port, root=root)
    finally:
        process.terminate()  # SIGTERM: nginx's fast shutdown, master and worker
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
