"""The grader's result channel: how a check's verdict reaches ``toyenv.grade`` without printing.

Self-study (no grader) never touches this module: checks print their line and that is all.

When ``toyenv.grade`` runs a notebook it makes, per run, a random key and two files in a private
folder outside the notebook's working folder: the key file and an empty results file. It starts
the kernel with their paths in the environment (``TOYENV_GRADER_KEY_FILE``,
``TOYENV_GRADER_RESULTS``) and with one start-up line (IPython's ``exec_lines``) that loads this
file, *before any cell runs*, as the module ``toyenv_grader_channel``. Loading it:

* removes both variables from ``os.environ``, reads the key and deletes the key file, so notebook
  code never sees the key in the environment or on disk;
* keeps the key only inside the closure of ``report`` (not as a module attribute);
* appends a "ready" record, so the grader can tell a dead channel from a silent notebook.

``report(id, status, message)`` appends one JSON line ``{"record": {...}, "mac": ...}`` whose MAC
is HMAC-SHA256(key, the record) and whose record carries a sequence number, so the grader rejects
forged lines (no key), edited lines and replayed ones (an old sequence number). The exercise
checks (``toyenv.course.checks.framework``) call it through ``sys.modules``; see :func:`report_verdict`.

This file uses the standard library only: the kernel loads it by path, without importing
``toyenv`` (which would cost seconds for a notebook that never uses it).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sys

ENV_KEY_FILE = "TOYENV_GRADER_KEY_FILE"
ENV_RESULTS = "TOYENV_GRADER_RESULTS"
KERNEL_MODULE = "toyenv_grader_channel"      # sys.modules name inside a graded kernel
_BOOT = "__toyenv_grader_boot__"

report = None
"""In a graded kernel: ``report(id, status, message)`` writes one signed record. Else None."""


# --------------------------------------------------------------------------- kernel side


def report_verdict(id: str, status: str, message: str) -> bool:
    """Send a check's verdict to the grader if this kernel is being graded; False otherwise."""
    channel = sys.modules.get(KERNEL_MODULE)
    send = getattr(channel, "report", None)
    if send is None:
        return False
    send(id, status, message)
    return True


def _sign(key: bytes, record: dict) -> str:
    body = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()


def _connect(module) -> None:
    """Read the key and the results path from the environment (removing both), delete the key
    file, and install ``module.report``. Does nothing without the grader's environment."""
    key_file = os.environ.pop(ENV_KEY_FILE, None)
    results = os.environ.pop(ENV_RESULTS, None)
    if not key_file or not results:
        return
    with open(key_file, "rb") as f:
        key = f.read()
    os.unlink(key_file)
    counter = [0]

    def report(id, status, message):
        record = {"seq": counter[0], "id": str(id), "status": str(status), "message": str(message)}
        counter[0] += 1
        line = json.dumps({"record": record, "mac": _sign(key, record)}) + "\n"
        fd = os.open(results, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    report("", "ready", "")
    module.report = report


def _install() -> None:
    """Run by the kernel's start-up line: load this file as ``toyenv_grader_channel`` and connect."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(KERNEL_MODULE, __file__)
    module = importlib.util.module_from_spec(spec)
    sys.modules[KERNEL_MODULE] = module
    spec.loader.exec_module(module)
    _connect(module)


if __name__ == _BOOT:
    _install()


# --------------------------------------------------------------------------- grader side


class Run:
    """One graded kernel's channel: the key, the files, and the kernel's environment.

    ``folder`` must be private to the grader (not the kernel's working folder).
    """

    def __init__(self, folder):
        self.key = secrets.token_bytes(32)
        self.key_file = os.path.join(folder, "key")
        self.results = os.path.join(folder, "results.jsonl")
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.key)
        fd = os.open(self.results, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        self.position = 0          # bytes of the results file already read
        self.next_seq = 0          # the sequence number the next genuine record must carry
        self.ready = False
        self.rejected = 0          # lines that were not genuine records (forged, edited, replayed)

    def env(self, base=None) -> dict:
        env = dict(os.environ if base is None else base)
        env[ENV_KEY_FILE] = self.key_file
        env[ENV_RESULTS] = self.results
        return env

    @staticmethod
    def kernel_arguments() -> list[str]:
        """Kernel command-line arguments that load this file before any cell runs."""
        path = os.path.abspath(__file__)
        line = (f"exec(compile(open({path!r}).read(), {path!r}, 'exec'), "
                f"{{'__name__': {_BOOT!r}, '__file__': {path!r}}})")
        return [f"--IPKernelApp.exec_lines={line}"]

    def read_new(self) -> list[dict]:
        """The genuine verdict records appended since the last call, in order."""
        try:
            with open(self.results, "rb") as f:
                f.seek(self.position)
                data = f.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1             # a half-written last line waits for the next call
        self.position += end
        out = []
        for raw in data[:end].splitlines():
            record = self._verify(raw)
            if record is None:
                self.rejected += 1
            elif record["status"] == "ready" and record["id"] == "":
                self.ready = True
            else:
                out.append(record)
        return out

    def _verify(self, raw: bytes):
        try:
            obj = json.loads(raw)
            record, mac = obj["record"], obj["mac"]
            ok = (isinstance(record, dict) and set(record) == {"seq", "id", "status", "message"}
                  and isinstance(mac, str)
                  and hmac.compare_digest(mac, _sign(self.key, record))
                  and record["seq"] == self.next_seq)
        except (ValueError, KeyError, TypeError):
            return None
        if not ok:
            return None
        self.next_seq += 1
        return record
