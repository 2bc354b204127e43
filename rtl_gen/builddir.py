"""A generated build folder: the only code that writes or opens its generated files.

Layout (``evhw generate NET -o BUILD``)::

    BUILD/evhw_top.v          the Verilog top (one module)
    BUILD/manifest.json       rtl_gen.manifest.Manifest
    BUILD/net.evnet           the network the hardware was generated for
    BUILD/mem/*.hex           memory images, loaded by the Verilog with $readmemh("mem/<name>")
    BUILD/evhw_build.json     {"version", "sha256": {file: hash}} of every file above

The memory images are load-bearing: the Verilog holds no memory contents, and a simulator or
synthesis tool reads them from ``mem/`` under its working directory (:meth:`BuildDir.place_images`
copies the verified images there).

Tools add their own outputs beside these (``sim_build/``, ``runs/``, ``report-*/``); they are not
part of the record. :meth:`BuildDir.open` checks the record, so a build edited or mixed by hand is
refused naming the file. :meth:`BuildDir.write` builds into a sibling temporary folder and swaps
it in, so a regenerate replaces the old build whole (no stale files) and a failed write leaves
nothing behind; it refuses an output path that is a file, lies under a file, or is a non-empty
folder that is not a build.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from evhw.errors import EvhwError

from .manifest import MANIFEST_VERSION, Manifest, ManifestError

__all__ = ["BuildDir", "BuildError", "VERILOG", "MANIFEST", "NET", "RECORD", "MEM"]

VERILOG = "evhw_top.v"
MANIFEST = "manifest.json"
NET = "net.evnet"
RECORD = "evhw_build.json"
MEM = "mem"


class BuildError(EvhwError):
    """A build folder is missing, incomplete, edited after generation, or cannot be written."""


def _sha256(data: bytes):
    return hashlib.sha256(data).hexdigest()


class BuildDir:
    """An opened (verified) build folder. Use :meth:`open` or :meth:`write`, not the constructor."""

    def __init__(self, path, manifest: Manifest, hashes: dict):
        self.path = Path(path)
        self.manifest = manifest
        self.hashes = dict(hashes)

    # ------------------------------------------------------------------ paths of the verified files
    @property
    def verilog(self) -> Path:
        """The Verilog top, for simulators and synthesis (verified by :meth:`open`)."""
        return self.path / VERILOG

    def load_net(self):
        """``(qnet, graph)`` of ``net.evnet``, checked against the recorded hash (again: it may have
        changed since :meth:`open`)."""
        from evhw.evnet_file import loads
        path = self.path / NET
        data = _read(path)
        self._check(NET, data)
        return loads(data, source=str(path))

    def images(self):
        """``{file name: bytes}`` of the memory images, each checked against its recorded hash."""
        out = {}
        for name in sorted(n for n in self.hashes if n.startswith(MEM + "/")):
            data = _read(self.path / name)
            self._check(name, data)
            out[name[len(MEM) + 1:]] = data
        return out

    def place_images(self, folder):
        """Copy the verified memory images to ``folder/mem/`` (replacing that folder), where a
        simulator or synthesis tool started in ``folder`` finds them (``$readmemh("mem/...")``).
        Returns the path of the copy."""
        folder = Path(folder)
        images = self.images()
        target = folder / MEM
        if folder.resolve() == self.path.resolve():
            return target                      # the build's own images, verified above
        tmp = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{MEM}.new-", dir=folder))
            for name, data in images.items():
                (tmp / name).write_bytes(data)
            _swap(tmp, target)
        except OSError as e:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            raise BuildError(f"cannot copy the memory images of {self.path} to {target}: {e.strerror or e}") from None
        return target

    def _check(self, name, data):
        if _sha256(data) != self.hashes.get(name):
            raise BuildError(f"{self.path / name} was changed after `evhw generate` (its SHA-256 differs from "
                             f"{RECORD}): regenerate the build")

    # ------------------------------------------------------------------ open
    @classmethod
    def open(cls, path):
        """Verify the build at ``path`` (record, every file's hash, the manifest) and return it."""
        path = Path(path)
        if not path.exists():
            raise BuildError(f"build folder {path} does not exist (write it with `evhw generate NET -o {path}`)")
        if not path.is_dir():
            raise BuildError(f"{path} is a file, not a build folder (write one with `evhw generate NET -o BUILD`)")
        rec_path = path / RECORD
        if not rec_path.exists():
            hint = (f"{path / MANIFEST} is from an older evhw or was written by hand"
                    if (path / MANIFEST).exists() else f"{path} is not an `evhw generate` build folder")
            raise BuildError(f"{rec_path} is missing: {hint}; regenerate with `evhw generate NET -o {path}`")
        hashes = _read_record(rec_path)
        for name in (VERILOG, MANIFEST, NET):
            if name not in hashes:
                raise BuildError(f"{rec_path}: field sha256 has no entry for {name}")
        listed = {n for n in hashes if n.startswith(MEM + "/")}
        present = {f"{MEM}/{p.name}" for p in (path / MEM).glob("*")} if (path / MEM).is_dir() else set()
        extra = sorted(present - listed)
        if extra:
            raise BuildError(f"{path / extra[0]} is not part of this build ({RECORD}): the build was mixed by hand; "
                             "regenerate it")
        build = cls(path, None, hashes)
        for name in sorted(hashes):
            f = path / name
            if not f.exists():
                raise BuildError(f"{f} is missing from the build: regenerate it with `evhw generate`")
            data = _read(f)
            build._check(name, data)
            if name == MANIFEST:
                text = data.decode("utf-8", errors="replace")
                build.manifest = Manifest.from_json(text, source=str(f))
        return build

    # ------------------------------------------------------------------ write
    @staticmethod
    def check_target(path):
        """Raise :class:`BuildError` unless ``path`` can receive a build (nothing is created)."""
        path = Path(path)
        for p in [path, *path.parents]:
            if p.exists() or p.is_symlink():
                if p.is_dir():
                    break
                if p == path:
                    raise BuildError(f"output {path} is a file, not a folder: choose a folder for the build")
                raise BuildError(f"output {path} lies under {p}, which is a file, not a folder")
        if path.is_dir() and any(path.iterdir()) and not ((path / RECORD).exists() or (path / MANIFEST).exists()):
            raise BuildError(f"output folder {path} is not empty and is not an evhw build: refusing to replace it "
                             "(choose a new or empty folder)")

    @classmethod
    def write(cls, path, *, verilog: str, manifest: Manifest, images: dict, qnet, graph=None):
        """Write a complete build to ``path``, replacing any build there whole. ``images``:
        ``{name: text}`` for ``mem/``. Returns the opened :class:`BuildDir`."""
        from evhw.evnet_file import dumps
        path = Path(path)
        cls.check_target(path)
        manifest.validate(source=f"{path / MANIFEST} (being written)")
        net = dumps(qnet, graph)
        files = {VERILOG: verilog.encode(), MANIFEST: manifest.to_json().encode() + b"\n", NET: net}
        for name, text in images.items():
            if "/" in name or name.startswith("."):
                raise BuildError(f"memory image name {name!r} is not a plain file name")
            files[f"{MEM}/{name}"] = text.encode()
        record = {"version": MANIFEST_VERSION, "sha256": {n: _sha256(d) for n, d in sorted(files.items())}}
        parent = path.absolute().parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.new-", dir=parent))
            os.chmod(tmp, 0o777 & ~_umask())          # mkdtemp makes it private
        except OSError as e:
            raise BuildError(f"cannot create the build folder {path}: {e.strerror or e}") from None
        try:
            (tmp / MEM).mkdir()
            for name, data in files.items():
                (tmp / name).write_bytes(data)
            (tmp / RECORD).write_text(json.dumps(record, indent=1) + "\n")
            _swap(tmp, path.absolute())
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, OSError):
                raise BuildError(f"cannot write the build folder {path}: {e.strerror or e}") from None
            raise
        return cls(path, manifest, record["sha256"])


