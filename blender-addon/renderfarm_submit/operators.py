"""Submit, Fetch frames, Open preview: each runs one `kubectl render` command on a background
thread. With a window the operator is modal on a timer (Blender stays responsive and the result
lands in the report area); in background mode (`blender -b`, scripts, the tests) there is no
event loop, so it waits for the command and reports the same way."""
import os
import re

import bpy

from . import jobs, plugin
from .props import context_name


class UserError(Exception):
    """A problem found before any command ran, reported as it is."""


class PluginOperator:
    """Runs the Task `start()` returns; `finished()` handles its success."""

    task = None
    _timer = None

    def start(self, context):
        raise NotImplementedError

    def finished(self, context):
        raise NotImplementedError

    def execute(self, context):
        try:
            self.task = self.start(context)
        except (UserError, plugin.PluginMissing) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        if bpy.app.background or context.window is None:
            self.task.wait()
            return self.conclude(context)
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.2, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER" or not self.task.done:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return self.conclude(context)

    def conclude(self, context):
        job = context.scene.renderfarm_job
        error = self.task.error
        if error:
            job.error = error
            self.report({"ERROR"}, error)
            jobs.redraw()
            return {"CANCELLED"}
        job.error = ""
        message = self.finished(context)
        job.message = message
        self.report({"INFO"}, message)
        jobs.redraw()
        return {"FINISHED"}


def frames_arg(scene, settings):
    if not settings.use_scene_range:
        return settings.frames.strip()
    frames = f"{scene.frame_start}-{scene.frame_end}"
    return frames + (f":{scene.frame_step}" if scene.frame_step > 1 else "")


def submit_argv(scene, settings):
    """The `kubectl render submit` command line for the scene, its settings spelled out (the
    scene in memory is what the artist sees; the plugin would read the same from the file)."""
    argv = jobs.base_argv(settings) + ["submit"]
    if settings.in_claim:
        argv += ["--in-claim", settings.in_claim]
    else:
        argv.append(bpy.data.filepath)
    argv += ["--frames", frames_arg(scene, settings), "--batch", str(settings.batch),
             "--parallelism", str(settings.parallelism), "--claim", settings.claim,
             "--device", settings.device]
    engine = plugin.ENGINES.get(scene.render.engine)
    if engine:
        argv += ["--engine", engine]
    fmt = scene.render.image_settings.file_format
    if fmt in plugin.FORMATS:
        argv += ["--format", fmt]
    if settings.blender_version != "DEFAULT":
        argv += ["--blender", settings.blender_version]
    if settings.job_name:
        argv += ["--name", settings.job_name]
    if settings.pack and not settings.in_claim:
        argv.append("--pack")
    return argv


class RENDERFARM_OT_submit(PluginOperator, bpy.types.Operator):
    """Save the file if it has unsaved changes, upload it and start rendering it on the cluster"""
    bl_idname = "renderfarm.submit"
    bl_label = "Submit to Cluster"

    def invoke(self, context, event):
        if bpy.data.is_dirty and bpy.data.filepath:
            return context.window_manager.invoke_confirm(
                self, event, title="Save and Submit",
                message="The file has unsaved changes: save it before submitting?",
                confirm_text="Save and Submit")
        return self.execute(context)

    def start(self, context):
        scene, settings = context.scene, context.scene.renderfarm
        argv = submit_argv(scene, settings)
        if not settings.in_claim and not bpy.data.filepath:
            raise UserError("The file is not saved: save it (File > Save As) first, the "
                            "cluster renders the saved .blend")
        if settings.pack and not settings.in_claim:
            missing = plugin.bat_missing()
            if missing:
                raise UserError(missing)
        if bpy.data.is_dirty and bpy.data.filepath:
            bpy.ops.wm.save_mainfile()
            argv = submit_argv(scene, settings)
        job = scene.renderfarm_job
        job.name, job.phase, job.error, job.message = "", "", "", "Submitting..."
        job.frames_done = job.frames_total = job.last_frame = 0
        job.failed = job.preview_video = job.thumbnail = ""
        return plugin.Task(argv)

    def finished(self, context):
        job, settings = context.scene.renderfarm_job, context.scene.renderfarm
        found = re.search(r"renderjob\.renderfarm\.io/(\S+) created: (.*)", self.task.stdout)
        job.name = found.group(1) if found else settings.job_name
        job.kube_context, job.namespace = context_name(settings), settings.namespace
        job.phase = "Pending"
        return f"RenderJob {job.name} created: " + (found.group(2) if found else "")


def newest_frame(folder):
    """The frame file with the highest number in a folder, or ""."""
    try:
        names = [n for n in os.listdir(folder) if re.match(r"frame_\d+\.(png|jpg|exr|tif|bmp|tga|webp)$", n)]
    except OSError:
        return ""
    return os.path.join(folder, max(names)) if names else ""


class RENDERFARM_OT_fetch(PluginOperator, bpy.types.Operator):
    """Download the rendered frames that are not here yet into the scene's output folder"""
    bl_idname = "renderfarm.fetch"
    bl_label = "Fetch Frames"

    @classmethod
    def poll(cls, context):
        return bool(context.scene.renderfarm_job.name)

    def start(self, context):
        job = context.scene.renderfarm_job
        self.folder = jobs.output_dir(context.scene)
        return plugin.Task(jobs.base_argv(job) + ["fetch", job.name, self.folder])

    def finished(self, context):
        context.scene.renderfarm_job.thumbnail = newest_frame(self.folder)
        lines = self.task.stdout.strip().splitlines()
        return lines[-1] if lines else f"fetched into {self.folder}"


class RENDERFARM_OT_open_preview(PluginOperator, bpy.types.Operator):
    """Fetch the render's preview video and open it with this computer's video player"""
    bl_idname = "renderfarm.open_preview"
    bl_label = "Open Preview"

    @classmethod
    def poll(cls, context):
        return bool(context.scene.renderfarm_job.name)

    def start(self, context):
        job = context.scene.renderfarm_job
        self.folder = os.path.join(jobs.output_dir(context.scene), "preview")
        return plugin.Task(jobs.base_argv(job) + ["fetch", job.name, "--preview", self.folder])

    def finished(self, context):
        job = context.scene.renderfarm_job
        video = os.path.join(self.folder, os.path.basename(job.preview_video or "preview.mp4"))
        if not bpy.app.background and os.path.isfile(video):
            bpy.ops.wm.path_open(filepath=video)
        return f"preview: {video}"


class RENDERFARM_OT_forget(bpy.types.Operator):
    """Stop following this render in the panel (the RenderJob and its frames stay)"""
    bl_idname = "renderfarm.forget"
    bl_label = "Clear"

    def execute(self, context):
        job = context.scene.renderfarm_job
        job.name, job.phase, job.error, job.message, job.failed = "", "", "", "", ""
        job.frames_done = job.frames_total = job.last_frame = 0
        jobs.redraw()
        return {"FINISHED"}


CLASSES = (RENDERFARM_OT_submit, RENDERFARM_OT_fetch, RENDERFARM_OT_open_preview,
           RENDERFARM_OT_forget)


def register():
    for c in CLASSES:
        bpy.utils.register_class(c)


def unregister():
    for c in reversed(CLASSES):
        bpy.utils.unregister_class(c)
