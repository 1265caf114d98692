"""keep_freed_memory: large blocks come from the heap (not a fresh mmap per allocation), and the
environment can keep glibc's defaults. Each case runs in its own process (mallopt is per process)."""

import os
import platform
import subprocess
import sys

import pytest

SCRIPT = """
import ctypes, torch
from structgs.utils.memory import keep_freed_memory
took = keep_freed_memory()
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
block = torch.ones(64 * 2**20 // 4)  # 64 MB
print(took, libc.mallinfo2().hblkhd >= 64 * 2**20)  # bytes in blocks malloc mmapped on its own
"""


def _run(env_value: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "STRUCTGS_KEEP_FREED_MEMORY"}
    if env_value is not None:
        env["STRUCTGS_KEEP_FREED_MEMORY"] = env_value
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_large_blocks_come_from_the_heap_unless_the_environment_says_no():
    assert _run(None) == ["True", "False"]  # the 64 MB block lives in the heap, reused once freed
    assert _run("0") == ["False", "True"]  # glibc's default: a fresh mmap, unmapped on free
