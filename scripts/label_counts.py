#!/usr/bin/env python3
"""Small labelling aid for the evaluation set: renders images you label by eye.

    # contact sheets of every 40th frame with a pixel grid and the frame number: count people
    python scripts/label_counts.py sheets /work/shared/data/vtest.avi --every 40 --out /tmp/sheets
    # a time-space ("slit") image of a line: each person crossing it is a streak; comparing the
    # slits on the two sides shows the direction. Then check doubtful ones frame by frame.
    python scripts/label_counts.py slit /work/shared/data/vtest.avi --line 0.5,0.3,0.5,0.75 --out /tmp/slit.png
    python scripts/label_counts.py frames /work/shared/data/vtest.avi 120 125 130 --line 0.5,0.3,0.5,0.75 --out /tmp/f

The labels themselves live in eval/vtest_labels.yaml (edited by hand). Nothing here is used at
run time; rendered images go to a scratch folder, never into the repository.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import cv2
import numpy as np


def read_frames(path: str, wanted: Optional[Iterable[int]] = None) -> Dict[int, np.ndarray]:
    """Read sequentially (seeking is not frame-exact in every codec) and keep the wanted indices."""
    keep = None if wanted is None else set(wanted)
    cap = cv2.VideoCapture(path)
    out: Dict[int, np.ndarray] = {}
    i = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        if keep is None or i in keep:
            out[i] = img
        i += 1
    cap.release()
    return out


def parse_line(text: str, size: Tuple[int, int]) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    x1, y1, x2, y2 = (float(v) for v in text.split(","))
    w, h = size
    return (round(x1 * w), round(y1 * h)), (round(x2 * w), round(y2 * h))


def overlay(img: np.ndarray, index: int, line: Optional[str] = None, grid: int = 64) -> np.ndarray:
    g = img.copy()
    h, w = g.shape[:2]
    for x in range(0, w, grid):
        cv2.line(g, (x, 0), (x, h - 1), (0, 255, 255), 1)
    for y in range(0, h, grid):
        cv2.line(g, (0, y), (w - 1, y), (0, 255, 255), 1)
    if line:
        a, b = parse_line(line, (w, h))
        cv2.line(g, a, b, (0, 0, 255), 2)
    cv2.putText(g, f"#{index}", (8, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 0, 255), 2)
    return g


def sheets(args: argparse.Namespace) -> None:
    frames = read_frames(args.video)
    idx = list(range(0, len(frames), args.every))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for s in range(0, len(idx), 4):
        tiles = [overlay(frames[i], i, args.line) for i in idx[s : s + 4]]
        while len(tiles) < 4:
            tiles.append(np.zeros_like(tiles[0]))
        sheet = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])
        cv2.imwrite(str(out / f"sheet_{s // 4:02d}.png"), sheet)
    print(f"{len(idx)} frames on {(len(idx) + 3) // 4} sheets in {out}")


def slit(args: argparse.Namespace) -> None:
    frames = read_frames(args.video)
    h, w = frames[0].shape[:2]
    a, b = (np.array(p, float) for p in parse_line(args.line, (w, h)))
    d = (b - a) / np.linalg.norm(b - a)
    normal = np.array([-d[1], d[0]])  # the "in" side (right-hand side of start -> end on screen)
    n = int(np.linalg.norm(b - a))
    rows: List[np.ndarray] = []
    for offset in (-args.offset_px, 0, args.offset_px):
        pts = a + np.outer(np.arange(n), d) + offset * normal
        xs, ys = pts[:, 0].astype(np.float32), pts[:, 1].astype(np.float32)
        cols = [cv2.remap(frames[i], xs[None, :], ys[None, :], cv2.INTER_LINEAR)[0] for i in sorted(frames)]
        strip = np.stack(cols, axis=1)  # (n along the line, time, 3)
        for t in range(0, strip.shape[1], 50):
            strip[:, t] = (0, 255, 255)
            cv2.putText(strip, str(t), (t + 2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 255, 255), 1)
        rows.append(strip)
        rows.append(np.full((6, strip.shape[1], 3), 255, np.uint8))
    img = np.vstack(rows)
    cv2.imwrite(args.out, img)
    print(f"slits at -{args.offset_px}/0/+{args.offset_px} px (out side / line / in side), time runs right: {args.out}")


def frames_cmd(args: argparse.Namespace) -> None:
    frames = read_frames(args.video, args.indices)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, img in frames.items():
        cv2.imwrite(str(out / f"frame_{i:04d}.png"), overlay(img, i, args.line))
    print(f"{len(frames)} frames in {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sheets")
    s.add_argument("video")
    s.add_argument("--every", type=int, default=40)
    s.add_argument("--line")
    s.add_argument("--out", default="/tmp/label_sheets")
    s.set_defaults(func=sheets)
    s = sub.add_parser("slit")
    s.add_argument("video")
    s.add_argument("--line", required=True, help="x1,y1,x2,y2 as fractions of the frame")
    s.add_argument("--offset-px", type=int, default=25)
    s.add_argument("--out", default="/tmp/slit.png")
    s.set_defaults(func=slit)
    s = sub.add_parser("frames")
    s.add_argument("video")
    s.add_argument("indices", type=int, nargs="+")
    s.add_argument("--line")
    s.add_argument("--out", default="/tmp/label_frames")
    s.set_defaults(func=frames_cmd)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
