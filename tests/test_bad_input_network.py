"""Bad input on the network endpoints (issue 29, class 4): unknown URL schemes for downloads, MLflow and Ray,
127.0.0.1 ports nobody listens on and a local HTTP server answering errors.

Every refused case ends in exit code 2 with one ``genbench: error:`` line (at most two on stderr), no traceback,
within the deadline, and nothing is written outside the folder the command was given (the ``home`` fixture,
tests/conftest.py). A command that would go on has its stage stubbed (``Reached``). No internet.
"""

from __future__ import annotations

import contextlib
import http.server
import re
import socket
import threading
import time
import types
from unittest import mock

import pytest

from bad_input_helpers import _cli_lines as _cli
from bad_input_helpers import _reached
from conftest import refused as _refused
from genbench.errors import GenbenchError

def _free_port() -> int:
    """A 127.0.0.1 port nobody listens on (bound then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
# --------------------------------------------------------------------------------------------------------------
# 4. Network endpoints

BAD_URLS = ["ftp://example.org/mnist.pkl.gz", "file:///etc/passwd", "gopher://x/", "javascript:alert(1)",
            "http://", "https:///x", "http://a b/", "http://x:99999/", "mnist.pkl.gz", "//host/x", "http://x\n/"]


@pytest.mark.parametrize("url", BAD_URLS)
def test_fetch_url_scheme_refused_when_parsed(url, home):
    t0 = time.monotonic()
    with mock.patch("genbench.data.fetch_dataset", _reached):
        _refused(*_cli("data", "fetch", "mnist", "--url", url), "--url")
    assert time.monotonic() - t0 < 10


BAD_URIS = ["gopher://host/", "ftp://host/x", "http://", "http://host:0/", "https://:5000", "s3://bucket/x",
            "ldap://x", "mysql://", "file:///tmp/\x01x", "x\ny"]


@pytest.mark.parametrize("uri", BAD_URIS)
def test_mlflow_uri_scheme_refused_when_parsed(uri, home):
    with mock.patch("genbench.studies.stages.run_study", _reached):
        _refused(*_cli("run", "--log", "mlflow", "--mlflow-uri", uri), "--mlflow-uri")


BAD_ADDRESSES = ["bogus", "http://127.0.0.1:6379", "ray://", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000",
                 "host name:6379", ":6379", "ray://x:99999"]


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_ray_address_refused_when_parsed(address, home):
    with mock.patch("genbench.studies.trials.run_trials", _reached):
        _refused(*_cli("run", "--engine", "ray", "--seeds", "2", "--address", address), "--address")


def _skip_waits(monkeypatch) -> list[float]:
    """The waits between tries, recorded instead of slept: genbench's TCP probe (``PROBE_WAIT`` 0; its waits are
    added back as (tries - 1) x the real ``PROBE_WAIT``), pooch's between downloads and urllib3's backoff (MLflow's
    HTTP retries). Returns the list the recorded waits go to (seconds)."""
    import pooch.core
    from urllib3.util.retry import Retry

    from genbench.io import limits

    waits: list[float] = []
    monkeypatch.setattr(limits, "PROBE_WAIT", 0.0)
    monkeypatch.setattr(pooch.core, "time", types.SimpleNamespace(sleep=waits.append))
    monkeypatch.setattr(Retry, "_sleep_backoff", lambda self: waits.append(max(0.0, self.get_backoff_time())))
    return waits


def _probe_waits(line: str) -> float:
    """The seconds genbench's TCP probe would have waited between the tries its error line counts."""
    from genbench.io import PROBE_WAIT

    m = re.search(r"(\d+) tr(?:y|ies) over", line)
    return (int(m.group(1)) - 1) * PROBE_WAIT if m else 0.0


