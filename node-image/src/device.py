# Run by render-node inside Blender (`--python-expr`), after the .blend file is loaded and before
# any frame renders. It reports the scene's frame range and Blender's version, picks the Cycles
# device and says which one the frames render on, on lines starting with `RENDER_NODE:`.
# render-node fills in WANT and FALLBACK below before passing it on.
#
# The command line ends with `-- --cycles-device <device>`, which makes Cycles render on every
# device of that type whatever the scene or the preferences say (a scene saved with GPU rendering
# and no such flag would silently render on the CPU). This script checks that such a device is
# there first: when it is not, it either fails (exit 64) or, when a CPU fallback is allowed,
# switches the override to the CPU and says so.
import sys

import bpy

WANT = "@DEVICE@"
FALLBACK = @FALLBACK@
scene = bpy.context.scene


def say(key, text):
    print("RENDER_NODE:" + key, text, flush=True)


say("SCENE", "%d %d %s" % (scene.frame_start, scene.frame_end, bpy.app.version_string))
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
        say("BAD_INPUT", "no %s device found; pass --allow-cpu-fallback to render on the CPU instead" % WANT)
        sys.exit(64)
