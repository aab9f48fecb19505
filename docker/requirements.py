"""Print what installing nnx needs, one requirement a line, read from pyproject.toml alone.

    python docker/requirements.py pyproject.toml [EXTRA ...]

The images install these first, in a layer that only pyproject.toml decides, then the
package itself with ``--no-deps``: an edit of the source or of README.md reuses the
dependency layer. The build system's requirements are listed too, so that the package
installs without build isolation and a rebuild after a source edit downloads nothing.
An unknown extra is an error (pip would only warn and install without it). Needs Python
3.11 or newer (tomllib), as the images' Python is.
"""

from __future__ import annotations

import sys

if sys.version_info < (3, 11):
    raise SystemExit("docker/requirements.py needs Python 3.11 or newer (tomllib)")

import tomllib  # noqa: E402


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    with open(pyproject, "rb") as f:
        data = tomllib.load(f)
    project = data["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"{pyproject} has no extra {', '.join(unknown)} "
                         f"(it has {', '.join(optional) or 'none'})")
    out = list(data.get("build-system", {}).get("requires", []))
    out += project.get("dependencies", [])
    for extra in extras:
        out += optional[extra]
    return out


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__.split("\n\n")[1].strip())
    print("\n".join(requirements(sys.argv[1], sys.argv[2:])))
