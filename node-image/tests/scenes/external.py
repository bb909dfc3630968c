"""Writes, into DIR, a scene that uses two external files by relative (`//`) paths:

- tex.png, an 8×8 green image, on a plane that fills the view;
- lib.blend, a library whose red plane "Marker" is linked into the left of the view;
- scene.blend, rendered by Cycles with emission shaders and the Standard view transform, so the
  frame's colours are the files' own: green in the middle, red at the left (magenta where the
  texture is missing, green where the library is).

    blender -b --python external.py -- DIR
"""
import os
import sys

import bpy

out = sys.argv[sys.argv.index("--") + 1]
os.makedirs(out, exist_ok=True)


def emission(name, color=None, image=None):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()
    emit = nodes.new("ShaderNodeEmission")
    result = nodes.new("ShaderNodeOutputMaterial")
    links.new(emit.outputs["Emission"], result.inputs["Surface"])
    if image is not None:
        tex = nodes.new("ShaderNodeTexImage")
        tex.image = image
        tex.interpolation = "Closest"
        links.new(tex.outputs["Color"], emit.inputs["Color"])
    else:
        emit.inputs["Color"].default_value = color
    return mat


# The library: one red plane.
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.mesh.primitive_plane_add(size=0.5, location=(-0.7, 0, 0.1))
marker = bpy.context.active_object
marker.name = "Marker"
marker.data.materials.append(emission("Red", color=(1, 0, 0, 1)))
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(out, "lib.blend"))

# The scene.
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 1
scene.cycles.use_denoising = False
scene.render.resolution_x, scene.render.resolution_y = 160, 90
scene.render.resolution_percentage = 100
scene.view_settings.view_transform = "Standard"
scene.frame_start, scene.frame_end = 1, 2
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(out, "scene.blend"))

image = bpy.data.images.new("tex", 8, 8)
image.pixels = [0.0, 1.0, 0.0, 1.0] * 64
image.filepath_raw = os.path.join(out, "tex.png")
image.file_format = "PNG"
image.save()
image.filepath = "//tex.png"
bpy.ops.mesh.primitive_plane_add(size=4, location=(0, 0, 0))
bpy.context.active_object.data.materials.append(emission("Texture", image=image))

with bpy.data.libraries.load(os.path.join(out, "lib.blend"), link=True, relative=True) as (src, dst):
    dst.objects = ["Marker"]
for obj in dst.objects:
    scene.collection.objects.link(obj)

bpy.ops.object.camera_add(location=(0, 0, 5), rotation=(0, 0, 0))
camera = bpy.context.active_object
camera.data.type = "ORTHO"
camera.data.ortho_scale = 2
scene.camera = camera
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(out, "scene.blend"), relative_remap=True)
print("libraries:", [lib.filepath for lib in bpy.data.libraries], "image:", image.filepath)
