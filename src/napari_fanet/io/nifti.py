"""NIfTI input/output for the core: load, check, reorient and save volumes with their affine.

Every array derived from an image (mask, map, error map) is saved with that image's affine and a
copy of its header, so it overlays its source in any viewer. Models run in the RAS+ "closest
canonical" orientation (as :func:`nibabel.as_closest_canonical`); :func:`to_canonical` returns
the :class:`Orientation` with which :func:`from_canonical` maps a result back onto the source grid.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations as nio
from numpy.typing import DTypeLike

from napari_fanet.io.atomic import atomic_write
from napari_fanet.io.formatting import format_numbers

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Ending of the message refusing 4D data (front ends without ``allow_4d`` replace it).
FOUR_D_HINT = "; pass allow_4d=True to load 4D data"
#: Voxel sizes (mm) the simulator and the prediction accept: beyond them a head image is
#: either a handful of voxels or too many to resample.
VOXEL_SIZE_RANGE = (0.25, 10.0)
_RAS = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)  # nibabel ornt of a RAS+ grid


def _nifti_suffix(path: Path, label: str) -> str:
    """Return the path's NIfTI suffix as spelled, or raise naming the file."""
    for suffix in NIFTI_SUFFIXES:
        if path.name.lower().endswith(suffix) and len(path.name) > len(suffix):
            return path.name[-len(suffix) :]
    got = "".join(path.suffixes) or "no extension"
    raise ValueError(f"{label}: expected a NIfTI file ending in .nii or .nii.gz, got {got!r}")


def _check_affine(affine: np.ndarray, label: str) -> np.ndarray:
    """Return ``affine`` as float64 if it is a finite, invertible 4x4 matrix, else raise."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"{label}: expected a 4x4 affine, got an array of shape {affine.shape}")
    if not np.all(np.isfinite(affine)):
        raise ValueError(f"{label}: expected a finite affine, got {np.round(affine, 4).tolist()}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(
            f"{label}: expected an invertible affine (non-zero voxel sizes), got "
            f"{np.round(affine, 4).tolist()}"
        )
    return affine


def _ndim_error(label: str, shape: tuple[int, ...], expected: str, hint: str = "") -> ValueError:
    return ValueError(
        f"{label}: expected {expected}, got {len(shape)}D data of shape {shape}{hint}"
    )


def _check_gzip_stream(path: Path, label: str) -> None:
    """Decompress a ``.gz`` file to its end, so a damaged stream is refused, not half read.

    nibabel stops reading once it has the voxels it needs and so never reaches the gzip trailer
    whose CRC-32 and length would reveal damaged bytes; reading to the end checks both.
    """
    with open(path, "rb") as raw:
        if raw.read(2) != b"\x1f\x8b":
            return  # not gzip at all: nibabel says it cannot read the file
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 24):
                pass
    except PermissionError:
        raise
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(
            f"{label}: expected an intact gzip-compressed NIfTI file, got a damaged one "
            f"({exc}); copy or export the file again"
        ) from exc


@dataclass(eq=False)
class Volume:
    """A 3D (or 4D, ``(X, Y, Z, T)``) image with its float64 ``(4, 4)`` voxel-to-world affine.

    ``header`` is the source NIfTI header (copied and adjusted on save) and ``path`` the source
    file; both may be None.
    """

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header | None = None
    path: Path | None = None

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data)
        if self.data.ndim not in (3, 4):
            raise _ndim_error("Volume data", self.data.shape, "3D or 4D data")
        self.affine = _check_affine(self.affine, "Volume affine")
        self.path = None if self.path is None else Path(self.path)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape ``(X, Y, Z)``."""
        return tuple(int(n) for n in self.data.shape[:3])

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel size (mm) along each array axis: the column norms of the affine."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def ndim(self) -> int:
        """Number of data dimensions (3, or 4 for a volume loaded with ``allow_4d``)."""
        return self.data.ndim


