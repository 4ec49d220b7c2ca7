"""The RTSPS camera of X1/H2/P2S-class printers: live555's answers, Digest auth, interleaved RTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
import secrets
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from bambulab.sim import render

if TYPE_CHECKING:
    from bambulab.sim.service import PrinterHandle
from bambulab.sim.camera.h264 import h264_parameter_sets, pcm_idr_slice
from bambulab.sim.camera.server import MAX_REQUEST, USERNAME, Connection, TlsCameraServer, local_now

__all__ = ["RTSP_PATH", "RTSP_REALM", "RTSP_SERVER", "RtspService"]

log = logging.getLogger("bambulab.sim.camera")


RTSP_PATH = "/streaming/live/1"
RTSP_REALM = "LIVE555 Streaming Media"
RTSP_SERVER = "LIVE555 Streaming Media v2021.08.04"
_RTSP_PUBLIC = "OPTIONS, DESCRIBE, SETUP, TEARDOWN, PLAY, PAUSE, GET_PARAMETER, SET_PARAMETER"

# --------------------------------------------------------------------------- RTSP(S)


@dataclass
class _Request:
    method: str
    url: str
    version: str
    headers: dict[str, str]
    body: bytes = b""

    @property
    def cseq(self) -> str | None:
        return self.headers.get("cseq")


def _parse_params(text: str) -> dict[str, str]:
    """Parse ``k="v", k2=v2`` (an Authorization header's parameters)."""
    out: dict[str, str] = {}
    for m in re.finditer(r'([A-Za-z0-9_-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^,\s]*)', text):
        key = m.group(1).lower()
        out[key] = m.group(3) if m.group(3) is not None else m.group(2)
    return out


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _rtsp_date() -> str:
    # live555's format: "Date: Thu, Jan 02 2025 03:04:05 GMT"
    return datetime.now(UTC).strftime("%a, %b %d %Y %H:%M:%S GMT")


@dataclass(eq=False)
class _RtspSession:
    session_id: str
    channel: int = 0
    playing: bool = False
    seq: int = field(default_factory=lambda: secrets.randbelow(0x10000))
    timestamp: int = field(default_factory=lambda: secrets.randbelow(0x100000000))
    ssrc: int = field(default_factory=lambda: secrets.randbelow(0x100000000))
    streamer: asyncio.Task[None] | None = None


class RtspService(TlsCameraServer):
    """An RTSPS server like the X1/H2/P2S printers' live555, for ``/streaming/live/1``.

    It listens only while the printer's LAN-liveview switch is on: at ``start()`` it reads
    ``handle.dynamic.lan_liveview``, and a watcher (every ``watch_interval`` seconds, None to
    turn off) opens or closes the port when the switch changes. :meth:`set_enabled` forces it
    the same way (until the switch next changes); :meth:`refresh` re-reads the switch now.
    The port stays reserved while closed, so clients get "connection refused" and later find
    the stream on the same port.

    Media: ``SETUP`` accepts only interleaved RTP over TCP (``RTP/AVP/TCP``), as ffmpeg uses
    with ``-rtsp_transport tcp``; UDP gets ``461 Unsupported Transport``. With ``media=True``
    ``PLAY`` sends real H.264 (RFC 6184, FU-A fragmentation) at ``fps``: each picture is an IDR
    frame of I_PCM macroblocks (uncompressed samples; about 1.4 MB per 1280x720 frame, so keep
    ``fps`` modest) drawn by :mod:`bambulab.sim.render`. No codec library is needed. With
    ``media=False`` ``PLAY`` answers 200 and no media follows.
    """

    _kind = "rtsp camera"

    def __init__(
        self,
        handle: PrinterHandle,
        *,
        port: int = 0,
        host: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        tls: bool = True,
        fps: float = 2.0,
        width: int = 1280,
        height: int = 720,
        media: bool = True,
        watch_interval: float | None = 0.5,
        clock: Callable[[], datetime] = local_now,
    ) -> None:
        super().__init__(handle, port=port, host=host, ssl_context=ssl_context, tls=tls)
        if not fps > 0:
            raise ValueError("fps must be positive")
        self.fps = fps
        self.width = width
        self.height = height
        self.media = media
        self.watch_interval = watch_interval
        self._clock = clock
        self._wanted = False
        self._enabled = True
        self._seen_switch: bool | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._session_version = int(time.time())
        self._sps, self._pps = h264_parameter_sets(width, height)
        self._lock = asyncio.Lock()

    # -- listening, gated by the LAN-liveview switch

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def url(self) -> str:
        scheme = "rtsps" if self._tls else "rtsp"
        return f"{scheme}://{self._host}:{self._port}{RTSP_PATH}"

    async def start(self) -> None:
        self._wanted = True
        if self._port == 0:
            self._port = self._reserve_port()
        self._seen_switch = bool(self._handle.dynamic.lan_liveview)
        self._enabled = self._seen_switch
        await self._apply()
        if self.watch_interval is not None and (self._watcher is None or self._watcher.done()):
            self._watcher = self._spawn(self._watch(self.watch_interval), f"rtsp-watch-{self._handle.serial}")

    async def stop(self) -> None:
        self._wanted = False
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        async with self._lock:
            await self._close_listener()

    async def set_enabled(self, enabled: bool) -> None:
        """Open (True) or close (False) the port, as the printer's LAN-liveview switch does."""
        self._enabled = enabled
        await self._apply()

    async def refresh(self) -> None:
        """Follow ``handle.dynamic.lan_liveview`` if it changed since last seen."""
        switch = bool(self._handle.dynamic.lan_liveview)
        if switch != self._seen_switch:
            self._seen_switch = switch
            self._enabled = switch
        await self._apply()

    async def _apply(self) -> None:
        async with self._lock:
            want = self._wanted and self._enabled
            if want and self._server is None:
                await self._listen()
            elif not want and self._server is not None:
                await self._close_listener()

    def _reserve_port(self) -> int:
        """Pick a free port now, so the port is known even while the switch is off."""
        with socket.socket(socket.AF_INET6 if ":" in self._host else socket.AF_INET) as s:
            s.bind((self._host, 0))
            port: int = s.getsockname()[1]
        return port

    async def _watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.refresh()

    # -- protocol

    async def _read_request(self, conn: Connection) -> _Request | None:
        """Read one request, skipping interleaved ``$`` packets (RTCP from the client)."""
        while True:
            first = await conn.reader.readexactly(1)
            if first == b"$":
                _, length = struct.unpack("!BH", await conn.reader.readexactly(3))
                await conn.reader.readexactly(length)
                continue
            if first in (b"\r", b"\n"):
                continue
            break
        head = first + await conn.reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_REQUEST:
            return None
        lines = head.decode("utf-8", "replace").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("RTSP/"):
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        body = b""
        length = headers.get("content-length", "0")
        if length.isdigit() and 0 < int(length) <= MAX_REQUEST:
            body = await conn.reader.readexactly(int(length))
        return _Request(parts[0].upper(), parts[1], parts[2], headers, body)

    async def _respond(
        self,
        conn: Connection,
        req: _Request | None,
        status: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> None:
        lines = [f"RTSP/1.0 {status}"]
        if req is not None and req.cseq is not None:
            lines.append(f"CSeq: {req.cseq}")
        lines.append(f"Date: {_rtsp_date()}")
        lines.append(f"Server: {RTSP_SERVER}")
        for key, value in (headers or {}).items():
            lines.append(f"{key}: {value}")
        if body:
            lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        await self._wait_unstalled()
        async with conn.write_lock:
            conn.writer.write(data)
            await conn.writer.drain()

    def _authorized(self, conn: Connection, req: _Request) -> bool:
        code = self._handle.access_code
        split = urlsplit(req.url)
        if split.username is not None:
            user_ok = hmac.compare_digest(unquote(split.username).encode(), USERNAME)
            pass_ok = hmac.compare_digest(unquote(split.password or "").encode(), code.encode())
            if user_ok and pass_ok:
                return True
        auth = req.headers.get("authorization", "")
        scheme, _, rest = auth.partition(" ")
        if scheme.lower() != "digest":
            return False
        p = _parse_params(rest)
        username, realm, nonce = p.get("username", ""), p.get("realm", ""), p.get("nonce", "")
        uri, response = p.get("uri", ""), p.get("response", "")
        if username != "bblp" or realm != RTSP_REALM or not uri:
            return False
        if not hmac.compare_digest(nonce.encode(), conn.nonce.encode()):
            return False
        ha1 = _md5(f"{username}:{realm}:{code}")
        ha2 = _md5(f"{req.method}:{uri}")
        qop = p.get("qop")
        if qop:
            expected = _md5(f"{ha1}:{nonce}:{p.get('nc', '')}:{p.get('cnonce', '')}:{qop}:{ha2}")
        else:
            expected = _md5(f"{ha1}:{nonce}:{ha2}")
        return hmac.compare_digest(response.lower().encode(), expected.encode())

    async def _challenge(self, conn: Connection, req: _Request) -> None:
        log.info("rtsp %s: %s from %s not authorised", self._handle.serial, req.method, conn.peer)
        await self._respond(
            conn, req, "401 Unauthorized",
            {"WWW-Authenticate": f'Digest realm="{RTSP_REALM}", nonce="{conn.nonce}"'},
        )

    def _path_of(self, url: str) -> str:
        split = urlsplit(url)
        return split.path if split.scheme else url

    def _base_url(self, req: _Request) -> str:
        split = urlsplit(req.url)
        host = split.hostname or self._host
        if ":" in host:
            host = f"[{host}]"
        port = f":{split.port}" if split.port else ""
        return f"{split.scheme or 'rtsps'}://{host}{port}{RTSP_PATH}/"

    def _sdp(self, req: _Request) -> bytes:
        origin = f"IN IP6 {self._host}" if ":" in self._host else f"IN IP4 {self._host}"
        sprop = ",".join(base64.b64encode(n).decode() for n in (self._sps, self._pps))
        profile = self._sps[1:4].hex().upper()
        lines = [
            "v=0",
            f"o=- {self._session_version} 1 {origin}",
            "s=Bambu Streaming Media",
            "i=streaming/live/1",
            "t=0 0",
            f"a=tool:{RTSP_SERVER}",
            "a=type:broadcast",
            "a=control:*",
            "a=range:npt=0-",
            "a=x-qt-text-nam:Bambu Streaming Media",
            "a=x-qt-text-inf:streaming/live/1",
            "m=video 0 RTP/AVP 96",
            "c=IN IP4 0.0.0.0",
            "b=AS:12000",
            "a=rtpmap:96 H264/90000",
            f"a=fmtp:96 packetization-mode=1;profile-level-id={profile};sprop-parameter-sets={sprop}",
            f"a=framerate:{self.fps:g}",
            f"a=x-dimensions:{self.width},{self.height}",
            "a=control:track1",
        ]
        return ("\r\n".join(lines) + "\r\n").encode()

    async def _serve(self, conn: Connection) -> None:
        sessions: dict[str, _RtspSession] = {}
        try:
            while True:
                try:
                    req = await self._read_request(conn)
                except asyncio.LimitOverrunError:
                    req = None
                if req is None:
                    await self._respond(conn, None, "400 Bad Request")
                    await self._close_quietly(conn)
                    return
                await self._handle_request(conn, req, sessions)
        finally:
            for session in sessions.values():
                await self._stop_stream(session)

    async def _handle_request(self, conn: Connection, req: _Request, sessions: dict[str, _RtspSession]) -> None:
        method = req.method
        if method == "OPTIONS":
            await self._respond(conn, req, "200 OK", {"Public": _RTSP_PUBLIC})
            return
        if method not in ("DESCRIBE", "SETUP", "PLAY", "PAUSE", "TEARDOWN", "GET_PARAMETER", "SET_PARAMETER"):
            await self._respond(conn, req, "405 Method Not Allowed", {"Allow": _RTSP_PUBLIC})
            return
        path = self._path_of(req.url).rstrip("/")
        if method in ("DESCRIBE", "SETUP"):
            if not path.startswith(RTSP_PATH) or path not in (RTSP_PATH, f"{RTSP_PATH}/track1"):
                await self._respond(conn, req, "404 Stream Not Found")
                return
            if not self._authorized(conn, req):
                await self._challenge(conn, req)
                return
        if method == "DESCRIBE":
            await self._respond(
                conn, req, "200 OK",
                {"Content-Base": self._base_url(req), "Content-Type": "application/sdp"},
                self._sdp(req),
            )
            return
        if method == "SETUP":
            await self._setup(conn, req, sessions)
            return
        session_id = req.headers.get("session", "").split(";", 1)[0].strip()
        session = sessions.get(session_id)
        if session is None:
            if method in ("GET_PARAMETER", "SET_PARAMETER") and not session_id:
                await self._respond(conn, req, "200 OK")
            else:
                await self._respond(conn, req, "454 Session Not Found")
            return
        session_hdr = {"Session": f"{session.session_id};timeout=65"}
        if method == "PLAY":
            rtp_info = f"url={self._base_url(req)}track1;seq={session.seq};rtptime={session.timestamp}"
            await self._respond(
                conn, req, "200 OK", {"Range": "npt=0.000-", **session_hdr, "RTP-Info": rtp_info}
            )
            session.playing = True
            if self.media and (session.streamer is None or session.streamer.done()):
                session.streamer = self._spawn(self._stream(conn, session), f"rtsp-stream-{conn.peer}")
        elif method == "PAUSE":
            await self._stop_stream(session)
            await self._respond(conn, req, "200 OK", session_hdr)
        elif method == "TEARDOWN":
            await self._stop_stream(session)
            del sessions[session.session_id]
            await self._respond(conn, req, "200 OK")
        else:  # GET_PARAMETER / SET_PARAMETER: keep-alives
            await self._respond(conn, req, "200 OK", session_hdr)

    async def _setup(self, conn: Connection, req: _Request, sessions: dict[str, _RtspSession]) -> None:
        transport = req.headers.get("transport", "")
        if "RTP/AVP/TCP" not in transport.upper():
            await self._respond(conn, req, "461 Unsupported Transport")
            return
        m = re.search(r"interleaved=(\d+)(?:-(\d+))?", transport)
        channel = int(m.group(1)) if m else 0
        requested = req.headers.get("session", "").split(";", 1)[0].strip()
        session = sessions.get(requested)
        if session is None:
            session = _RtspSession(session_id=secrets.token_hex(4).upper())
            sessions[session.session_id] = session
        session.channel = channel
        await self._respond(
            conn, req, "200 OK",
            {
                "Transport": f"RTP/AVP/TCP;unicast;interleaved={channel}-{channel + 1}",
                "Session": f"{session.session_id};timeout=65",
            },
        )

    async def _stop_stream(self, session: _RtspSession) -> None:
        session.playing = False
        streamer, session.streamer = session.streamer, None
        if streamer is not None and streamer is not asyncio.current_task():
            streamer.cancel()
            await asyncio.gather(streamer, return_exceptions=True)

    def _encode_picture(self, idr_id: int) -> list[bytes]:
        """SPS, PPS and one IDR picture of the printer as it is now (runs in a worker thread)."""
        h = self._handle
        info = render.snapshot(
            name=h.name, serial=h.serial, model_name=h.model.name, dyn=h.dynamic, now=self._clock(),
            width=self.width, height=self.height,
        )
        picture = pcm_idr_slice(render.render_image(info), self.width, self.height, idr_id)
        return [self._sps, self._pps, picture]

    async def _stream(self, conn: Connection, session: _RtspSession) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        idr_id = 0
        start = loop.time()
        while session.playing:
            if not self.stalled:
                nals = await asyncio.to_thread(self._encode_picture, idr_id)
                idr_id += 1
                ts = (session.timestamp + int((loop.time() - start) * 90000)) & 0xFFFFFFFF
                packets = _rtp_packets(nals, session, ts)
                async with conn.write_lock:
                    for packet in packets:
                        conn.writer.write(b"$" + struct.pack("!BH", session.channel, len(packet)) + packet)
                    await conn.writer.drain()
            due += 1.0 / self.fps
            now = loop.time()
            if due < now:
                due = now
            await asyncio.sleep(due - now)


_RTP_MAX = 1400


def _rtp_packets(nals: list[bytes], session: _RtspSession, timestamp: int) -> list[bytes]:
    """RFC 6184 packets: single NAL units, or FU-A fragments for big ones; marker on the last."""
    payloads: list[bytes] = []
    for nal in nals:
        if len(nal) <= _RTP_MAX:
            payloads.append(nal)
            continue
        header = nal[0]
        fu_indicator = (header & 0xE0) | 28
        nal_type = header & 0x1F
        data = memoryview(nal)[1:]
        for offset in range(0, len(data), _RTP_MAX):
            chunk = data[offset : offset + _RTP_MAX]
            start = offset == 0
            end = offset + _RTP_MAX >= len(data)
            fu_header = (0x80 if start else 0) | (0x40 if end else 0) | nal_type
            payloads.append(bytes((fu_indicator, fu_header)) + chunk)
    packets: list[bytes] = []
    for i, payload in enumerate(payloads):
        marker = 0x80 if i == len(payloads) - 1 else 0
        packets.append(
            struct.pack("!BBHII", 0x80, marker | 96, session.seq, timestamp, session.ssrc) + payload
        )
        session.seq = (session.seq + 1) & 0xFFFF
    return packets
