"""``rgbir`` run as a user runs it, in a fresh interpreter, and the check that an error is one line (shared by the
command-line tests)."""

import subprocess
import sys


def rgbir(*args, cwd=None, preexec_fn=None, env=None, timeout=300):
    """``rgbir ARGS`` in a fresh interpreter; the result, whatever its exit code."""
    return subprocess.run([sys.executable, "-m", "rgbir", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, preexec_fn=preexec_fn, env=env, check=False)


def one_line_error(result, *fragments) -> str:
    """Assert exit code 2 and a single 'rgbir CMD: error: ...' line on stderr holding ``fragments``."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and ": error: " in lines[0] and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
