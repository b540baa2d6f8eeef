"""Where detect reads from: image files, folders, glob patterns, videos, webcams and streams, and in-memory images.

Every image leaves here as HxWx3 uint8 **RGB**, upright (EXIF orientation applied), whatever it was on
disk: grayscale, palette, 16-bit, or with an alpha channel (dropped, as in training). Files are decoded by
``ghostdet.data.image_io`` (the data pipeline's reader).
"""
from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ghostdet.data.image_io import IMAGE_SUFFIXES, read_image  # one list of image types, one reader, for training and detect
from ghostdet.utils.errors import DataError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".wmv", ".mpg", ".mpeg", ".ts"})
_GLOB_CHARS = frozenset("*?[")
# URLs OpenCV's capture opens (through FFmpeg): network streams, and file:// for a video file read the same way
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtp", "srt", "udp", "tcp", "http", "https", "file")


@dataclass
class MediaFile:
    """One file to run on. ``named`` is True when the user named it directly (so failing to read it is an error,
    not a skip). A webcam or stream has ``stream`` (the OpenCV source: ``"0"`` or a URL) and no ``path``."""

    path: Path | None
    is_video: bool
    named: bool
    stream: str | None = None


@dataclass
class Frame:
    """One image to run on: the pixels (RGB uint8) and where they came from."""

    image: np.ndarray
    path: Path | None  # None for in-memory images
    index: int  # position in the source list (for in-memory images) or frame number (videos)
    is_video: bool = False
    frame_count: int | None = None  # total frames of the video, when the container says
    stream: str | None = None  # a webcam index or stream URL (then path is None)
    fps: float | None = None  # of a video or stream, when it says

    @property
    def name(self) -> str:
        if self.stream is not None:
            return f"{stream_name(self.stream)}:{self.index}"
        if self.path is None:
            return f"image{self.index}"
        return f"{self.path.name}:{self.index}" if self.is_video else self.path.name

    @property
    def where(self) -> str:
        """The source as the user named it: a path, a webcam index or a URL."""
        return self.stream if self.stream is not None else str(self.path) if self.path is not None else self.name


def is_stream(text: str) -> bool:
    """A webcam index (``0``) or a URL OpenCV can open (``rtsp://...``, ``http://...``, ``file:///clip.mp4``)."""
    scheme, sep, _ = text.partition("://")
    return text.isdigit() or bool(sep) and scheme.lower() in STREAM_SCHEMES


def stream_name(stream: str) -> str:
    """A file-name stem for a stream's outputs: ``webcam0``, or the last part of the URL (``cam1`` of rtsp://h/cam1)."""
    if stream.isdigit():
        return f"webcam{stream}"
    tail = stream.split("://", 1)[-1].split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(tail).stem)
    return stem or "stream"


def _media_kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


def collect_sources(sources: str | os.PathLike | Sequence[str | os.PathLike]) -> list[MediaFile]:
    """Expand files, folders (their images and videos, not recursive) and glob patterns (``**`` recurses)
    into a sorted, de-duplicated list.

    A path that exists is never treated as a pattern, so names with spaces or brackets work as they are.
    A webcam index (``0``) or a stream URL that is not an existing path is read through OpenCV (see ``is_stream``).
    Raises DataError for a missing path, a pattern with no match, or a folder with no images or videos.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    found: list[MediaFile] = []
    seen: set[Path] = set()
    seen_streams: set[str] = set()

    def add(path: Path, named: bool) -> None:
        key = path.resolve()
        if key in seen:
            return
        seen.add(key)
        found.append(MediaFile(path, _media_kind(path) == "video", named))

    for source in sources:
        text = os.fspath(source)
        path = Path(text).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and _media_kind(p))
            if not files:
                raise DataError(f"{path}: folder has no images or videos ({', '.join(IMAGE_SUFFIXES)}, .mp4, ...)")
            for p in files:
                add(p, named=False)
        elif path.is_file():
            add(path, named=True)
        elif is_stream(text):
            if text not in seen_streams:
                seen_streams.add(text)
                found.append(MediaFile(None, True, True, stream=text))
        elif _GLOB_CHARS & set(text):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            files = [p for p in matches if p.is_file() and _media_kind(p)]
            if not files:
                raise DataError(f"{text}: pattern matches no images or videos; check the pattern (quote it so the shell does not expand it)")
            for p in files:
                add(p, named=False)
        else:
            raise DataError(f"{text}: no such file or folder; check the path")
    return found


def array_to_rgb(image: np.ndarray, bgr: bool = False) -> np.ndarray:
    """A numpy image from the user → HxWx3 uint8 RGB. ``bgr=True`` for arrays from ``cv2.imread``/``VideoCapture``.

    Grayscale is repeated to 3 channels, a 4th (alpha) channel is dropped, 0-1 floats are scaled to 0-255.
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise DataError(f"image array has shape {arr.shape}; expected HxW, HxWx3 or HxWx4 (channels last)")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(arr.max()) <= 1.0:
            arr = arr * 255.0  # 0-1 float images (e.g. from skimage)
        arr = np.clip(arr, 0, 255).round().astype(np.uint8)
    if arr.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(arr, 3, axis=2))
    arr = arr[..., :3]
    if bgr:
        arr = arr[..., ::-1]
    return np.ascontiguousarray(arr)


def iter_frames(files: Sequence[MediaFile]) -> Iterator[Frame]:
    """Yield the frames of ``files`` in order: one per image, every frame of each video.

    An image the user named directly that cannot be read raises DataError; one found through a folder or
    pattern is skipped with a warning that names it (one bad file should not stop a run over thousands).
    """
    for media in files:
        if media.is_video:
            yield from _iter_video(media)
            continue
        try:
            image = read_image(media.path)
        except DataError as e:
            if media.named:
                raise
            log.warning("skipping %s", e)
            continue
        yield Frame(image=image, path=media.path, index=0)


def _iter_video(media: MediaFile) -> Iterator[Frame]:
    """Every frame of a video file, webcam or stream: one OpenCV capture loop for all three."""
    import cv2

    stream = media.stream
    cap = cv2.VideoCapture(str(media.path) if stream is None else int(stream) if stream.isdigit() else stream)
    try:
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            what = "not a readable video (OpenCV could not decode it)" if stream is None else (
                "no such webcam, or it is busy" if stream.isdigit() else "OpenCV could not open the stream")
            message = f"{media.path if stream is None else stream}: {what}"
            if media.named:
                raise DataError(message)
            log.warning("skipping %s", message)
            return
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if stream is None else 0  # a stream has no end to count to
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = fps if 0 < fps < 1000 else None
        index = 0
        while ok:
            yield Frame(image=cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), path=media.path, index=index, is_video=True,
                        frame_count=total or None, stream=stream, fps=fps)
            index += 1
            ok, frame = cap.read()
    finally:
        cap.release()