def test_unreachable_endpoints_fail_fast_in_one_line(home, monkeypatch):
    """Nothing listening: MLflow (option and environment), a Ray cluster, a download mirror; each one line naming
    the endpoint and the tries, well within 30 s (the waits between tries counted, not slept: _skip_waits)."""
    waits = _skip_waits(monkeypatch)
    port = _free_port()
    cases = [
        (("run", "--log", "mlflow", "--mlflow-uri", f"http://127.0.0.1:{port}"), {}, f"127.0.0.1:{port} is unreachable"),
        (("run", "--log", "mlflow"), {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}, "MLFLOW_TRACKING_URI"),
        (("run", "--engine", "ray", "--seeds", "2", "--address", f"127.0.0.1:{port}"), {}, "Ray cluster"),
        (("run", "--engine", "ray", "--seeds", "2", "--address", f"ray://127.0.0.1:{port}"), {}, "Ray cluster"),
        (("data", "fetch", "cifar10", "--url", f"http://127.0.0.1:{port}/cifar-10-python.tar.gz", "--sha256",
          "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"), {"GENBENCH_DOWNLOAD_RETRIES": "1"},
         "could not download"),
    ]
    with mock.patch("genbench.studies.stages.run_study", _reached):
        for args, env, needle in cases:
            t0, n0 = time.monotonic(), len(waits)
            code, lines = _cli(*args, env=env, timeout=60)
            _refused(code, lines, needle)
            assert "tr" in lines[0] and ("tries" in lines[0] or "try" in lines[0]), lines[0]
            took = time.monotonic() - t0 + sum(waits[n0:]) + _probe_waits(lines[0])
            assert took < 30, (args, took)
    assert waits == [1], waits  # the mirror's one retry (GENBENCH_DOWNLOAD_RETRIES=1), after pooch's 1 s


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 500

    def do_GET(self):  # noqa: N802
        type(self).hits += 1
        self.send_response(self.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"no")

    do_POST = do_GET  # noqa: N815

    def log_message(self, *a):
        pass


@contextlib.contextmanager
def _server(status: int):
    handler = type("H", (_Handler,), {"status": status, "hits": 0})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)  # a quick shutdown
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", handler
    finally:
        srv.shutdown()
        srv.server_close()


def test_mirror_that_fails_retries_a_bounded_number_of_times(home, monkeypatch):
    waits = _skip_waits(monkeypatch)
    with _server(503) as (url, h):
        t0 = time.monotonic()
        _refused(*_cli("data", "fetch", "cifar10", "--url", f"{url}/cifar-10-python.tar.gz", "--sha256",
                       "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                       env={"GENBENCH_DOWNLOAD_RETRIES": "2"}), "3 tries, GENBENCH_DOWNLOAD_RETRIES=2")
        assert h.hits == 3 and waits == [1, 2] and time.monotonic() - t0 + sum(waits) < 30, (h.hits, waits)


@pytest.mark.parametrize("value", ["abc", "-1", "11", "1e9"])
def test_download_retries_out_of_range(value, home):
    with _server(404) as (url, _):
        _refused(*_cli("data", "fetch", "cifar10", "--url", f"{url}/cifar-10-python.tar.gz", "--sha256",
                       "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                       env={"GENBENCH_DOWNLOAD_RETRIES": value}), "GENBENCH_DOWNLOAD_RETRIES")


@pytest.mark.parametrize("status", [404, 500])
def test_mlflow_server_that_is_not_mlflow_is_one_line(status, tmp_path, monkeypatch):
    """A local HTTP server answering errors: the tracker fails in one line within 30 s, with bounded retries."""
    pytest.importorskip("mlflow")
    from genbench.runtime.tracking import open_tracker

    for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(k, raising=False)
    waits = _skip_waits(monkeypatch)
    with _server(status) as (url, h):
        t0 = time.monotonic()
        with pytest.raises(GenbenchError) as e:
            open_tracker(["mlflow"], log_dir=tmp_path, experiment="e", run="r", mlflow_uri=url)
        assert "\n" not in str(e.value) and url in str(e.value) and "retried at most 2" in str(e.value)
        assert time.monotonic() - t0 + sum(waits) < 30 and h.hits <= 6, (waits, h.hits)
