"""Image-folder data sets: a folder or a ``.zip`` of class folders of image files.

Accepted layouts (``<root>`` is the folder or the zip; any chain of single wrapper folders,
such as the ``cifar10/`` inside ``cifar10-jpeg.zip``, is skipped)::

    <root>/train/<class>/<image>   and optionally   <root>/test/<class>/<image>
    <root>/<class>/<image>                          (no test split)

Class names are the training split's folder names, sorted; label = index. Files inside a
class folder may sit in sub-folders. Hidden files, ``__MACOSX`` and files without an image
extension are ignored; an image that does not decode, a class folder without images, or a
test class unknown to the training split is an error naming the file or folder.

Decoded arrays are cached (see :mod:`engine.data.cache`): a zip is keyed by the sha256 of
its bytes, a folder by the (path, size, mtime) of its images, plus ``image_size``.
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from pathlib import Path

import numpy as np

from engine.data.base import DataBundle, DataConfig, Progress, make_bundle, register_dataset
from engine.data.cache import cache_root, cached_arrays, file_sha256, tree_fingerprint
from engine.data.images import IMAGE_EXTENSIONS, decode_image
from engine.errors import DataError

__all__ = ["check_imagefolder", "load_imagefolder", "read_imagefolder"]

SPLITS = ("train", "test")
_LAYOUT = ("rule: images sit in class folders, <root>/<class>/<image> or "
           "<root>/train/<class>/<image> with an optional <root>/test/<class>/<image>")


# One image file is at most this large (a 4k RGB photo as BMP is 25 MB): a bigger member or
# file is a mistake or a bomb, refused before it is read into memory.
MAX_IMAGE_BYTES = 256 * 2**20


def _unsafe_member(name: str) -> bool:
    """True for a zip member name that is not a plain relative path (absolute, ``..``, empty
    parts, backslashes, a drive): such names point outside the archive's tree."""
    parts = name.rstrip("/").split("/")
    return (name.startswith("/") or "\\" in name or ":" in parts[0]
            or any(p in ("", ".", "..") for p in parts))


class _ZipSource:
    """Members of a zip archive, read on demand."""

    def __init__(self, path: Path):
        self.label = str(path)
        try:
            self._zip = zipfile.ZipFile(path)
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise DataError(f"{path}: not a readable zip archive ({e}); fix: re-create or "
                            "download the zip again, or extract it and point data.root at "
                            "the folder") from e
        bad = next((i.filename for i in infos if _unsafe_member(i.filename)), None)
        if bad is not None:
            self._zip.close()
            raise DataError(f"{path}: member {bad[:200]!r} is not a relative path inside the "
                            "archive; rule: members are named like cat/0001.png, never "
                            "absolute or with '..'; fix: re-create the zip from inside its "
                            "folder (cd folder && zip -r ../data.zip .)")
        self._sizes = {i.filename: i.file_size for i in infos}
        names = [i.filename for i in infos]
        self.files = [n for n in names if not n.endswith("/")]
        self.dirs = {n.rstrip("/") for n in names if n.endswith("/")}

    def read(self, rel: str) -> bytes:
        """The bytes of one member."""
        if self._sizes.get(rel, 0) > MAX_IMAGE_BYTES:
            raise DataError(f"{self.label}:{rel}: member is {self._sizes[rel] / 2**20:.0f} MB "
                            f"uncompressed; rule: an image file is at most "
                            f"{MAX_IMAGE_BYTES // 2**20} MB; fix: remove or shrink it")
        try:
            return self._zip.read(rel)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
                NotImplementedError) as e:  # NotImplementedError: an unknown compression
            raise DataError(f"{self.label}:{rel}: corrupt zip member ({e}); fix: re-create or "
                            "download the zip again") from e

    def close(self) -> None:
        """Release the archive's file handle."""
        self._zip.close()


