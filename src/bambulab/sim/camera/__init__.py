"""The virtual printer's cameras.

Two services, one per camera kind (``PrinterModel.camera``):

:class:`JpegCameraService` (P1/A1 class, real port 6000)
    TLS with the printer's certificate. The client sends one 80-byte auth packet
    (``<IIII`` 0x40, 0x3000, 0, 0; user "bblp" and the access code, each NUL-padded to 32 bytes).
    A wrong user or code, a malformed packet, or no packet within ``auth_timeout`` closes the
    connection without sending anything. After that, for every frame: a 16-byte header
    (``<IIII`` JPEG length, 0, 1, 0) written as its own TLS record, then the JPEG bytes.
    Frames are drawn live from ``handle.dynamic`` by :mod:`bambulab.sim.render`; one frame is
    rendered per tick (in a worker thread) and shared by every viewer of the printer, and no
    frame is rendered while nobody watches.

:class:`RtspService` (X1/H2/P2S class, real port 322)
    An RTSPS server that answers like the printers' live555: ``OPTIONS`` without
    authentication; ``DESCRIBE`` and ``SETUP`` only with RTSP Digest authentication
    (realm "LIVE555 Streaming Media", one nonce per connection, user ``bblp``, password = access
    code) or with the credentials in the request URL's user-info; an SDP with one H.264 video
    track; ``SETUP`` with interleaved RTP over TCP; ``PLAY``, ``PAUSE``, ``TEARDOWN``,
    ``GET_PARAMETER``, ``SET_PARAMETER``. With ``media=True`` (the default) ``PLAY`` streams real
    H.264 over the interleaved channel; see :class:`RtspService` for how. It listens only while
    ``handle.dynamic.lan_liveview`` is on: with the switch off the port is closed, as on a real
    printer.

Both take part in fault injection (:class:`Service`): ``stalled`` keeps sockets open and sends
nothing, ``drop_clients()`` aborts every connection, ``stop()``/``start()`` reuse the port.
Access codes are never logged.

Modules: :mod:`~bambulab.sim.camera.server` (the shared TLS server),
:mod:`~bambulab.sim.camera.jpeg` (port 6000), :mod:`~bambulab.sim.camera.h264` (H.264 synthesis) and
:mod:`~bambulab.sim.camera.rtsp` (RTSPS).
"""

from __future__ import annotations

from bambulab.sim.camera.h264 import h264_parameter_sets
from bambulab.sim.camera.jpeg import AUTH_PACKET_SIZE, FRAME_HEADER, JpegCameraService
from bambulab.sim.camera.rtsp import RTSP_PATH, RTSP_REALM, RTSP_SERVER, RtspService

__all__ = [
    "AUTH_PACKET_SIZE",
    "FRAME_HEADER",
    "RTSP_PATH",
    "RTSP_REALM",
    "RTSP_SERVER",
    "JpegCameraService",
    "RtspService",
    "h264_parameter_sets",
]
