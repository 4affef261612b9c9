"""Image classification datasets from the data layer: MNIST and Fashion-MNIST from their IDX files, CIFAR-10 from its
binary archive (read member by member, nothing extracted); every file fetched and MD5-verified by
:func:`rankrepro.data.registry.fetch_dataset` first.
"""

from __future__ import annotations

import math
import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rankrepro.core.errors import DataError
from rankrepro.core.io import one_line
from rankrepro.data.registry import CIFAR_ARCHIVE, DatasetSpec, Opener, check_labels, fetch_dataset, get_dataset

#: the members of the CIFAR-10 archive (:data:`~rankrepro.data.registry.CIFAR_ARCHIVE`): five training batches and
#: the test batch of 10,000 records (1 label byte + 3 × 32 × 32 pixel bytes)
CIFAR_TRAIN_BATCHES = tuple(f"cifar-10-batches-bin/data_batch_{k}.bin" for k in range(1, 6))
CIFAR_TEST_BATCH = "cifar-10-batches-bin/test_batch.bin"
CIFAR_RECORD = 1 + 3 * 32 * 32

#: the four IDX files of MNIST-style datasets, in fetch order
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# ---------------------------------------------------------------------------------------------------------------------
# IDX files (MNIST's format): magic 0x00 0x00, a type byte, the number of dimensions, big-endian int32 sizes, data.

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes, what: str = "IDX data") -> np.ndarray:
    """Decode the bytes of an IDX file into an array of native byte order; a :class:`DataError` if malformed."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{what} is not an IDX file (bad magic number {data[:4].hex() or 'none'})")
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_TYPES:
        raise DataError(f"{what} has an unknown IDX type code 0x{type_code:02x}")
    if ndim == 0:
        raise DataError(f"{what} declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{what} is truncated: its header needs {header} bytes, the file has {len(data)}")
    shape = tuple(int(size) for size in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[type_code]
    count = math.prod(shape)  # exact (no int64 overflow on a corrupt header)
    expected = header + count * dtype.itemsize
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(f"{what} is {state}: shape {shape} of {dtype.name} needs {expected} bytes, got {len(data)}")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header)
    return array.reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an (uncompressed) IDX file into a numpy array; a :class:`DataError` if it is truncated or corrupt."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path}: {one_line(exc)}") from None
    return parse_idx(data, f"IDX file {path}")


# ---------------------------------------------------------------------------------------------------------------------
# Image classification datasets


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A train/test image classification dataset: uint8 images ``(n, height, width)`` (grey) or
    ``(n, height, width, 3)`` (RGB), int64 labels ``(n,)``."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)


def _images_and_labels(folder: Path, spec: DatasetSpec, images_name: str, labels_name: str):
    """Read one split's images (uint8, 3-d) and labels (int64), checking they fit together and the classes."""
    images = read_idx(folder / images_name)
    labels = read_idx(folder / labels_name)
    if images.ndim != 3 or images.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"dataset '{spec.name}': {images_name} {images.shape} {images.dtype} and {labels_name} "
            f"{labels.shape} are not an image set and its labels"
        )
    labels = labels.astype(np.int64)
    check_labels(spec, labels, labels_name)
    return images, labels


def parse_cifar_batch(data: bytes, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 32, 32, 3)`` uint8 and labels ``(n,)`` int64 of one CIFAR-10 binary batch: n records of a label
    byte then the red, green and blue 32 × 32 planes; a :class:`DataError` if malformed."""
    if not data or len(data) % CIFAR_RECORD:
        raise DataError(f"{what} is not a CIFAR-10 batch: {len(data)} bytes is not a multiple of {CIFAR_RECORD}")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), records[:, 0].astype(np.int64)


def read_cifar_archive(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train images, train labels, test images, test labels of the CIFAR-10 binary archive, read member by member
    (nothing is extracted to disk); a :class:`DataError` if a batch is missing or malformed."""
    wanted = (*CIFAR_TRAIN_BATCHES, CIFAR_TEST_BATCH)
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                if member.name in wanted and member.isfile():
                    stream = archive.extractfile(member)
                    batches[member.name] = parse_cifar_batch(stream.read(), f"{path}:{member.name}")
    except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read the CIFAR-10 archive {path}: {one_line(exc)}") from None
    missing = [name for name in wanted if name not in batches]
    if missing:
        raise DataError(f"the CIFAR-10 archive {path} lacks {', '.join(missing)}")
    train = [batches[name] for name in CIFAR_TRAIN_BATCHES]
    test_images, test_labels = batches[CIFAR_TEST_BATCH]
    return (
        np.concatenate([images for images, _ in train]),
        np.concatenate([labels for _, labels in train]),
        test_images,
        test_labels,
    )


def load_image_classification(
    name: str, cache_root: str | os.PathLike, mirror: str | os.PathLike | None, *, opener: Opener | None = None
) -> ImageDataset:
    """Fetch (and verify) an image classification dataset with :func:`fetch_dataset`, then read it: the four IDX
    files of MNIST-style datasets, or the CIFAR-10 binary archive."""
    spec = get_dataset(name)
    if spec.reader == "cifar-binary" and spec.classes:
        folder = fetch_dataset(name, cache_root, mirror, opener=opener)
        train_images, train_labels, test_images, test_labels = read_cifar_archive(folder / CIFAR_ARCHIVE)
        check_labels(spec, train_labels, "the training batches")
        check_labels(spec, test_labels, "the test batch")
    elif spec.reader == "idx" and spec.classes and set(IDX_FILES) <= set(spec.file_names):
        folder = fetch_dataset(name, cache_root, mirror, opener=opener)
        train_images, train_labels = _images_and_labels(folder, spec, IDX_FILES[0], IDX_FILES[1])
        test_images, test_labels = _images_and_labels(folder, spec, IDX_FILES[2], IDX_FILES[3])
    else:
        raise DataError(
            f"dataset '{name}' is not an image classification dataset (an IDX one needs the files "
            f"{', '.join(IDX_FILES)} and class names)"
        )
    return ImageDataset(
        name=name,
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        class_names=spec.classes,
    )
