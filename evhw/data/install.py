"""Where the packaged data lives, and ``evhw data install``: Debian data packages extracted without root."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import ConfigError, EvhwError


class DataMissingError(EvhwError):
    """A data source is not installed; the message says which package provides it."""


def data_dir() -> Path:
    """Where ``evhw data install`` extracts Debian packages (``$EVHW_DATA_DIR``, else ~/.cache/evhw)."""
    d = os.environ.get("EVHW_DATA_DIR")
    return Path(d) if d else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "evhw"


#: Debian data package -> its data folder inside the package
DEBIAN = {
    "opencv-doc": "usr/share/doc/opencv-doc/examples/data",
    "dataset-fashion-mnist": "usr/share/datasets/fashion-mnist",
}


def debian_path(package: str, name: str | None = None) -> Path:
    """A file of a Debian data package: extracted under :func:`data_dir` or installed system-wide."""
    rel = DEBIAN[package]
    for root in (data_dir() / "debian", Path("/")):
        p = root / rel
        if p.is_dir() and (name is None or (p / name).exists()):
            return p / name if name else p
    raise DataMissingError(
        f"{name or rel} is not installed: it comes from the Debian package {package}; run `evhw data install` "
        f"(extracts it into {data_dir() / 'debian'}) or `apt-get install {package}`")


def install_debian(packages=tuple(DEBIAN), *, echo=print) -> list[Path]:
    """Fetch Debian data packages with ``apt-get download`` and extract them (no root needed to extract).

    Runs ``apt-get update`` once if the package lists are empty. Already extracted packages are skipped.
    """
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise EvhwError("`evhw data install` needs apt-get and dpkg-deb (Debian/Ubuntu); install the packages "
                        f"{', '.join(packages)} by other means and set EVHW_DATA_DIR")
    root = data_dir() / "debian"
    root.mkdir(parents=True, exist_ok=True)
    done = []
    for pkg in packages:
        if pkg not in DEBIAN:
            raise ConfigError(f"unknown data package {pkg!r}; known: {', '.join(DEBIAN)}")
        if (root / DEBIAN[pkg]).is_dir():
            echo(f"{pkg}: already in {root}")
            done.append(root / DEBIAN[pkg])
            continue
        with tempfile.TemporaryDirectory() as tmp:
            r = _apt_download(pkg, tmp)
            if r.returncode != 0:
                raise EvhwError(f"apt-get download {pkg} failed: {r.stderr.strip()[-400:]}")
            deb = next(Path(tmp).glob(f"{pkg}_*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        echo(f"{pkg}: extracted into {root}")
        done.append(root / DEBIAN[pkg])
    return done


def _apt_download(pkg, cwd):
    cmd = ["apt-get", "download", "-q", pkg]
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0 and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return r
