"""The "Render on Kubernetes" panel (Properties > Output) and the status bar's line."""
import os

import bpy
import bpy.utils.previews

from . import jobs

_previews = None


def thumbnail_icon(path):
    """An icon id for the newest fetched frame, loaded once per file."""
    if _previews is None or not path or not os.path.isfile(path):
        return 0
    if path not in _previews:
        _previews.load(path, path, "IMAGE")
    return _previews[path].icon_id


def draw_settings(layout, scene, settings):
    col = layout.column(align=False)
    col.use_property_split = True
    col.use_property_decorate = False
    col.prop(settings, "kube_context")
    col.prop(settings, "namespace")
    col.prop(settings, "claim")
    col.prop(settings, "job_name")
    row = col.row(heading="Frames")
    row.prop(settings, "use_scene_range")
    if settings.use_scene_range:
        step = f":{scene.frame_step}" if scene.frame_step > 1 else ""
        col.label(text=f"{scene.frame_start}-{scene.frame_end}{step}", icon="PREVIEW_RANGE")
    else:
        col.prop(settings, "frames")
    col.prop(settings, "batch")
    col.prop(settings, "parallelism")
    col.prop(settings, "blender_version")
    col.prop(settings, "device")
    col.prop(settings, "pack")
    col.prop(settings, "in_claim")


def draw_progress(layout, job):
    box = layout.box()
    box.label(text=jobs.status_line(job), icon="RENDER_ANIMATION")
    if job.frames_total:
        factor = job.frames_done / job.frames_total
        text = f"{job.frames_done}/{job.frames_total} frames"
        if hasattr(box, "progress"):
            box.progress(factor=factor, type="BAR", text=text)
        else:
            box.label(text=text)
    if job.last_frame:
        box.label(text=f"Last frame: {job.last_frame}")
    for line in job.failed.splitlines():
        box.label(text=line, icon="ERROR")
    icon = thumbnail_icon(bpy.path.abspath(job.thumbnail))
    if icon:
        box.template_icon(icon_value=icon, scale=6.0)
    row = box.row(align=True)
    row.operator("renderfarm.fetch", icon="IMPORT")
    row.operator("renderfarm.open_preview", icon="FILE_MOVIE")
    row.operator("renderfarm.forget", text="", icon="X")


class RENDER_PT_renderfarm(bpy.types.Panel):
    bl_label = "Render on Kubernetes"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "output"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        scene = context.scene
        layout = self.layout
        draw_settings(layout, scene, scene.renderfarm)
        layout.operator("renderfarm.submit", icon="EXPORT")
        job = scene.renderfarm_job
        if job.error:
            layout.label(text=job.error, icon="CANCEL")
        elif job.message and not job.name:
            layout.label(text=job.message, icon="INFO")
        if job.name:
            draw_progress(layout, job)


def draw_status_bar(self, context):
    line = jobs.status_line(context.scene.renderfarm_job)
    if line:
        self.layout.label(text=line, icon="RENDER_ANIMATION")


def register():
    global _previews
    _previews = bpy.utils.previews.new()
    bpy.utils.register_class(RENDER_PT_renderfarm)
    bpy.types.STATUSBAR_HT_header.append(draw_status_bar)


def unregister():
    global _previews
    bpy.types.STATUSBAR_HT_header.remove(draw_status_bar)
    bpy.utils.unregister_class(RENDER_PT_renderfarm)
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
        _previews = None
