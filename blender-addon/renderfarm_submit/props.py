"""The add-on's settings: preferences (the plugin's path), the panel's properties per scene,
and the state of the scene's last render on the cluster (kept in the .blend, so a file opened
again still knows its render)."""
import bpy
from bpy.props import (BoolProperty, EnumProperty, IntProperty, PointerProperty,
                       StringProperty)

from . import kubeconfig

# Series the renderfarm node images are built for (node-image/blender/requirements-*.txt).
# The cluster's offer is the operator's configuration (the chart's blender.images), which
# users cannot read; a version it does not offer fails the render at once, naming the offered
# ones, and the panel shows that reason.
KNOWN_SERIES = ("4.5", "5.0")
DEFAULT_VERSION = "DEFAULT"
# The context item that passes no --context: the kubeconfig's current-context.
CURRENT = "CURRENT"

# Kept alive: Blender does not copy the strings a dynamic EnumProperty returns.
_items_cache = {}


def this_series():
    return "%d.%d" % bpy.app.version[:2]


def prefs(context=None):
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon else None


def _context_items(self, context):
    p = prefs(context)
    current, contexts = kubeconfig.read(p.kubeconfig if p else "")
    items = [(CURRENT, "Current context" + (f" ({current})" if current else ""),
              "The kubeconfig's current-context")]
    items += [(name, name, f"namespace {ns or 'default'}") for name, ns in contexts]
    _items_cache["contexts"] = items
    return items


def _version_items(self, context):
    versions = sorted(set(KNOWN_SERIES) | {this_series()})
    items = [(DEFAULT_VERSION, "Cluster default", "The operator's default Blender version")]
    items += [(v, f"Blender {v}" + (" (this Blender)" if v == this_series() else ""),
               f"Render with the cluster's Blender {v} image") for v in versions]
    _items_cache["versions"] = items
    return items


def _on_context(self, context):
    # The namespace follows the context unless the user typed one.
    _, contexts = kubeconfig.read(prefs(context).kubeconfig if prefs(context) else "")
    self.namespace = dict(contexts).get(self.kube_context, "")


def context_name(settings):
    """The --context to pass, "" for the current context."""
    return "" if settings.kube_context == CURRENT else settings.kube_context


class RenderfarmPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    plugin_path: StringProperty(
        name="Plugin path", subtype="FILE_PATH",
        description="The kubectl-render binary; empty: found on PATH")
    kubeconfig: StringProperty(
        name="Kubeconfig", subtype="FILE_PATH",
        description="Kubeconfig file; empty: $KUBECONFIG, then ~/.kube/config")

    def draw(self, context):
        self.layout.prop(self, "plugin_path")
        self.layout.prop(self, "kubeconfig")


class RenderfarmSettings(bpy.types.PropertyGroup):
    kube_context: EnumProperty(name="Context", items=_context_items, update=_on_context,
                               description="Kubeconfig context of the cluster")
    namespace: StringProperty(name="Namespace",
                              description="Namespace of the render; empty: the context's")
    claim: StringProperty(name="Claim", default="render-storage",
                          description="The PersistentVolumeClaim holding scenes and frames")
    job_name: StringProperty(name="Name",
                             description="RenderJob name; empty: the file name without .blend")
    use_scene_range: BoolProperty(name="Scene Range", default=True,
                                  description="Render the scene's frame range and step")
    frames: StringProperty(name="Frames", default="1-250",
                           description="START-END or START-END:STEP")
    batch: IntProperty(name="Frames per Batch", default=5, min=1, soft_max=100,
                       description="Frames per batch: one Kubernetes Job and one Blender start")
    # No hard maximum: the API server's limit is the one that counts, and it says so.
    parallelism: IntProperty(name="Parallelism", default=10, min=1, soft_max=100,
                             description="Batches rendering at once")
    blender_version: EnumProperty(name="Blender", items=_version_items,
                                  description="The Blender version the cluster renders with")
    device: EnumProperty(name="Device", default="CPU", items=[
        ("CPU", "CPU", ""), ("CUDA", "CUDA", "NVIDIA CUDA"), ("OPTIX", "OptiX", "NVIDIA RTX"),
        ("HIP", "HIP", "AMD HIP")])
    pack: BoolProperty(name="Pack Dependencies", default=False,
                       description="Collect textures and linked files with blender-asset-tracer")
    in_claim: StringProperty(
        name="Scene in Claim",
        description="Path of this scene inside the claim when it is there already (shared "
                    "storage); empty: upload the saved file")


class RenderfarmJob(bpy.types.PropertyGroup):
    name: StringProperty(name="RenderJob")
    kube_context: StringProperty()
    namespace: StringProperty()
    phase: StringProperty(name="Phase")
    frames_done: IntProperty(name="Frames Done")
    frames_total: IntProperty(name="Frames")
    failed: StringProperty(name="Failed Batches", description="One line per failed batch")
    last_frame: IntProperty(name="Last Frame")
    preview_video: StringProperty()
    message: StringProperty(name="Message")
    error: StringProperty(name="Error")
    thumbnail: StringProperty(subtype="FILE_PATH")


CLASSES = (RenderfarmPreferences, RenderfarmSettings, RenderfarmJob)


def register():
    for c in CLASSES:
        bpy.utils.register_class(c)
    bpy.types.Scene.renderfarm = PointerProperty(type=RenderfarmSettings)
    bpy.types.Scene.renderfarm_job = PointerProperty(type=RenderfarmJob)


def unregister():
    del bpy.types.Scene.renderfarm_job
    del bpy.types.Scene.renderfarm
    for c in reversed(CLASSES):
        bpy.utils.unregister_class(c)
