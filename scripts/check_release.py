"""Check that a release is consistent: ``python scripts/check_release.py [TAG]``.

The version lives in one place, ``fastloss/_version.py`` (setuptools reads it for the metadata,
the package for ``fastloss.__version__``). The scheme is PEP 440 ``MAJOR.MINOR.PATCH``: between
releases main carries the next release as a ``.devN`` version and CHANGELOG.md collects its changes
under ``## [Unreleased]``; a release sets the final version, renames that section to
``## [X.Y.Z] - YYYY-MM-DD`` and is tagged ``vX.Y.Z``.

Without TAG: the version is valid PEP 440 and CHANGELOG.md has the section it needs (Unreleased for
a development version, its own for a release). With TAG (the pushed git tag): also TAG is
``v`` + the version and the version is not a development one. Exits 1 with the reason
otherwise. Standard library only, so it runs before anything is installed.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parent.parent

# PEP 440 public versions (the subset fastloss uses: release, pre, post, dev; no epoch, no local)
_PEP440 = re.compile(
    r"^(?P<release>\d+(\.\d+)*)"
    r"(?P<pre>(a|b|rc)\d+)?"
    r"(?P<post>\.post\d+)?"
    r"(?P<dev>\.dev\d+)?$"
)


def read_version(root: Path = ROOT) -> str:
    """The ``__version__`` string assigned in fastloss/_version.py (read, not imported)."""
    tree = ast.parse((root / "fastloss" / "_version.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise SystemExit("fastloss/_version.py assigns no __version__")


def problems(version: str, changelog: str, tag: Optional[str] = None) -> List[str]:
    """Every inconsistency between the version, the changelog text and the tag."""
    out = []
    m = _PEP440.match(version)
    if not m:
        out.append(f"version {version!r} is not a PEP 440 version (MAJOR.MINOR.PATCH[.devN])")
        return out
    final = not m.group("dev")  # a release (rcN and postN included) or a development version
    if len(m.group("release").split(".")) != 3:
        out.append(f"version {version!r} is not MAJOR.MINOR.PATCH[...]")
    if final:
        head = re.compile(rf"^## \[{re.escape(version)}\] - \d{{4}}-\d{{2}}-\d{{2}}\s*$", re.M)
        if not head.search(changelog):
            out.append(f"CHANGELOG.md has no '## [{version}] - YYYY-MM-DD' section")
    elif not re.search(r"^## \[Unreleased\]\s*$", changelog, re.M):
        out.append("CHANGELOG.md has no '## [Unreleased]' section for the development version")
    if tag is not None:
        if tag != f"v{version}":
            out.append(f"tag {tag!r} does not match the version: expected 'v{version}'")
        if m.group("dev"):
            out.append(f"tag {tag!r} would release a development version {version!r}")
    return out


def main(argv: List[str]) -> int:
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print(__doc__)
        return 2
    tag = argv[0] if argv else None
    version = read_version()
    found = problems(version, (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), tag)
    for p in found:
        print(f"check_release: {p}", file=sys.stderr)
    if not found:
        print(f"check_release: version {version}" + (f", tag {tag}" if tag else "") + ": ok")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
