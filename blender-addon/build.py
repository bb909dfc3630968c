#!/usr/bin/env python3
"""Builds the extension's zip without Blender (stdlib zipfile only): the files of
renderfarm_submit/ at the zip's top level, where Blender looks for blender_manifest.toml.

    python3 blender-addon/build.py [OUT.zip]

Default output: target/blender-addon/renderfarm_submit-VERSION.zip of the repository. Prints
the zip's path.
"""
import os
import re
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "renderfarm_submit")


def version():
    with open(os.path.join(SOURCE, "blender_manifest.toml"), encoding="utf-8") as f:
        found = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.MULTILINE)
    if not found:
        sys.exit("build.py: no version in blender_manifest.toml")
    return found.group(1)


def files():
    """(path on disk, name in the zip), sorted, without caches."""
    out = []
    for root, dirs, names in os.walk(SOURCE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(root, name)
            out.append((path, os.path.relpath(path, SOURCE).replace(os.sep, "/")))
    return out


def build(out):
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for path, name in files():
            # A fixed time: the same sources make the same zip.
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as f:
                z.writestr(info, f.read())
    os.replace(tmp, out)
    return out


def main():
    if len(sys.argv) > 2:
        sys.exit(__doc__)
    default = os.path.join(HERE, "..", "target", "blender-addon",
                           f"renderfarm_submit-{version()}.zip")
    print(os.path.abspath(build(sys.argv[1] if len(sys.argv) == 2 else default)))


if __name__ == "__main__":
    main()
