"""Writes a scene file as a studio's looks: two scenes, two cameras, two view layers with
different passes. Every object glows in one pure colour (emission, black world, Standard view
transform), so a frame's pixels say what it shows.

    blender -b --factory-startup --python tests/scenes/production.py -- OUT.blend

Scene "Shot" (active; Cycles, 64x36, 2 samples, frames 1-4):
- a green plane at x=-4 and a red cube at x=+4 (the cube in collection "RedThings");
- camera "CamGreen" sees only the plane, camera "CamRed" (the scene's camera) only the cube;
- view layer "Beauty" (rendered): every collection but "RedThings", with the Z and Normal
  passes; view layer "RedOnly" (not rendered unless asked for): only "RedThings", with Mist.
Scene "Alt": a blue plane seen by camera "AltCam".
"""
import sys

import bpy

argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
out = argv[0] if argv else "production.blend"


def glowing(name, colour):
    material = bpy.data.materials.new(name)
    material.use_nodes = True
    nodes = material.node_tree.nodes
    nodes.clear()
    emission = nodes.new("ShaderNodeEmission")
    emission.inputs["Color"].default_value = colour
    output = nodes.new("ShaderNodeOutputMaterial")
    material.node_tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])
    return material


def setup(scene):
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 2
    scene.cycles.use_denoising = False
    scene.render.resolution_x = 64
    scene.render.resolution_y = 36
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    scene.frame_start = 1
    scene.frame_end = 4
    world = bpy.data.worlds.new(scene.name + " world")
    world.color = (0, 0, 0)
    scene.world = world


def add(scene, collection, mesh_op, location, material, **kw):
    mesh_op(location=location, **kw)
    obj = bpy.context.active_object
    obj.data.materials.append(material)
    for c in list(obj.users_collection):
        c.objects.unlink(obj)
    collection.objects.link(obj)
    return obj


def camera(scene, name, x):
    data = bpy.data.cameras.new(name)
    data.type = "ORTHO"
    data.ortho_scale = 3
    obj = bpy.data.objects.new(name, data)
    obj.location = (x, 0, 10)
    scene.collection.objects.link(obj)
    return obj


bpy.ops.wm.read_factory_settings(use_empty=True)
shot = bpy.context.scene
shot.name = "Shot"
setup(shot)
red_things = bpy.data.collections.new("RedThings")
shot.collection.children.link(red_things)
add(shot, shot.collection, bpy.ops.mesh.primitive_plane_add, (-4, 0, 0), glowing("Green", (0, 1, 0, 1)), size=6)
add(shot, red_things, bpy.ops.mesh.primitive_cube_add, (4, 0, 0), glowing("Red", (1, 0, 0, 1)), size=6)
camera(shot, "CamGreen", -4)
shot.camera = camera(shot, "CamRed", 4)

beauty = shot.view_layers[0]
beauty.name = "Beauty"
beauty.use_pass_z = True
beauty.use_pass_normal = True
beauty.layer_collection.children["RedThings"].exclude = True
red_only = shot.view_layers.new("RedOnly")
red_only.use_pass_mist = True
red_only.use = False
for child in red_only.layer_collection.children:
    child.exclude = child.name != "RedThings"

alt = bpy.data.scenes.new("Alt")
setup(alt)
bpy.context.window.scene = alt
add(alt, alt.collection, bpy.ops.mesh.primitive_plane_add, (0, 0, 0), glowing("Blue", (0, 0, 1, 1)), size=6)
alt.camera = camera(alt, "AltCam", 0)
bpy.context.window.scene = shot

bpy.ops.wm.save_as_mainfile(filepath=out)
print("wrote", out)
