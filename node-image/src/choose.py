# Run by render-node inside Blender (`--python-expr`) right after the .blend file is loaded and
# before Blender's output, format and engine arguments, which apply to the scene this makes
# current. render-node fills in CHOICE (a JSON object) before passing it on:
#
#   scene        the scene to render instead of the file's active one (null: the active one)
#   camera       the camera object to render through (null: the scene's)
#   view_layers  the view layers to render ([]: those the file marks for rendering)
#   persistent   keep the scene's data (BVH, textures) between the frames of this run
#
# A name the file does not have is bad input (exit 64) naming those it has: a render of
# another scene, camera or layer than asked for would be wrong frames, not a failure.
import json
import sys

import bpy

CHOICE = json.loads(@CHOICE@)


def say(key, text):
    print("RENDER_NODE:" + key, text, flush=True)


def refuse(text):
    say("BAD_INPUT", text)
    sys.exit(64)


def names(items):
    return ", ".join(repr(i.name) for i in items) or "none"


if CHOICE["scene"] is not None:
    wanted = bpy.data.scenes.get(CHOICE["scene"])
    if wanted is None or wanted.library is not None:
        refuse("scene %r is not in the file; its scenes: %s"
               % (CHOICE["scene"], names(s for s in bpy.data.scenes if s.library is None)))
    window = bpy.context.window or next(iter(bpy.context.window_manager.windows), None)
    if window is not None:
        window.scene = wanted
    if bpy.context.scene != wanted:
        refuse("this Blender cannot make scene %r current" % CHOICE["scene"])
scene = bpy.context.scene

if CHOICE["camera"] is not None:
    cameras = [o for o in scene.objects if o.type == "CAMERA"]
    camera = next((o for o in cameras if o.name == CHOICE["camera"]), None)
    if camera is None:
        refuse("camera %r is not in scene %r; its cameras: %s"
               % (CHOICE["camera"], scene.name, names(cameras)))
    scene.camera = camera
    # Timeline markers bound to cameras would switch to theirs at their frames.
    for marker in scene.timeline_markers:
        marker.camera = None

if CHOICE["view_layers"]:
    unknown = [n for n in CHOICE["view_layers"] if n not in scene.view_layers]
    if unknown:
        refuse("view layers %s are not in scene %r; its view layers: %s"
               % (", ".join(repr(n) for n in unknown), scene.name, names(scene.view_layers)))
    for layer in scene.view_layers:
        layer.use = layer.name in CHOICE["view_layers"]
elif not any(layer.use for layer in scene.view_layers):
    refuse("scene %r marks none of its view layers for rendering (%s): name them in "
           "spec.viewLayers" % (scene.name, names(scene.view_layers)))

scene.render.use_persistent_data = bool(CHOICE["persistent"])
say("CHOSEN", json.dumps({
    "scene": scene.name,
    "camera": scene.camera.name if scene.camera else None,
    "view_layers": [layer.name for layer in scene.view_layers if layer.use],
    "persistent": scene.render.use_persistent_data,
}))
