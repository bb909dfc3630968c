# Run by render-node inside Blender (`--python-expr`), after the .blend file is loaded and before
# any frame renders. It reports on lines starting with `RENDER_NODE:` what render-node needs, and
# refuses (exit 64, bad input) what a render cannot do right. render-node fills in WANT,
# FALLBACK and MISSING below before passing it on.
#
# 1. The scene's frame range and Blender's version.
# 2. Python from the file: the file was opened with auto-run off, so registered text blocks did
#    not run and Python drivers were not evaluated; say so. Freestyle's Python style modules
#    would be skipped too (lines missing from every frame): refuse the file instead.
# 3. External files (images, linked libraries, movie clips, fonts, volumes, Alembic/USD caches)
#    that are not readable, resolved as Blender resolves them (`//` is the folder of the .blend
#    file, or of the library an ID comes from): with MISSING "fail", refuse the file listing
#    them; with "warn", render without them.
# 4. The Cycles device. The command line ends with `-- --cycles-device <device>`, which makes
#    Cycles render on every device of that type whatever the scene or the preferences say (a
#    scene saved with GPU rendering and no such flag would silently render on the CPU). This
#    checks that such a device is there: when it is not, it either fails (exit 64) or, when a CPU
#    fallback is allowed, switches the override to the CPU and says so.
import json
import os
import sys

import bpy

WANT = "@DEVICE@"
FALLBACK = @FALLBACK@
MISSING = "@MISSING@"
# How many missing files are listed (all are counted).
LIST_AT_MOST = 100
scene = bpy.context.scene


def say(key, text):
    print("RENDER_NODE:" + key, text, flush=True)


def refuse(text):
    say("BAD_INPUT", text)
    sys.exit(64)


say("SCENE", "%d %d %s" % (scene.frame_start, scene.frame_end, "%d.%d.%d" % bpy.app.version))
# The size every frame must have (render-node checks each saved frame); Blender's own integer
# arithmetic. A render cropped to its border has the border's size: not said, not checked.
if not (scene.render.use_border and scene.render.use_crop_to_border):
    say("RESOLUTION", "%d %d" % (scene.render.resolution_x * scene.render.resolution_percentage // 100,
                                 scene.render.resolution_y * scene.render.resolution_percentage // 100))

# --- Python in the file
if bpy.app.autoexec_fail:
    say("WARNING", "the scene's Python did not run (render-node runs no code from .blend files): %s"
        % (bpy.app.autoexec_fail_message or "registered text blocks or Python drivers"))
for s in bpy.data.scenes:
    if not s.render.use_freestyle:
        continue
    for layer in s.view_layers:
        settings = layer.freestyle_settings
        if not layer.use_freestyle or settings.mode != "SCRIPT":
            continue
        modules = [m.script.name for m in settings.modules if m.use and m.script]
        if modules:
            refuse("scene '%s', view layer '%s' draws Freestyle lines with Python style modules (%s); "
                   "render-node runs no code from .blend files: use Freestyle's Parameter Editor mode"
                   % (s.name, layer.name, ", ".join(modules)))


# --- External files
def absolute(path, library):
    """`path` as Blender resolves it for an ID of `library` (None: of this file)."""
    return os.path.normpath(bpy.path.abspath(path, library=library))


def readable(path):
    return os.path.isfile(path) and os.access(path, os.R_OK)


def external():
    """(kind, data-block, absolute path) of every external file the scene's data uses."""
    for lib in bpy.data.libraries:
        if not lib.packed_file:
            # A library linked by a library: `//` is the folder of the one that links it.
            yield "library", lib, absolute(lib.filepath, lib.parent)
    for img in bpy.data.images:
        if img.users == 0 or img.packed_file or img.source not in {"FILE", "SEQUENCE", "MOVIE", "TILED"}:
            continue
        path = absolute(img.filepath_raw, img.library)
        if img.source == "TILED" and "<UDIM>" in path:
            for tile in img.tiles:
                yield "image", img, path.replace("<UDIM>", str(tile.number))
        else:
            yield "image", img, path
    for clip in bpy.data.movieclips:
        if clip.users:
            yield "movie clip", clip, absolute(clip.filepath, clip.library)
    for font in bpy.data.fonts:
        if font.users and not font.packed_file and font.filepath != "<builtin>":
            yield "font", font, absolute(font.filepath, font.library)
    for volume in bpy.data.volumes:
        if volume.users and not volume.packed_file:
            yield "volume", volume, absolute(volume.filepath, volume.library)
    for cache in bpy.data.cache_files:
        if cache.users:
            yield "cache file", cache, absolute(cache.filepath, cache.library)


missing = []
seen = set()
for kind, owner, path in external():
    if path not in seen and not readable(path):
        seen.add(path)
        missing.append({"kind": kind, "name": owner.name, "path": path})
if missing:
    say("MISSING_FILES", json.dumps({"action": MISSING, "count": len(missing), "files": missing[:LIST_AT_MOST]}))
    listed = ", ".join("%s %s" % (m["kind"], m["path"]) for m in missing[:5])
    more = " and %d more" % (len(missing) - 5) if len(missing) > 5 else ""
    if MISSING == "fail":
        refuse("%d external files the scene uses are missing or unreadable: %s%s (put them in the "
               "render storage, or set the RenderJob's spec.missingFiles to Warn to render without them)"
               % (len(missing), listed, more))
    say("WARNING", "rendering without %d external files the scene uses, missing or unreadable: %s%s"
        % (len(missing), listed, more))

# --- The device
if scene.render.engine != "CYCLES":
    if WANT != "CPU":
        say("WARNING", "device %s applies to Cycles only; %s renders with OpenGL" % (WANT, scene.render.engine))
    say("DEVICE", "OPENGL " + scene.render.engine)
elif WANT == "CPU":
    scene.cycles.device = "CPU"
    say("DEVICE", "CPU")
else:
    prefs = bpy.context.preferences.addons["cycles"].preferences
    found = []
    try:
        prefs.compute_device_type = WANT
        found = [d for d in prefs.get_devices_for_type(WANT) if d.type == WANT]
    except Exception as e:  # a backend this Blender was built without
        say("WARNING", "Blender cannot use %s: %s" % (WANT, e))
    if found:
        for d in prefs.devices:
            d.use = d.type == WANT
        scene.cycles.device = "GPU"
        say("DEVICE", WANT + " " + ", ".join(d.name for d in found))
    elif FALLBACK:
        import _cycles

        _cycles.set_device_override("CPU")
        scene.cycles.device = "CPU"
        say("FALLBACK", "no %s device found; rendering on the CPU as --allow-cpu-fallback allows" % WANT)
        say("DEVICE", "CPU")
    else:
        # The pod was given a GPU of this kind and Blender sees none: the node's driver or device.
        say("GPU_UNUSABLE", "no %s device found on this node; pass --allow-cpu-fallback to render "
            "on the CPU instead" % WANT)
        sys.exit(64)
