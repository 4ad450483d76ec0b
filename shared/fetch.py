"""Getting MovieLens-100k without a bespoke download site: from the ``recbole`` wheel.

The ``recbole==1.2.1`` wheel on PyPI ships the ML-100k atomic files under
``recbole/dataset_example/ml-100k/``. :func:`fetch_movielens_100k` downloads that wheel
once with ``pip download`` (so proxies/indexes configured for pip apply), checks it
against a pinned sha256, extracts only those files into ``<cache>/movielens-100k/`` and
records a ``SOURCE.json`` manifest; later calls verify the manifest and return without
touching the network.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from fedrec.shared.errors import DataError, FedrecError

__all__ = [
    "WHEEL_REQUIREMENT",
    "WHEEL_NAME",
    "WHEEL_SHA256",
    "MEMBER_PREFIX",
    "DATASET_DIRNAME",
    "SOURCE_FILE",
    "REQUIRED_FILES",
    "default_cache_dir",
    "pip_download",
    "fetch_movielens_100k",
]

log = logging.getLogger(__name__)

WHEEL_REQUIREMENT = "recbole==1.2.1"
WHEEL_NAME = "recbole-1.2.1-py3-none-any.whl"
#: sha256 of ``recbole-1.2.1-py3-none-any.whl`` as published on PyPI.
WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
MEMBER_PREFIX = "recbole/dataset_example/ml-100k/"
DATASET_DIRNAME = "movielens-100k"
SOURCE_FILE = "SOURCE.json"
#: Files that must be present for the cache to count as complete.
REQUIRED_FILES: tuple[str, ...] = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
PIP_TIMEOUT_S = 600

PipDownload = Callable[[str, Path], None]


def default_cache_dir() -> Path:
    """``$FEDREC_DATA`` if set, else ``~/.cache/fedrec``."""
    env = os.environ.get("FEDREC_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fedrec"


def pip_download(requirement: str, dest: Path) -> None:
    """Download one wheel (no dependencies, binary only) into ``dest`` with pip."""
    cmd = [sys.executable, "-m", "pip", "download", requirement, "--no-deps",
           "--only-binary=:all:", "--disable-pip-version-check", "-d", str(dest)]
    log.info("downloading %s from PyPI with pip (about 2 MB)", requirement)
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise FedrecError(f"pip download {requirement} timed out after {PIP_TIMEOUT_S} s; "
                          "check the network or proxy settings") from None
    except OSError as exc:
        raise FedrecError(f"could not run pip to download {requirement}: {exc}") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")]
        detail = (errors or lines or ["no output"])[-1]
        raise FedrecError(f"pip download {requirement} failed (exit {proc.returncode}): {detail} "
                          "(is PyPI reachable?)")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cache_is_valid(target: Path, wheel_name: str, wheel_sha256: str) -> bool:
    """True when ``target`` holds every manifest file with its recorded sha256."""
    manifest_path = target / SOURCE_FILE
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest["wheel"] != wheel_name or manifest["wheel_sha256"] != wheel_sha256:
            return False
        if not isinstance(files, dict) or not set(REQUIRED_FILES) <= set(files):
            return False
        for name, digest in files.items():
            f = target / name
            if PurePosixPath(name).name != name or not f.is_file() or _sha256(f) != digest:
                log.warning("cached file %s is missing or changed; fetching again", f)
                return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _safe_member_name(member: str) -> str | None:
    """The file name for a wheel member directly under :data:`MEMBER_PREFIX`, else None."""
    if not member.startswith(MEMBER_PREFIX) or "\\" in member:
        return None
    rest = member[len(MEMBER_PREFIX):]
    if not rest or "/" in rest or rest in (".", "..") or rest.startswith("."):
        return None
    return rest


def _extract(wheel: Path, dest: Path) -> dict[str, str]:
    """Extract the ML-100k members of ``wheel`` flat into ``dest``; return name -> sha256."""
    files: dict[str, str] = {}
    try:
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                if info.is_dir() or not info.filename.startswith(MEMBER_PREFIX):
                    continue
                name = _safe_member_name(info.filename)
                out = (dest / name).resolve() if name else None
                if name is None or out.parent != dest.resolve():
                    log.warning("skipping unsafe wheel member %r", info.filename)
                    continue
                h = hashlib.sha256()
                with zf.open(info) as src, open(out, "xb") as dst:
                    for block in iter(lambda: src.read(1 << 20), b""):
                        h.update(block)
                        dst.write(block)
                files[name] = h.hexdigest()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, FileExistsError) as exc:
        raise DataError(wheel.name, f"is not a usable wheel ({exc})") from None
    missing = [f for f in REQUIRED_FILES if f not in files]
    if missing:
        raise DataError(wheel.name, f"has no {MEMBER_PREFIX}{missing[0]}")
    return files


def fetch_movielens_100k(cache_dir: Path | str | None = None, *,
                         pip_download: PipDownload = pip_download,
                         expected_sha256: str = WHEEL_SHA256,
                         wheel_name: str = WHEEL_NAME,
                         requirement: str = WHEEL_REQUIREMENT) -> Path:
    """Return a folder with the MovieLens-100k RecBole atomic files, fetching once.

    Args:
        cache_dir: cache root; default :func:`default_cache_dir`. Files go to
            ``<cache_dir>/movielens-100k/`` (``ml-100k.inter``, ``.item``, ``.user``,
            ``.kg``, ``.link`` and ``SOURCE.json``).
        pip_download: ``f(requirement, dest_dir)`` that puts the wheel into
            ``dest_dir`` (injectable for tests; the default runs ``pip download``).
        expected_sha256, wheel_name, requirement: the pinned wheel (tests override).

    Raises:
        FedrecError: pip failed (no network, no such version).
        DataError: the downloaded wheel does not match the pinned sha256 or lacks the
            files. Nothing is left half-written in the cache on failure.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / DATASET_DIRNAME
    if _cache_is_valid(target, wheel_name, expected_sha256):
        log.debug("MovieLens-100k already in %s", target)
        return target

    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FedrecError(f"cannot create the data cache {root}: {exc.strerror or exc}") from None

    log.info("fetching MovieLens-100k into %s", target)
    with tempfile.TemporaryDirectory(prefix="fedrec-wheel-") as download_dir:
        pip_download(requirement, Path(download_dir))
        wheel = Path(download_dir) / wheel_name
        if not wheel.is_file():
            found = ", ".join(sorted(p.name for p in Path(download_dir).iterdir())) or "nothing"
            raise FedrecError(f"pip download {requirement} did not produce {wheel_name} "
                              f"(got: {found})")
        digest = _sha256(wheel)
        if digest != expected_sha256:
            raise DataError(wheel_name, f"sha256 mismatch: expected {expected_sha256}, "
                                        f"got {digest}; refusing to use it")
        log.info("verified %s (sha256 %s)", wheel_name, digest)

        staging = Path(tempfile.mkdtemp(prefix=f".{DATASET_DIRNAME}.tmp-", dir=root))
        try:
            os.chmod(staging, 0o755)  # mkdtemp makes it private; the data is public
            files = _extract(wheel, staging)
            manifest = {"source": f"PyPI {requirement}", "wheel": wheel_name,
                        "wheel_sha256": digest, "member_prefix": MEMBER_PREFIX,
                        "files": dict(sorted(files.items()))}
            (staging / SOURCE_FILE).write_text(json.dumps(manifest, indent=2) + "\n",
                                               encoding="utf-8")
            _replace_dir(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    log.info("MovieLens-100k ready in %s (%d files)", target, len(files))
    return target


def _replace_dir(staging: Path, target: Path) -> None:
    """Move ``staging`` to ``target`` (replacing a stale copy) with directory renames."""
    old = None
    if target.exists() or target.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{DATASET_DIRNAME}.old-", dir=target.parent))
        old.rmdir()
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except OSError:
        if old is not None and not target.exists():
            os.replace(old, target)  # put the previous copy back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
