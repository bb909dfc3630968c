"""Writes two scenes carrying Python that would write a marker file into MARKERS if it ran:

- DIR/scripts.blend: a text block registered to run when the file opens (`text`) and a Python
  driver on the cube's height (`driver`);
- DIR/freestyle.blend: Freestyle lines drawn by a Python style module (`freestyle`).

    blender -b --python untrusted.py -- DIR MARKERS
"""
import os
import sys

import bpy

out, markers = sys.argv[sys.argv.index("--") + 1:][:2]
os.makedirs(out, exist_ok=True)


def marker(name):
    return "open(%r, 'w').write('ran')" % os.path.join(markers, name)


def base():
    bpy.ops.wm.read_factory_settings(use_empty=False)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.render.resolution_x, scene.render.resolution_y = 160, 90
    scene.render.resolution_percentage = 100
    scene.frame_start, scene.frame_end = 1, 2
    return scene


base()
text = bpy.data.texts.new("on_load.py")
text.write(marker("text") + "\n")
text.use_module = True
driver = bpy.data.objects["Cube"].driver_add("location", 2).driver
driver.type = "SCRIPTED"
driver.use_self = False
driver.expression = "(%s and 0) + frame * 0.1" % marker("driver")
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(out, "scripts.blend"))

scene = base()
style = bpy.data.texts.new("style.py")
style.write(marker("freestyle") + "\n")
scene.render.use_freestyle = True
layer = scene.view_layers[0]
layer.freestyle_settings.mode = "SCRIPT"
bpy.ops.scene.freestyle_module_add()
layer.freestyle_settings.modules[-1].script = style
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(out, "freestyle.blend"))
