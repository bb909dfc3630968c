"""Running the `kubectl render` plugin: its path, its command lines, and a Task that runs one
command on a background thread so that Blender's UI thread never waits for the cluster."""
import json
import os
import shutil
import subprocess
import threading

# The blender-asset-tracer version `kubectl render --pack` is tested with (BAT_VERSION in
# kubectl-render/src/pack.rs).
BAT_VERSION = "1.23"

# Engines the RenderJob knows; 4.2 to 4.5 call EEVEE BLENDER_EEVEE_NEXT.
ENGINES = {
    "CYCLES": "CYCLES",
    "BLENDER_EEVEE": "BLENDER_EEVEE",
    "BLENDER_EEVEE_NEXT": "BLENDER_EEVEE",
    "BLENDER_WORKBENCH": "BLENDER_WORKBENCH",
}
# Image formats the RenderJob knows; movie formats render as PNG frames (the plugin's default).
FORMATS = {"PNG", "JPEG", "OPEN_EXR", "OPEN_EXR_MULTILAYER", "TIFF", "BMP", "TARGA", "WEBP"}


class PluginMissing(Exception):
    """The plugin binary is neither at the configured path nor on PATH."""


def find(configured=""):
    """The plugin's path: the preference when set, else `kubectl-render` on PATH."""
    if configured:
        p = os.path.expanduser(configured)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
        raise PluginMissing(
            f"kubectl-render not found at {p} (Preferences > Add-ons > Render on Kubernetes: "
            "Plugin path)")
    found = shutil.which("kubectl-render")
    if not found:
        raise PluginMissing(
            "kubectl-render not found on PATH: install the kubectl render plugin "
            "(kubectl krew install render) or set its path in the add-on's preferences")
    return found


def bat_missing():
    """The error `--pack` meets without blender-asset-tracer, said before any cluster call."""
    if shutil.which("bat"):
        return None
    return ("Pack dependencies needs blender-asset-tracer's `bat` command, which is not on "
            f"PATH: pip install blender-asset-tracer=={BAT_VERSION}")


def error_line(stdout, stderr, code):
    """The plugin's own error line (`error: ...`), verbatim without its prefix."""
    for text in (stderr, stdout):
        for line in reversed(text.splitlines()):
            if line.startswith("error: "):
                return line[len("error: "):]
    tail = (stderr.strip() or stdout.strip()).splitlines()
    return tail[-1] if tail else f"kubectl-render exited {code}"


class Task:
    """One plugin command on a background thread; `done`, then `code`, `stdout`, `stderr`."""

    def __init__(self, argv, env=None):
        self.argv = argv
        self.env = env
        self.done = False
        self.code = None
        self.stdout = ""
        self.stderr = ""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            p = subprocess.run(self.argv, capture_output=True, text=True, env=self.env,
                               stdin=subprocess.DEVNULL, check=False)
            self.code, self.stdout, self.stderr = p.returncode, p.stdout, p.stderr
        except OSError as e:
            self.code, self.stderr = 127, f"error: running {self.argv[0]}: {e}"
        self.done = True

    def wait(self, timeout=None):
        self._thread.join(timeout)
        return self.done

    @property
    def error(self):
        """The error to report, or None when the command succeeded."""
        if self.code == 0:
            return None
        return error_line(self.stdout, self.stderr, self.code)

    def json(self):
        return json.loads(self.stdout)


def progress(rj):
    """What the panel shows of a RenderJob (the JSON of `kubectl render status NAME -o json`)."""
    spec = rj.get("spec") or {}
    status = rj.get("status") or {}
    frames = spec.get("frames") or {}
    step = max(1, frames.get("step") or 1)
    planned = 0
    if "start" in frames and "end" in frames:
        planned = (frames["end"] - frames["start"]) // step + 1
    counts = status.get("frames") or {}
    last = status.get("lastFrame") or {}
    preview = status.get("preview") or {}
    return {
        "phase": status.get("phase") or "Pending",
        "done": counts.get("rendered") or 0,
        "total": counts.get("total") or planned,
        "failed": [f"batch {b.get('index')} (frames {b.get('frames', '?')}): "
                   f"{b.get('reason', '')} {b.get('message', '')}".rstrip()
                   for b in status.get("failedBatches") or []],
        "last_frame": last.get("frame", 0) if last else 0,
        "preview_video": preview.get("video") or "",
        "preview_state": preview.get("state") or "",
    }
