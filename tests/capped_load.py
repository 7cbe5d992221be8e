"""Loading model files in a child process whose address space is capped: the check that a crafted
file never exhausts memory (used by the fuzz suite and the pipeline tests)."""

import os
import subprocess
import sys

# The child loads the first (valid) file before the cap, so imports and first-use allocations
# are not counted; then 512 MiB more than it uses is all any other file may take.
CHILD = """
import resource, sys
from sklearn_mtr.persistence import load

load(sys.argv[1])
with open("/proc/self/status") as status:
    used = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (used + (1 << 29), resource.RLIM_INFINITY))
for path in sys.argv[1:]:
    try:
        load(path)
        print("loaded")
    except ValueError:
        print("ValueError")
    except BaseException as exc:
        print(type(exc).__name__, str(exc)[:200].replace("\\n", " "))
"""


def load_each_under_memory_cap(paths: list) -> list[str]:
    """The outcome of loading each file (``"loaded"``, ``"ValueError"`` or the exception) in a
    capped child process; the first file must be a valid one."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *map(str, paths)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.splitlines()
