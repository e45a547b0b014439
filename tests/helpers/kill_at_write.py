"""Run train.py and SIGKILL the process at one checkpoint write point (for tests).

    python tests/helpers/kill_at_write.py <point> [train.py overrides ...]

Points count the renames that put .ckpt files in place (1: best of epoch 0, 2: last.ckpt of
epoch 0, 3: best of epoch 1, 4: last.ckpt of epoch 1, ...): `before-N` dies with the N-th
file written as a .partial but not renamed; `after-N` dies right after the N-th rename.
"""

import os
import runpy
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
point = sys.argv.pop(1)
when, number = point.split("-")
real_replace = os.replace
renames = 0


def replace_then_maybe_die(src, dst, *args, **kwargs):
    global renames
    if not str(dst).endswith(".ckpt"):
        return real_replace(src, dst, *args, **kwargs)
    renames += 1
    if when == "before" and renames == int(number):
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst, *args, **kwargs)
    if when == "after" and renames == int(number):
        os.kill(os.getpid(), signal.SIGKILL)


os.replace = replace_then_maybe_die
sys.argv[0] = str(REPO / "train.py")
runpy.run_path(str(REPO / "train.py"), run_name="__main__")
