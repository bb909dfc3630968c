"""Writes a small demo scene: a camera, a sun, a ground plane and a cube that moves and turns.

    blender -b --factory-startup --python scripts/make-scene.py -- OUT.blend [FRAMES] [WIDTH] [HEIGHT] [SAMPLES]
"""
import sys

import bpy

argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
out = argv[0] if argv else "scene.blend"
frames = int(argv[1]) if len(argv) > 1 else 12
width = int(argv[2]) if len(argv) > 2 else 320
height = int(argv[3]) if len(argv) > 3 else 180
samples = int(argv[4]) if len(argv) > 4 else 8

bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = samples
scene.cycles.use_denoising = False
scene.eevee.taa_render_samples = samples
scene.render.resolution_x = width
scene.render.resolution_y = height
scene.render.resolution_percentage = 100
scene.frame_start = 1
scene.frame_end = frames

world = bpy.data.worlds.new("World")
world.color = (0.05, 0.07, 0.1)
scene.world = world

bpy.ops.mesh.primitive_plane_add(size=20, location=(0, 0, 0))
bpy.ops.mesh.primitive_cube_add(size=1.5, location=(-3, 0, 1))
cube = bpy.context.active_object
material = bpy.data.materials.new("Orange")
material.diffuse_color = (1.0, 0.4, 0.1, 1.0)
material.use_nodes = True
material.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (1.0, 0.4, 0.1, 1.0)
cube.data.materials.append(material)
cube.keyframe_insert(data_path="location", frame=1)
cube.keyframe_insert(data_path="rotation_euler", frame=1)
cube.location = (3, 0, 1)
cube.rotation_euler = (0, 0, 3.14)
cube.keyframe_insert(data_path="location", frame=frames)
cube.keyframe_insert(data_path="rotation_euler", frame=frames)

bpy.ops.object.light_add(type="SUN", location=(4, -4, 8))
bpy.context.active_object.data.energy = 4.0
bpy.ops.object.camera_add(location=(0, -10, 5), rotation=(1.1, 0, 0))
scene.camera = bpy.context.active_object

bpy.ops.wm.save_as_mainfile(filepath=out)
print("wrote", out)
