"""An IP camera on loopback for the tests: GStreamer's RTSP server (Debian's gir1.2-gst-rtsp-server-1.0)
serving JPEG frames made from the sample clip (ffmpeg) as MJPEG over RTP, in a loop, live at --fps.

Run with Debian's /usr/bin/python3 (python3-gi is not in the venv):

    /usr/bin/python3 tests/rtsp_camera.py --port 8554 --frames DIR [--user U --password P]

It prints ``ready rtsp://127.0.0.1:PORT/cam`` on stdout once it listens. SIGUSR1 stalls the stream
(the RTSP session and its TCP connection stay open, but no frame is sent), SIGUSR2 resumes it:
what a camera whose encoder hangs looks like to the device.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import List

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)


class LiveJpegFactory(GstRtspServer.RTSPMediaFactory):
    """One shared live pipeline fed by ``push``: an appsrc that timestamps each JPEG as it arrives,
    so the stream runs at the pace frames are pushed, like a camera's encoder."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: List[Gst.Element] = []
        self.set_shared(True)
        self.set_launch(
            "( appsrc name=camera is-live=true do-timestamp=true format=time caps=image/jpeg,framerate=0/1 "
            "! jpegparse ! rtpjpegpay name=pay0 pt=26 )"
        )
        self.connect("media-configure", self._configured)

    def _configured(self, _factory: object, media: GstRtspServer.RTSPMedia) -> None:
        self.sources.append(media.get_element().get_by_name("camera"))

    def push(self, jpeg: bytes) -> None:
        for source in self.sources:
            source.emit("push-buffer", Gst.Buffer.new_wrapped(jpeg))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--frames", required=True, help="folder of JPEG files, sent in name order, in a loop")
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()
    jpegs = [p.read_bytes() for p in sorted(Path(args.frames).glob("*.jpg"))]

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = LiveJpegFactory()
    if args.user:
        # Basic authentication, as IP cameras ask for it: a wrong or missing password is refused.
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        permissions.add_permission_for_role("viewer", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1

    stalled = [False]
    position = [0]

    def tick() -> bool:
        if not stalled[0]:
            factory.push(jpegs[position[0] % len(jpegs)])
            position[0] += 1
        return True

    def stall(on: bool) -> bool:
        stalled[0] = on
        return True

    loop = GLib.MainLoop()
    GLib.timeout_add(max(1, round(1000 / args.fps)), tick)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR1, lambda: stall(True))
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR2, lambda: stall(False))
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, lambda: loop.quit() or False)
    print(f"ready rtsp://127.0.0.1:{args.port}/cam", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