class _DirSource:
    """Files under a folder. Symbolic links are followed, but a link back to a folder that
    contains it (a loop), a link to nothing, and an image name that is not a regular file (a
    FIFO would block the read for ever, a device never ends) are errors naming the path."""

    def __init__(self, root: Path):
        self.label = str(root)
        self.root = root
        self.files, self.dirs = [], set()
        self._walk(root, "", ())

    def _walk(self, folder: Path, prefix: str, ancestors: tuple[tuple[int, int], ...]) -> None:
        st = self._stat(folder, prefix or ".")
        here = (st.st_dev, st.st_ino)
        if here in ancestors:
            raise DataError(f"{self.label}:{prefix}: a symbolic link leads back to a folder that "
                            "contains it (a loop); rule: a data folder is a tree; fix: remove "
                            f"the link {folder}")
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            raise DataError(f"{self.label}:{prefix}: cannot list this folder ({e.strerror}); "
                            "fix: check its permissions") from None
        for entry in entries:
            rel = prefix + entry.name
            path = Path(entry.path)
            if stat.S_ISDIR(self._stat(path, rel).st_mode):
                self.dirs.add(rel)
                self._walk(path, rel + "/", (*ancestors, here))
            else:
                self.files.append(rel)

    def _stat(self, path: Path, rel: str) -> os.stat_result:
        try:
            return path.stat()  # follows links
        except OSError as e:  # ELOOP: links pointing at each other; ENOENT: a dangling link
            raise DataError(f"{self.label}:{rel}: cannot read this path ({e.strerror}); it is "
                            "probably a broken or looping symbolic link; fix: remove or repair "
                            "it") from None

    def read(self, rel: str) -> bytes:
        """The bytes of one file, which must be a regular file (checked on the open file,
        without blocking: a FIFO opened plainly would wait for a writer for ever)."""
        path = self.root / rel
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            raise DataError(f"{self.label}:{rel}: cannot open this image ({e.strerror}); fix: "
                            "check the file and its permissions") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise DataError(f"{self.label}:{rel}: not a regular file (a FIFO, socket or "
                                "device); rule: images are plain files; fix: remove it or "
                                "rename it without an image extension")
            if st.st_size > MAX_IMAGE_BYTES:
                raise DataError(f"{self.label}:{rel}: file is {st.st_size / 2**20:.0f} MB; rule: "
                                f"an image file is at most {MAX_IMAGE_BYTES // 2**20} MB; fix: "
                                "remove or shrink it")
            try:
                return f.read()
            except OSError as e:
                raise DataError(f"{self.label}:{rel}: cannot read this image ({e.strerror}); "
                                "fix: check the file") from None

    def check_regular(self, files: list[str]) -> None:
        """Refuse image names that are not regular files, before anything is decoded."""
        for rel in files:
            if not stat.S_ISREG(self._stat(self.root / rel, rel).st_mode):
                raise DataError(f"{self.label}:{rel}: not a regular file (a FIFO, socket or "
                                "device); rule: images are plain files; fix: remove it or "
                                "rename it without an image extension")

    def close(self) -> None:
        """Nothing to release."""


def _visible(rel: str) -> bool:
    return not any(p.startswith(".") or p == "__MACOSX" for p in rel.split("/"))


def _children(dirs: set[str], prefix: str) -> set[str]:
    """Names of the folders directly inside ``prefix`` ("" = the root, else ends with /)."""
    n = len(prefix)
    return {d[n:] for d in dirs if d.startswith(prefix) and d[n:] and "/" not in d[n:]}


def _layout(source: _ZipSource | _DirSource) -> tuple[list[str], dict[str, list[tuple[str, int]]]]:
    """(classes, {split: [(file, label), ...]}) of a source, checked against the layout."""
    images = sorted(f for f in source.files
                    if _visible(f) and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)
    if isinstance(source, _DirSource):
        source.check_regular(images)
    if not images:
        raise DataError(f"{source.label}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
                        f"{_LAYOUT}; fix: point data.root at such a folder or zip")
    dirs = {d for d in source.dirs if _visible(d)}
    for f in images:  # zips often omit folder entries: derive them from the files
        parts = f.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
    prefix = ""
    while True:
        tops = _children(dirs, prefix)
        loose = [f for f in images if "/" not in f[len(prefix):]]
        if loose:
            _loose_image(source, loose[0])
        if tops & set(SPLITS) or len(tops) != 1:
            break
        prefix += tops.pop() + "/"  # a wrapper folder such as cifar10/
    if tops & set(SPLITS):
        extra = tops - set(SPLITS)
        if extra or "train" not in tops:
            raise DataError(f"{source.label}:{prefix}: found folders {sorted(tops)}; rule: a split "
                            "layout has train/ and optionally test/, nothing else beside them; "
                            "fix: rename or remove the other folders")
        roots = {s: f"{prefix}{s}/" for s in SPLITS if s in tops}
    else:
        roots = {"train": prefix}
    per_split = {s: _classes(source, images, dirs, root) for s, root in roots.items()}
    classes = sorted(per_split["train"])
    if len(classes) < 2:
        raise DataError(f"{source.label}:{roots['train']}: only {len(classes)} class folder; a "
                        "classifier needs at least two; fix: add class folders")
    unknown = sorted(set(per_split.get("test", {})) - set(classes))
    if unknown:
        raise DataError(f"{source.label}:{roots['test']}: test classes {unknown} have no "
                        "training folder; rule: test classes are a subset of train classes; "
                        "fix: add or rename the folders")
    index = {c: i for i, c in enumerate(classes)}
    return classes, {s: [(f, index[c]) for c, files in groups.items() for f in files]
                     for s, groups in per_split.items()}