def _swap(new, target):
    """Put folder ``new`` at ``target``; an existing ``target`` is moved aside first and then removed."""
    if not target.exists():
        os.rename(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rename(target, old / "build")
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old / "build", target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _read(path):
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise BuildError(f"{path} is missing from the build: regenerate it with `evhw generate`") from None
    except OSError as e:
        raise BuildError(f"{path}: cannot read: {e.strerror or e}") from None


def _read_record(path):
    try:
        rec = json.loads(_read(path).decode("utf-8", errors="replace") or "null")
    except json.JSONDecodeError as e:
        raise BuildError(f"{path}: not valid JSON ({e.msg}): regenerate the build") from None
    if not isinstance(rec, dict) or set(rec) != {"version", "sha256"} or not isinstance(rec["sha256"], dict):
        raise BuildError(f"{path}: expected the fields version and sha256: regenerate the build")
    if rec["version"] != MANIFEST_VERSION:
        raise BuildError(f"{path}: field version is {rec['version']!r}, this evhw reads builds of version "
                         f"{MANIFEST_VERSION}: regenerate the build")
    hashes = rec["sha256"]
    for name, h in hashes.items():
        if not (isinstance(h, str) and len(h) == 64) or ".." in Path(name).parts or Path(name).is_absolute():
            raise BuildError(f"{path}: field sha256.{name} is not a SHA-256 of a file in the build")
    return hashes


__all__ += ["ManifestError"]
