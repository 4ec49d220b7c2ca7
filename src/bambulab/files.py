"""Files on a printer's storage (SD card or USB stick) over implicit FTPS.

```python
async with PrinterFiles.connect(host, access_code, serial=serial, ssl_context=ctx) as files:
    await files.upload("benchy.gcode.3mf", "/benchy.gcode.3mf", progress=print)
    for f in await files.list("/"):
        print(f.name, f.size, f.modified)
    for video in await files.timelapses():
        await files.download_timelapse(video.name, "videos/")
```

A :class:`PrinterFiles` keeps one FTPS control connection (see
:class:`bambulab.transports.ftps.FtpsClient`) and uses it for one operation at a time; it opens on
first use and reopens after a dropped connection. From a :class:`~bambulab.printer.Printer`
(``printer.files``) the connection details come from the printer and the object can be opened
again after :meth:`PrinterFiles.close`; one made with :meth:`PrinterFiles.connect` cannot.

Remote paths are absolute from the storage root (``"/cache/a.3mf"``); a bare name is taken
from the root. Listings parse the unix ``ls -l`` lines vsftpd sends, fall back to ``NLST``
(plus ``SIZE``) for lines they cannot read, and never return ``.``/``..``. Times in listings
are the printer's clock, read as UTC, to the minute (or the day, for files older than six months).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import re
import ssl
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Final, overload

from bambulab.endpoint import PrinterEndpoint
from bambulab.exceptions import FileTransferError, NotConnectedError
from bambulab.transports.ftps import DEFAULT_PORT, DEFAULT_TIMEOUT, FtpsClient, Progress, UploadSource, reply_code

if TYPE_CHECKING:
    from bambulab.printer import Printer

__all__ = [
    "TIMELAPSE_DIR",
    "TIMELAPSE_SUFFIXES",
    "TIMELAPSE_THUMBNAIL_DIR",
    "PrinterFiles",
    "Progress",
    "RemoteFile",
    "nlst_names",
    "parse_list_line",
    "parse_listing",
    "remote_path",
]

TIMELAPSE_DIR: Final = "/timelapse"
TIMELAPSE_THUMBNAIL_DIR: Final = "/timelapse/thumbnail"
#: X1 records ``.mp4``, P1/A1 ``.avi`` (MJPEG).
TIMELAPSE_SUFFIXES: Final = (".mp4", ".avi")
_THUMBNAIL_SUFFIXES: Final = (".jpg", ".jpeg", ".png")
_MAX_SIZE_PROBES: Final = 256  # SIZE calls the NLST fallback makes at most per listing
_NOT_IMPLEMENTED: Final = frozenset({"500", "502", "504"})  # replies that make list() use NLST


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """A file or folder on the printer. ``size`` and ``modified`` are ``None`` when unknown.

    ``thumbnail`` is the remote path of a timelapse's preview image, when the printer has one.
    """

    name: str
    path: str
    size: int | None
    is_dir: bool
    modified: datetime | None
    thumbnail: str | None = None


# --------------------------------------------------------------------------- paths


def remote_path(path: str | PurePosixPath, *, folder_ok: bool = True) -> str:
    """An absolute, normalised remote path; ``ValueError`` for what FTP cannot carry safely."""
    text = str(path).replace("\\", "/")
    if any(ch in text for ch in "\r\n\0"):
        raise ValueError(f"remote path must not contain line breaks or NUL: {text!r}")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"remote path must not contain '..': {text!r}")
    if not parts and not folder_ok:
        raise ValueError("remote path must name a file")
    return "/" + "/".join(parts)


def _join(folder: str, name: str) -> str:
    return folder.rstrip("/") + "/" + name


# --------------------------------------------------------------------------- listing parsers

_MONTHS: Final = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_UNIX_LINE: Final = re.compile(
    r"^(?P<type>[-dlbcps])[-rwxsStT]{9}[.+@]?\s+"
    r"\d+\s+\S+\s+(?:\S+\s+)?(?P<size>\d+)\s+"
    r"(?P<month>[A-Za-z]{3})\s+(?P<day>\d{1,2})\s+(?P<when>\d{1,2}:\d{2}|\d{4})\s(?P<name>.+)$"
)
_DOS_LINE: Final = re.compile(
    r"^(?P<month>\d{2})-(?P<day>\d{2})-(?P<year>\d{2,4})\s+(?P<hour>\d{1,2}):(?P<minute>\d{2})(?P<ampm>[AaPp][Mm])?\s+"
    r"(?:(?P<dir><DIR>)|(?P<size>\d+))\s+(?P<name>.+)$"
)


def _unix_time(month: str, day: str, when: str, now: datetime) -> datetime | None:
    mon = _MONTHS.get(month.lower())
    if mon is None:
        return None
    try:
        if ":" in when:
            hour, minute = (int(x) for x in when.split(":"))
            stamp = datetime(now.year, mon, int(day), hour, minute, tzinfo=UTC)
            if stamp > now + timedelta(days=1):  # "recent" means the last six months: last year
                stamp = stamp.replace(year=now.year - 1)
            return stamp
        return datetime(int(when), mon, int(day), tzinfo=UTC)
    except ValueError:  # 29 Feb in the wrong year, day 0 ...
        return None


def _dos_time(m: re.Match[str]) -> datetime | None:
    try:
        year = int(m["year"])
        if year < 100:
            year += 2000 if year < 70 else 1900
        hour = int(m["hour"])
        ampm = (m["ampm"] or "").lower()
        if ampm == "pm" and hour < 12:
            hour += 12
        elif ampm == "am" and hour == 12:
            hour = 0
        return datetime(year, int(m["month"]), int(m["day"]), hour, int(m["minute"]), tzinfo=UTC)
    except ValueError:
        return None


def parse_list_line(line: str, folder: str = "/", *, now: datetime | None = None) -> RemoteFile | None:
    """One ``LIST`` line (unix ``ls -l`` or MS-DOS style) as a :class:`RemoteFile`.

    ``None`` for lines that are not entries (``total 12``, ``.``, ``..``) or that do not parse.
    Symbolic links are reported under their own name (``a -> b`` gives ``a``), as files.
    """
    text = line.rstrip("\r\n")
    when_now = now or datetime.now(UTC)
    m = _UNIX_LINE.match(text)
    if m is not None:
        name = m["name"]
        kind = m["type"]
        if kind == "l" and " -> " in name:
            name = name.split(" -> ", 1)[0]
        if name in (".", "..") or "/" in name:
            return None
        return RemoteFile(
            name=name,
            path=_join(folder, name),
            size=int(m["size"]),
            is_dir=kind == "d",
            modified=_unix_time(m["month"], m["day"], m["when"], when_now),
        )
    d = _DOS_LINE.match(text)
    if d is not None:
        name = d["name"]
        if name in (".", "..") or "/" in name:
            return None
        is_dir = d["dir"] is not None
        return RemoteFile(
            name=name,
            path=_join(folder, name),
            size=None if is_dir else int(d["size"]),
            is_dir=is_dir,
            modified=_dos_time(d),
        )
    return None


def _is_noise(line: str) -> bool:
    text = line.strip()
    return not text or text.lower().startswith("total ")


def parse_listing(
    lines: Iterable[str], folder: str = "/", *, now: datetime | None = None
) -> tuple[list[RemoteFile], list[str]]:
    """Parse ``LIST`` output: the entries, and the lines that were neither entries nor noise."""
    entries: list[RemoteFile] = []
    unread: list[str] = []
    for line in lines:
        if _is_noise(line):
            continue
        entry = parse_list_line(line, folder, now=now)
        if entry is not None:
            entries.append(entry)
        elif line.split()[-1] not in (".", ".."):
            unread.append(line)
    return entries, unread


def nlst_names(lines: Iterable[str]) -> list[str]:
    """Bare names from ``NLST`` output, whether the printer sent names (P1/A1) or full paths (X1)."""
    names: list[str] = []
    for line in lines:
        text = line.strip().replace("\\", "/").rstrip("/")
        name = text.rsplit("/", 1)[-1]
        if name and name not in (".", "..") and name not in names:
            names.append(name)
    return names


# --------------------------------------------------------------------------- local files


def _open_part(dest: Path) -> tuple[IO[bytes], Path]:
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.part")
    return open(part, "wb"), part  # closed by _finish_part / _discard_part


def _finish_part(fh: IO[bytes], part: Path, dest: Path) -> None:
    fh.close()
    os.replace(part, dest)


def _discard_part(fh: IO[bytes], part: Path) -> None:
    fh.close()
    with contextlib.suppress(OSError):
        part.unlink()


# --------------------------------------------------------------------------- the API


class PrinterFiles:
    """The printer's storage over FTPS; see the module docstring.

    Construct it from a :class:`~bambulab.printer.Printer` (``printer.files`` does), a
    :class:`~bambulab.endpoint.PrinterEndpoint` (its serial is checked against the certificate),
    a configured :class:`~bambulab.transports.ftps.FtpsClient`, or with :meth:`connect`. Use it as
    an async context manager, or call :meth:`close` when done.
    """

    def __init__(
        self,
        target: Printer | PrinterEndpoint | FtpsClient,
        *,
        tls12: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._target: PrinterEndpoint | None = None
        self._client: FtpsClient | None = None
        self._reopenable = False
        self._closed = False
        self._tls12 = tls12
        self._timeout = timeout
        if isinstance(target, FtpsClient):
            self._client = target
            return
        endpoint = target if isinstance(target, PrinterEndpoint) else getattr(target, "endpoint", None)
        if not isinstance(endpoint, PrinterEndpoint):
            raise TypeError(
                "PrinterFiles needs a printer with .host, .access_code and .ssl_context: "
                "a Printer, a PrinterEndpoint or an FtpsClient"
            )
        self._target = endpoint
        self._reopenable = True

    @classmethod
    def connect(
        cls,
        host: str,
        access_code: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        port: int = DEFAULT_PORT,
        tls12: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        serial: str | None = None,
    ) -> _Connecting:
        """Connect to a printer's FTPS server without a :class:`~bambulab.printer.Printer`.

        ``async with PrinterFiles.connect(...) as files`` or ``files = await PrinterFiles.connect(...)``
        (then ``await files.close()``). ``ssl_context`` decides how the printer's certificate is
        checked (default: the bundled Bambu CA, see :mod:`bambulab.transports.tls`); with
        ``serial`` the certificate must also name that serial. ``tls12`` caps TLS at 1.2;
        ``timeout`` bounds each network wait.
        """
        client = FtpsClient(
            host,
            access_code,
            ssl_context=ssl_context,
            port=port,
            tls12=tls12,
            timeout=timeout,
            serial=serial,
        )
        return _Connecting(cls(client))

    def __repr__(self) -> str:
        client = self._client
        if client is not None:
            where = f"{client.host}:{client.port}"
        elif self._target is not None:
            where = f"{self._target.host}:{self._target.ftps_port}"
        else:  # pragma: no cover - one of the two is always set
            where = "?"
        return f"<PrinterFiles {where}{' closed' if self._closed else ''}>"

    async def __aenter__(self) -> PrinterFiles:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect and log in now (operations otherwise do it on first use)."""
        await self._ftps().connect()

    async def close(self) -> None:
        """Close the FTPS connection. A printer's ``files`` can be used again afterwards."""
        client = self._client
        if self._reopenable:
            self._client = None
        else:
            self._closed = True
        if client is not None:
            await client.close()

    @property
    def client(self) -> FtpsClient:
        """The FTPS client in use (created on first use for a printer)."""
        return self._ftps()

    def _ftps(self) -> FtpsClient:
        if self._closed:
            raise NotConnectedError("this PrinterFiles is closed")
        client = self._client
        if client is None:
            target = self._target
            assert target is not None
            client = FtpsClient(
                target.host,
                target.access_code,
                ssl_context=target.ssl_context,
                port=target.ftps_port,
                tls12=self._tls12,
                timeout=self._timeout,
                serial=target.serial,
            )
            self._client = client
        return client

    # -- transfers

    async def upload(
        self,
        source: str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes],
        remote: str,
        *,
        progress: Progress | None = None,
        verify: bool = True,
    ) -> RemoteFile:
        """Upload a local file, bytes or a binary file object to ``remote``.

        A ``remote`` ending in ``/`` is a folder: the local file's name is appended.
        ``progress(sent, total)`` is called on the event loop after each block, the last time
        with ``sent == total``. With ``verify`` the size on the printer is compared (``SIZE``)
        and a difference raises :class:`~bambulab.exceptions.FileTransferError`.
        """
        target = str(remote)
        if target.endswith("/") or target in ("", "."):
            if not isinstance(source, str | os.PathLike):
                raise ValueError("remote must name a file when uploading bytes or a file object")
            target = _join(target or "/", Path(source).name)
        path = remote_path(target, folder_ok=False)
        data: UploadSource | str | os.PathLike[str] = source
        sent = await self._ftps().upload(data, path, progress=progress)
        size: int | None = sent
        if verify:
            size = await self._ftps().size(path)
            if size != sent:
                raise FileTransferError(f"upload of {path} did not verify: sent {sent} bytes, the printer has {size}")
        return RemoteFile(name=path.rsplit("/", 1)[-1], path=path, size=size, is_dir=False, modified=None)

    @overload
    async def download(self, remote: str, local: None = None, *, progress: Progress | None = None) -> bytes: ...

    @overload
    async def download(
        self, remote: str, local: str | os.PathLike[str], *, progress: Progress | None = None
    ) -> Path: ...

    async def download(
        self, remote: str, local: str | os.PathLike[str] | None = None, *, progress: Progress | None = None
    ) -> bytes | Path:
        """Download ``remote``: its bytes, or into ``local`` (a file path, or an existing folder).

        A local file appears only once the whole download arrived (written to a hidden
        ``.<name>.part`` next to it, then renamed). A missing remote file raises
        :class:`~bambulab.exceptions.FileTransferError` ("no such file").
        """
        path = remote_path(remote, folder_ok=False)
        if local is None:
            buffer = bytearray()
            await self._ftps().download(path, buffer.extend, progress=progress)
            return bytes(buffer)
        dest = Path(local)
        if await asyncio.to_thread(dest.is_dir):
            dest = dest / path.rsplit("/", 1)[-1]
        fh, part = await asyncio.to_thread(_open_part, dest)
        try:
            await self._ftps().download(path, fh.write, progress=progress)
        except BaseException:
            await asyncio.to_thread(_discard_part, fh, part)
            raise
        await asyncio.to_thread(_finish_part, fh, part, dest)
        return dest

    async def delete(self, remote: str) -> None:
        """Delete a file (``DELE``); a missing file raises FileTransferError."""
        await self._ftps().delete(remote_path(remote, folder_ok=False))

    async def size(self, remote: str) -> int:
        """The size of a file in bytes (``SIZE``); a missing file raises FileTransferError."""
        return await self._ftps().size(remote_path(remote, folder_ok=False))

    async def exists(self, remote: str) -> bool:
        """Whether a file or folder exists at ``remote``."""
        path = remote_path(remote)
        if path == "/":
            return True
        try:
            await self._ftps().size(path)
        except FileTransferError:
            pass
        else:
            return True
        folder, name = path.rsplit("/", 1)
        try:
            return name in nlst_names(await self._ftps().nlst(folder or "/"))
        except FileTransferError:
            return False

    async def mkdir(self, remote: str) -> None:
        """Create a folder (``MKD``)."""
        await self._ftps().mkdir(remote_path(remote, folder_ok=False))

    # -- listings

    async def names(self, path: str = "/") -> list[str]:
        """The names in a folder (``NLST``), bare whatever form the printer sends."""
        return nlst_names(await self._ftps().nlst(remote_path(path)))

    async def list(self, path: str = "/") -> list[RemoteFile]:
        """The entries of a folder, folders and files, in the printer's order."""
        folder = remote_path(path)
        client = self._ftps()
        try:
            lines = await client.list_lines(folder)
        except FileTransferError as exc:
            if reply_code(exc) not in _NOT_IMPLEMENTED:
                raise
            lines = None  # this server has no LIST: names only
        entries, unread = parse_listing(lines or [], folder)
        if lines is not None and not unread:
            return entries
        known = {e.name for e in entries}
        missing = [n for n in nlst_names(await client.nlst(folder)) if n not in known]
        for name in missing[:_MAX_SIZE_PROBES]:
            entries.append(await self._probe(folder, name))
        entries.extend(
            RemoteFile(name=n, path=_join(folder, n), size=None, is_dir=False, modified=None)
            for n in missing[_MAX_SIZE_PROBES:]
        )
        return entries

    async def _probe(self, folder: str, name: str) -> RemoteFile:
        path = _join(folder, name)
        try:
            size: int | None = await self._ftps().size(path)
        except FileTransferError:  # SIZE refuses folders
            return RemoteFile(name=name, path=path, size=None, is_dir=True, modified=None)
        return RemoteFile(name=name, path=path, size=size, is_dir=False, modified=None)

    # -- timelapses

    async def timelapses(self) -> builtins.list[RemoteFile]:
        """Timelapse videos (``/timelapse``, ``.mp4`` on X1, ``.avi`` on P1/A1), newest first.

        ``thumbnail`` is set when ``/timelapse/thumbnail`` has an image with the video's stem.
        A printer without the folder has no timelapses (an empty list).
        """
        try:
            entries = await self.list(TIMELAPSE_DIR)
        except FileTransferError as exc:
            if reply_code(exc) == "550":
                return []
            raise
        thumbs: dict[str, str] = {}
        if any(e.is_dir and e.name == "thumbnail" for e in entries):
            with contextlib.suppress(FileTransferError):
                for thumb in await self.list(TIMELAPSE_THUMBNAIL_DIR):
                    stem, dot, suffix = thumb.name.rpartition(".")
                    if dot and not thumb.is_dir and f".{suffix.lower()}" in _THUMBNAIL_SUFFIXES:
                        thumbs.setdefault(stem, thumb.path)
        videos = [
            RemoteFile(
                name=e.name,
                path=e.path,
                size=e.size,
                is_dir=False,
                modified=e.modified,
                thumbnail=thumbs.get(e.name.rpartition(".")[0]),
            )
            for e in entries
            if not e.is_dir and e.name.lower().endswith(TIMELAPSE_SUFFIXES)
        ]
        oldest = datetime.min.replace(tzinfo=UTC)
        videos.sort(key=lambda v: v.name)
        videos.sort(key=lambda v: v.modified or oldest, reverse=True)
        return videos

    async def download_timelapse(
        self, name: str, dest: str | os.PathLike[str], *, progress: Progress | None = None
    ) -> Path:
        """Download a timelapse (a bare name is looked up in ``/timelapse``) into ``dest``
        (a folder, or a file path). Returns the local path."""
        remote = name if "/" in name.replace("\\", "/") else _join(TIMELAPSE_DIR, name)
        return await self.download(remote, dest, progress=progress)


class _Connecting:
    """What :meth:`PrinterFiles.connect` returns: await it, or use it with ``async with``."""

    def __init__(self, files: PrinterFiles) -> None:
        self._files = files

    def __await__(self) -> Generator[Any, None, PrinterFiles]:
        return self._open().__await__()

    async def _open(self) -> PrinterFiles:
        try:
            await self._files.open()
        except BaseException:
            await self._files.close()
            raise
        return self._files

    async def __aenter__(self) -> PrinterFiles:
        return await self._open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._files.close()