def _loose_image(source, rel: str) -> None:
    raise DataError(f"{source.label}:{rel}: image outside a class folder; {_LAYOUT}; a "
                    "classifier needs at least two class folders; fix: move the image into its "
                    "class folder")


def _classes(source, images: list[str], dirs: set[str], root: str) -> dict[str, list[str]]:
    """{class: sorted image files} for the class folders directly inside ``root``."""
    groups: dict[str, list[str]] = {c: [] for c in sorted(_children(dirs, root))}
    for f in images:
        if f.startswith(root):
            rest = f[len(root):]
            if "/" not in rest:
                _loose_image(source, f)
            groups[rest.split("/", 1)[0]].append(f)
    empty = [c for c, files in groups.items() if not files]
    if empty:
        raise DataError(f"{source.label}:{root}{empty[0]}: class folder has no images; rule: every "
                        "class folder holds at least one image; fix: add images or remove the "
                        "folder")
    return groups


def _decode(source, files: list[str], image_size: int | None) -> np.ndarray:
    """Decode ``files`` into one uint8 array (N, C, H, W); grayscale widens to RGB if mixed."""
    size = None if image_size is None else (image_size, image_size)
    out: np.ndarray | None = None
    for i, rel in enumerate(files):
        img = decode_image(source.read(rel), f"{source.label}:{rel}", size)  # (C, H, W)
        if out is None:
            out = np.empty((len(files), *img.shape), dtype=np.uint8)
        elif img.shape[1:] != out.shape[2:]:
            (h, w), (h0, w0) = img.shape[1:], out.shape[2:]
            raise DataError(f"{source.label}:{rel}: image is {w}x{h} but {files[0]} is "
                            f"{w0}x{h0}; rule: without data.image_size all images share one "
                            f"size; fix: set data.image_size (e.g. {h0})")
        if img.shape[0] != out.shape[1]:
            if img.shape[0] == 3:  # first colour image after grayscale ones: widen, at most once
                out = np.repeat(out, 3, axis=1)
            else:
                img = np.repeat(img, 3, axis=0)
        out[i] = img
    return out


def read_imagefolder(path: Path, image_size: int | None = None) -> dict[str, np.ndarray]:
    """Decode a folder or zip into train (and test) uint8 arrays, labels and class names."""
    source = _ZipSource(path) if path.is_file() else _DirSource(path)
    try:
        classes, splits = _layout(source)
        files = [f for s in SPLITS for f, _ in splits.get(s, [])]
        x = _decode(source, files, image_size)  # one pass, so train and test share C, H, W
    finally:
        source.close()
    n_train = len(splits["train"])
    arrays = {"train_x": x[:n_train],
              "train_y": np.array([y for _, y in splits["train"]], dtype=np.int64),
              "classes": np.array(classes)}
    if "test" in splits:
        arrays["test_x"] = x[n_train:]
        arrays["test_y"] = np.array([y for _, y in splits["test"]], dtype=np.int64)
    return arrays


def _fingerprint(path: Path) -> str:
    if path.is_file():
        return "sha256:" + file_sha256([path])
    images = [f for f in _DirSource(path).files
              if _visible(f) and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return "tree:" + tree_fingerprint(path, images)


def _root(request: DataConfig) -> Path:
    """The folder or zip ``data.root`` names, which must exist."""
    if not request.root:
        raise DataError("dataset 'imagefolder' needs data.root: a folder or .zip of class "
                        f"folders; {_LAYOUT}")
    path = Path(request.root).expanduser()
    if not path.exists():
        raise DataError(f"data.root {str(path)!r} does not exist; fix: give the path of a "
                        "folder or .zip of class folders")
    return path


def check_imagefolder(request: DataConfig, progress: Progress | None = None) -> Path:
    """The source's path, once its layout is checked (names only: nothing is decoded).

    A zip's directory or a folder's tree is listed, so a wrong path, a zip that is not one or
    a folder without class folders is reported before a run writes anything. ``progress`` is
    not called: listing is quick (about a second for 60,000 files).
    """
    path = _root(request)
    source = _ZipSource(path) if path.is_file() else _DirSource(path)
    try:
        _layout(source)
    finally:
        source.close()
    return path


@register_dataset("imagefolder", prepare=check_imagefolder)
def load_imagefolder(request: DataConfig) -> DataBundle:
    """Class folders of images in a folder or ``.zip`` (see the module docstring)."""
    path = _root(request)
    arrays, entry, hit = cached_arrays(
        cache_root(request.cache_dir), "imagefolder",
        {"source": _fingerprint(path), "image_size": request.image_size},
        lambda: read_imagefolder(path, request.image_size))
    return make_bundle(arrays["train_x"], arrays["train_y"], tuple(arrays["classes"].tolist()),
                       request, test_x=arrays.get("test_x"), test_y=arrays.get("test_y"),
                       source=f"imagefolder {path} ({'cached' if hit else 'decoded'}: {entry})")
