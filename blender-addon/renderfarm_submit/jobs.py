"""What runs in the background and how its results reach the scene: the plugin commands on
their threads, and the timer (bpy.app.timers, on Blender's UI thread) that polls them, asks the
cluster for the render's progress every few seconds and redraws the panel and status bar."""
import os

import bpy

from . import plugin
from .props import CURRENT, prefs

POLL_SECONDS = 3.0
TERMINAL = ("Succeeded", "Failed")

# Scene name -> the status Task in flight for it.
_status_tasks = {}
_last_poll = {}


def base_argv(job_or_settings):
    """The plugin with the context and namespace of a render."""
    p = prefs()
    argv = [plugin.find(p.plugin_path if p else "")]
    if p and p.kubeconfig:
        argv += ["--kubeconfig", bpy.path.abspath(p.kubeconfig)]
    context = getattr(job_or_settings, "kube_context", "")
    if context and context != CURRENT:
        argv += ["--context", context]
    if job_or_settings.namespace:
        argv += ["-n", job_or_settings.namespace]
    return argv


def status_line(job):
    """One line for the status bar and the panel's header."""
    if not job.name:
        return ""
    line = f"{job.name}: {job.phase or 'submitting'}"
    if job.frames_total:
        line += f" {job.frames_done}/{job.frames_total} frames"
    failed = [f for f in job.failed.splitlines() if f]
    if failed:
        line += f", {len(failed)} failed batch" + ("es" if len(failed) > 1 else "")
    return line


def apply_status(job, task):
    """A finished status Task's result into the scene's job properties."""
    if task.error:
        job.error = task.error
        return
    try:
        p = plugin.progress(task.json())
    except ValueError as e:
        job.error = f"kubectl-render status printed no RenderJob JSON: {e}"
        return
    job.error = ""
    job.phase = p["phase"]
    job.frames_done = p["done"]
    job.frames_total = p["total"]
    job.failed = "\n".join(p["failed"])
    job.last_frame = p["last_frame"]
    job.preview_video = p["preview_video"]


def watching(scene):
    job = scene.renderfarm_job
    return bool(job.name) and job.phase not in TERMINAL


def poll_scene(scene, now):
    """Start a status Task when one is due; apply the one that finished. True when it
    changed the scene."""
    job = scene.renderfarm_job
    task = _status_tasks.get(scene.name)
    if task is not None and task.done:
        del _status_tasks[scene.name]
        apply_status(job, task)
        return True
    if task is None and watching(scene) and now - _last_poll.get(scene.name, 0) >= POLL_SECONDS:
        _last_poll[scene.name] = now
        try:
            argv = base_argv(job) + ["status", job.name, "-o", "json"]
        except plugin.PluginMissing as e:
            job.error = str(e)
            return True
        _status_tasks[scene.name] = plugin.Task(argv)
    return False


def tick():
    """The timer: every scene's render polled, the UI redrawn when something changed. Returns
    the seconds until the next call (bpy.app.timers' contract)."""
    import time
    now = time.monotonic()
    changed = False
    for scene in bpy.data.scenes:
        changed |= poll_scene(scene, now)
    if changed:
        redraw()
    return 0.5


def redraw():
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type in ("PROPERTIES", "STATUSBAR"):
                area.tag_redraw()


def output_dir(scene):
    """The scene's output folder (Output Properties > Output), absolute."""
    # The folder part: `//frames/shot_` is frames/, `/tmp/` is /tmp.
    return os.path.dirname(bpy.path.abspath(scene.render.filepath or "//"))


def register():
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=1.0, persistent=True)


def unregister():
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)
    _status_tasks.clear()
    _last_poll.clear()
