"""A real S3 API server for tests: moto's standalone server on a loopback port.

moto's server speaks the S3 REST API over HTTP, conditional writes (`If-None-Match: *`)
included, installs from PyPI with the dev extra, and needs no credentials nor disk: what a
test needs of MinIO or Ceph, started in a second.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from typing import Any

import boto3

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BUCKET = "models"


class S3Server:
    """moto's S3 server, which tests may stop (refusing connections) and start again."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.endpoint = f"http://{host}:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self._process.returncode}")
            time.sleep(0.05)
        raise TimeoutError("moto server did not start")

    def stop(self) -> None:
        """Stop the server; its objects are lost (moto keeps them in memory)."""
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    def client(self) -> Any:
        """A boto3 S3 client of this server: the tests' hands on the bucket."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )
