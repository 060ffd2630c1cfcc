"""Bait for the sandbox tests: secret files, listening sockets and a fake API key.

Everything is world-readable or world-connectable on purpose, so that only the sandbox (not
file permissions) stands between the REPL child and the bait.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Any

from rlm_async.repl.child import _sandbox

__all__ = ["SECRET", "Host"]

SECRET = "sk-test-" + uuid.uuid4().hex


class Host:
    """Bait the child must not reach: secret files, listening sockets, the launcher's env."""

    def __init__(self) -> None:
        self.secrets = tempfile.mkdtemp(prefix="rlm-sbx-secrets-")
        os.chmod(self.secrets, 0o755)  # world-readable on purpose: only the sandbox stops it
        Path(self.secrets, ".env").write_text(f"OPENAI_API_KEY={SECRET}\n")
        Path(self.secrets, ".ssh").mkdir(mode=0o755)
        Path(self.secrets, ".ssh", "id_ed25519").write_text(f"PRIVATE KEY {SECRET}\n")
        for path in (Path(self.secrets, ".env"), Path(self.secrets, ".ssh", "id_ed25519")):
            path.chmod(0o644)
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.tcp.setblocking(False)
        self.unix_path = os.path.join(self.secrets, "agent.sock")
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind(self.unix_path)
        os.chmod(self.unix_path, 0o777)
        self.unix.listen()
        self.unix.setblocking(False)
        self.abstract_name = "rlm-sbx-" + uuid.uuid4().hex
        self.abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.abstract.bind("\0" + self.abstract_name)
        self.abstract.listen()
        self.abstract.setblocking(False)

    def config(self) -> dict[str, Any]:
        return {
            "sandbox_file": _sandbox.__file__,
            "secrets_dir": self.secrets,
            "tcp_port": self.tcp.getsockname()[1],
            "unix_path": self.unix_path,
            "abstract_name": self.abstract_name,
        }

    def connections(self) -> list[str]:
        accepted = []
        for name, server in (("tcp", self.tcp), ("unix", self.unix), ("abstract", self.abstract)):
            try:
                conn, _ = server.accept()
            except BlockingIOError:
                continue
            conn.close()
            accepted.append(name)
        return accepted

    def close(self) -> None:
        for server in (self.tcp, self.unix, self.abstract):
            server.close()
        shutil.rmtree(self.secrets, ignore_errors=True)