def load_volume(
    path: str | os.PathLike,
    *,
    allow_4d: bool = False,
    dtype: DTypeLike | None = np.float32,
    name: str | None = None,
) -> Volume:
    """Load a ``.nii``/``.nii.gz`` file as a :class:`Volume` after checking it is usable.

    Trailing size-1 dimensions beyond the third are dropped. NaN/Inf voxels are set to 0 with a
    logged warning; a file without any finite voxel is refused.

    Parameters
    ----------
    path : str or PathLike
        The NIfTI file.
    allow_4d : bool
        Accept ``(X, Y, Z, T)`` data (default: 3D only).
    dtype : numpy dtype or None
        Type of ``Volume.data`` (default float32, intensity scaling applied); None keeps the
        stored type (in native byte order).
    name : str, optional
        Label used in messages instead of the file name (e.g. ``"FLAIR"``).
    """
    path = Path(path)
    label = name or path.name
    _nifti_suffix(path, label)
    if not path.is_file():
        raise FileNotFoundError(f"{label}: file not found: {path}")
    if path.name.lower().endswith(".gz"):
        _check_gzip_stream(path, label)
    try:
        img = nib.load(path, mmap=False)
        stored = np.dtype(img.get_data_dtype())
        raw = np.asanyarray(img.dataobj)
    except PermissionError:
        raise
    except Exception as exc:  # nibabel raises many types for foreign, truncated, corrupt files
        raise ValueError(
            f"{label}: expected a readable NIfTI image, got a file nibabel cannot read "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if stored.kind not in "iuf":
        raise ValueError(f"{label}: expected real-valued voxels, got {stored} data")
    shape = tuple(raw.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if not 3 <= len(shape) <= (4 if allow_4d else 3):
        expected = "a 3D or 4D volume" if allow_4d else "a 3D volume"
        hint = FOUR_D_HINT if len(shape) == 4 else ""
        raise _ndim_error(label, shape, expected, hint)
    affine = _check_affine(img.affine, label)
    raw = raw.reshape(shape)
    if raw.dtype.kind == "f":
        bad = ~np.isfinite(raw)
        n_bad = int(np.count_nonzero(bad))
        if n_bad == raw.size:
            raise ValueError(
                f"{label}: expected finite intensities, got no finite voxel "
                f"(all {raw.size} are NaN or Inf)"
            )
        if n_bad:
            msg = "%s: replaced %d non-finite (NaN or Inf) voxels of %d with 0"
            logger.warning(msg, label, n_bad, raw.size)
            raw = np.where(bad, 0, raw)
    data = np.asarray(raw, dtype=raw.dtype.newbyteorder("=") if dtype is None else dtype)
    if not data.flags.writeable:
        data = data.copy()
    return Volume(data, affine, header=img.header, path=path)


def _default_dtype(data: np.ndarray) -> np.dtype:
    """uint8 for masks, the smallest of uint8/int16/int32/int64 for labels, float32 otherwise."""
    if data.dtype == bool:
        return np.dtype(np.uint8)
    if data.dtype.kind == "f":
        return np.dtype(np.float32)
    lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
    for candidate in (np.uint8, np.int16, np.int32, np.int64):
        if np.iinfo(candidate).min <= lo and hi <= np.iinfo(candidate).max:
            return np.dtype(candidate)
    return np.dtype(np.uint64)


def _cast_exact(data: np.ndarray, dtype: np.dtype, label: str) -> np.ndarray:
    """Cast to ``dtype``, refusing values an integer type would change or a float overflows."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = data.astype(dtype, copy=False)
    if not (np.all(np.isfinite(out)) if dtype.kind == "f" else np.array_equal(out, data)):
        raise ValueError(
            f"{label}: expected values that {dtype} can store, got values in "
            f"[{data.min()}, {data.max()}]"
        )
    return out


def save_volume(
    path: str | os.PathLike,
    data: np.ndarray,
    reference: Volume | np.ndarray,
    *,
    dtype: DTypeLike | None = None,
) -> Path:
    """Write ``data`` with the affine and header of ``reference`` atomically; return ``path``.

    The image goes to a hidden temporary file with the same suffix in the destination folder, is
    synced and renamed over ``path``; on any error the temporary file is removed and an existing
    ``path`` is left untouched. qform and sform are both set to the affine (keeping the
    reference's codes, else 1 = scanner), unless ``reference`` is a Volume whose header already
    gives its affine: then that header's qform and sform are kept as they were, even where they
    differ (an unset one is filled with the affine). Values are stored unscaled in ``dtype``.

    Parameters
    ----------
    path : str or PathLike
        Destination ending in ``.nii`` or ``.nii.gz`` (compressed).
    data : numpy.ndarray
        Real, finite values of shape ``(X, Y, Z)`` (or ``(X, Y, Z, T)``); ``(X, Y, Z)`` must be
        ``reference.shape`` when ``reference`` is a Volume.
    reference : Volume or numpy.ndarray
        The image the data was derived from, or a ``(4, 4)`` affine.
    dtype : numpy dtype, optional
        Stored type. Default: uint8 for bool data, the smallest of uint8/int16/int32/int64 that
        holds integer data, float32 otherwise. Values it cannot store exactly are refused.
    """
    path = Path(path)
    label = path.name
    suffix = _nifti_suffix(path, label)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{label}: cannot save, folder {path.parent} does not exist")
    data = np.asarray(data)
    if data.dtype.kind not in "biuf":
        raise ValueError(f"{label}: expected real-valued data, got {data.dtype} data")
    if data.ndim not in (3, 4):
        raise ValueError(f"{label}: expected 3D (or 4D) data, got {data.ndim}D of {data.shape}")
    if isinstance(reference, Volume):
        if data.shape[:3] != reference.shape:
            raise ValueError(
                f"{label}: data shape {data.shape} does not match the reference's spatial "
                f"shape {reference.shape}"
            )
        affine, header = reference.affine, reference.header
    elif isinstance(reference, np.ndarray):
        affine, header = _check_affine(reference, f"{label}: reference"), None
    else:
        raise TypeError(
            f"{label}: expected a Volume or a 4x4 affine array as reference, got "
            f"{type(reference).__name__}"
        )
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        n_bad = int(np.count_nonzero(~np.isfinite(data)))
        raise ValueError(f"{label}: expected finite values, got {n_bad} NaN/Inf of {data.size}")
    out_dtype = _default_dtype(data) if dtype is None else np.dtype(dtype)
    hdr = header.copy() if header is not None else nib.Nifti1Header()
    try:
        hdr.set_data_dtype(out_dtype)
    except Exception as exc:  # nibabel's HeaderDataError for types NIfTI lacks
        raise ValueError(
            f"{label}: expected a NIfTI data type (uint8, int16, int32, float32...), "
            f"got {out_dtype}"
        ) from exc
    out = _cast_exact(data, out_dtype, label)
    hdr["cal_min"] = hdr["cal_max"] = 0  # the reference's display window means nothing here
    # When the reference's own header describes this grid, its qform and sform (which may
    # differ, for example a scanner qform beside an aligned sform) are kept as they were; an
    # unset one (code 0) is filled with the affine
    same = header is not None and np.allclose(header.get_best_affine(), affine, atol=1e-6)
    if not (same and int(hdr["qform_code"]) > 0):
        hdr.set_qform(affine, code=int(hdr["qform_code"]) or 1)
    if not (same and int(hdr["sform_code"]) > 0):
        hdr.set_sform(affine, code=int(hdr["sform_code"]) or 1)
    image_class = nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image
    img = image_class(out, affine, header=hdr)  # resets scl_slope/inter: `out` is stored as is

    return atomic_write(path, lambda tmp: nib.save(img, tmp), suffix=suffix)


def _describe(key: str, volume: Volume) -> str:
    return key if volume.path is None else f"{key} ({volume.path.name})"


def check_same_grid(volumes: Mapping[str, Volume], *, atol: float = 1e-3) -> None:
    """Check that named volumes share the first one's spatial shape and affine.

    Raises ValueError naming the volume that disagrees with the first, with both shapes, or the
    largest absolute difference between affine entries and the tolerance ``atol``.
    """
    if not (isinstance(atol, (int, float, np.number)) and atol >= 0):
        raise ValueError(f"atol must be a non-negative number, got {atol!r}")
    for key, volume in volumes.items():
        if not isinstance(volume, Volume):
            raise TypeError(f"{key}: expected a Volume, got {type(volume).__name__}")
    items = list(volumes.items())
    for key, volume in items[1:]:
        ref_key, ref = items[0]
        what = f"{_describe(key, volume)} does not match {_describe(ref_key, ref)}: expected the"
        if volume.shape != ref.shape:
            raise ValueError(f"{what} same voxel grid, got shape {volume.shape} vs {ref.shape}")
        diff = float(np.max(np.abs(volume.affine - ref.affine)))
        sizes, ref_sizes = np.asarray(volume.voxel_size), np.asarray(ref.voxel_size)
        if diff > atol and np.max(np.abs(sizes - ref_sizes)) > atol:
            raise ValueError(
                f"{what} same voxel size, got {format_numbers(sizes)} mm vs "
                f"{format_numbers(ref_sizes)} mm"
            )
        if diff > atol:
            raise ValueError(
                f"{what} same affine, got entries differing by up to {diff:.4g} (atol={atol:g})"
            )


@dataclass(eq=False)
class MSStudy:
    """The three co-registered MS modalities of one subject, on one 3D voxel grid."""

    t1: Volume
    t2: Volume
    flair: Volume


def load_ms_study(
    t1: str | os.PathLike | Volume,
    t2: str | os.PathLike | Volume,
    flair: str | os.PathLike | Volume,
    *,
    atol: float = 1e-3,
) -> MSStudy:
    """Load T1, T2 and FLAIR (paths or Volumes) and check that they share one 3D voxel grid.

    Paths are loaded as float32 with :func:`load_volume`; ``atol`` is passed to
    :func:`check_same_grid`. Messages name the modality and its file.
    """
    volumes = {}
    for key, source in (("T1", t1), ("T2", t2), ("FLAIR", flair)):
        if isinstance(source, Volume):
            if source.ndim != 3:
                raise _ndim_error(_describe(key, source), source.data.shape, "a 3D volume")
            volumes[key] = source
        else:
            volumes[key] = load_volume(source, name=f"{key} ({Path(source).name})")
    check_same_grid(volumes, atol=atol)
    return MSStudy(volumes["T1"], volumes["T2"], volumes["FLAIR"])


@dataclass(frozen=True)
class Orientation:
    """How a source voxel grid maps onto its RAS+ closest-canonical grid.

    ``ornt`` is ``nibabel.orientations.io_orientation`` of the source affine (source axis ``i``
    becomes canonical axis ``ornt[i][0]``, reversed when ``ornt[i][1] == -1``); ``shape`` is the
    source's spatial shape.
    """

    ornt: tuple[tuple[int, int], ...]
    shape: tuple[int, int, int]

    @property
    def canonical_shape(self) -> tuple[int, int, int]:
        """Spatial shape of the canonical grid."""
        out = [0, 0, 0]
        for size, (axis, _) in zip(self.shape, self.ornt, strict=True):
            out[axis] = size
        return tuple(out)

    @property
    def is_identity(self) -> bool:
        """Whether the source grid is already RAS+ (no permutation, no flip)."""
        return self.ornt == ((0, 1), (1, 1), (2, 1))


def to_canonical(volume: Volume) -> tuple[Volume, Orientation]:
    """Reorient to RAS+ by permuting and flipping axes, like ``nib.as_closest_canonical``.

    Oblique affines go to their closest axes; no resampling, so every voxel keeps its value and
    its world coordinate. Returns the canonical Volume (contiguous data, its affine,
    ``header=None``, the source path) and the :class:`Orientation` for :func:`from_canonical`.
    """
    ornt = nio.io_orientation(volume.affine)
    data = np.ascontiguousarray(nio.apply_orientation(volume.data, ornt))
    affine = volume.affine @ nio.inv_ornt_aff(ornt, volume.shape)
    orientation = Orientation(tuple((int(a), int(f)) for a, f in ornt), volume.shape)
    return Volume(data, affine, header=None, path=volume.path), orientation


def from_canonical(array: np.ndarray, orientation: Orientation) -> np.ndarray:
    """Map a 3D array on the canonical grid back onto the source grid (exact, no resampling).

    Save the result with the source Volume as reference so it lines up with the source.
    """
    array = np.asarray(array)
    if array.shape != orientation.canonical_shape:
        raise ValueError(
            f"expected a 3D array of the canonical shape {orientation.canonical_shape}, "
            f"got shape {array.shape}"
        )
    back = nio.ornt_transform(_RAS, np.asarray(orientation.ornt, dtype=float))
    return np.ascontiguousarray(nio.apply_orientation(array, back))


#: JSON keys that give the B0 direction in scanner (world) axes, in the order they are tried.
B0_WORLD_KEYS = ("B0Dir", "B0_dir", "b0_dir_world")


def read_b0_metadata(
    image_path: str | Path, affine: np.ndarray | None = None
) -> tuple[tuple[float, float, float], str] | None:
    """The B0 direction (scanner axes) stored next to an image, and where it was found.

    Looks at the BIDS-style sidecar ``NAME.json`` beside ``NAME.nii[.gz]``, then at
    ``meta.json`` in the same folder (what ``napari-fanet simulate`` writes), for one of
    :data:`B0_WORLD_KEYS` or, when the image's ``affine`` (4x4) is given, ``b0_dir`` in the
    image's array axes (turned into scanner axes by the affine's linear part). Returns None
    when neither file gives a direction.

    Raises
    ------
    ValueError
        If a file is not valid JSON, or its direction is not 3 finite numbers, not all zero.
    """
    path = Path(image_path)
    stem = path.name
    for suffix in (".nii.gz", ".nii"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    for candidate in (path.with_name(f"{stem}.json"), path.with_name("meta.json")):
        if not candidate.is_file():
            continue
        try:
            meta = json.loads(candidate.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{candidate}: cannot read it as JSON ({exc})") from exc
        if not isinstance(meta, dict):
            continue
        for key in B0_WORLD_KEYS:
            if key in meta:
                return _b0_from_json(meta[key], f"{candidate} ({key})"), str(candidate)
        if "b0_dir" in meta and affine is not None:
            array_dir = np.asarray(_b0_from_json(meta["b0_dir"], f"{candidate} (b0_dir)"))
            world = np.asarray(affine, dtype=np.float64)[:3, :3] @ array_dir
            world = world / np.linalg.norm(world)
            return tuple(float(v) for v in world), str(candidate)  # type: ignore[return-value]
    return None


def _b0_from_json(value: object, where: str) -> tuple[float, float, float]:
    try:
        numbers = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != 3 or not all(np.isfinite(numbers)) or not any(numbers):
        raise ValueError(
            f"{where}: expected the B0 direction as 3 finite numbers, not all zero, got {value!r}"
        )
    return numbers  # type: ignore[return-value]
