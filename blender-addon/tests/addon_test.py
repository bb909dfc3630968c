"""Drives the built extension in Blender as a Python module (PyPI's bpy), headless: installs the
zip into the user extensions repository (BLENDER_USER_RESOURCES, set by the caller to a
temporary folder), makes a scene, sets the panel's properties, runs the operators, and prints
one line `ADDON-RESULT {json}` for kubectl-render/tests/addon.rs to check.

    PYTHON addon_test.py CASE ZIP '{"key": value, ...}'

Cases: install, submit (with `follow` it polls progress to the end and fetches the frames).
bpy has no event loop as a module: the test calls jobs.tick(), the function bpy.app.timers
calls in Blender, itself.
"""
import json
import os
import sys
import time

import bpy

MODULE = "bl_ext.user_default.renderfarm_submit"


def install(zip_path):
    before = set(bpy.context.preferences.addons.keys())
    bpy.ops.extensions.package_install_files(
        repo="user_default", filepath=zip_path, enable_on_install=True)
    added = sorted(set(bpy.context.preferences.addons.keys()) - before)
    return added


def addon():
    import importlib
    return importlib.import_module(MODULE)


def make_scene(opts):
    """The open scene: factory settings, or node-image's demo scene; frames, engine, format."""
    bpy.ops.wm.read_homefile(use_empty=True)
    if opts.get("make_scene"):
        sys.argv = ["make-scene.py", "--", opts["save_to"], str(opts.get("frames_end", 4)),
                    "160", "90", "4"]
        with open(opts["make_scene"], encoding="utf-8") as f:
            exec(compile(f.read(), opts["make_scene"], "exec"), {"__name__": "__main__"})
    scene = bpy.context.scene
    scene.frame_start = opts.get("frame_start", scene.frame_start)
    scene.frame_end = opts.get("frame_end", scene.frame_end)
    scene.frame_step = opts.get("frame_step", 1)
    scene.render.engine = opts.get("engine", scene.render.engine)
    scene.render.image_settings.file_format = opts.get("format", "PNG")
    if opts.get("output"):
        scene.render.filepath = opts["output"]
    if opts.get("save_to"):
        bpy.ops.wm.save_as_mainfile(filepath=opts["save_to"])
    return scene


def configure(scene, opts):
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.plugin_path = opts.get("plugin", "")
    prefs.kubeconfig = opts.get("kubeconfig", "")
    settings = scene.renderfarm
    for key in ("namespace", "claim", "job_name", "in_claim", "device"):
        if key in opts:
            setattr(settings, key, opts[key])
    for key in ("batch", "parallelism", "pack", "blender_version"):
        if key in opts:
            setattr(settings, key, opts[key])
    return settings


def run_operator(op):
    """An operator's outcome: its result set, or the error it reported (bpy raises it)."""
    try:
        return {"result": sorted(op()), "error": None}
    except RuntimeError as e:
        # bpy raises an operator's ERROR report as "Error: MESSAGE".
        message = str(e).strip()
        return {"result": ["CANCELLED"], "error": message.removeprefix("Error: ")}


def job_state(scene):
    job = scene.renderfarm_job
    return {k: getattr(job, k) for k in ("name", "phase", "frames_done", "frames_total",
                                         "failed", "last_frame", "message", "error",
                                         "thumbnail", "preview_video")}


def follow(scene, timeout):
    """jobs.tick() until the render ends; every distinct state seen, in order."""
    jobs = addon().jobs
    seen = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        jobs.tick()
        state = job_state(scene)
        line = (state["phase"], state["frames_done"], state["frames_total"])
        if not seen or seen[-1] != line:
            seen.append(line)
            print("progress:", jobs.status_line(scene.renderfarm_job), flush=True)
        if state["phase"] in jobs.TERMINAL:
            break
        time.sleep(0.5)
    return seen


def case_install(opts):
    out = {"addons": install(opts["zip"])}
    mod = addon()
    scene = make_scene(opts)
    out["panel"] = hasattr(bpy.types, "RENDER_PT_renderfarm")
    out["panel_context"] = getattr(bpy.types.RENDER_PT_renderfarm, "bl_context", None)
    out["operators"] = [hasattr(bpy.ops.renderfarm, n) and n for n in
                        ("submit", "fetch", "open_preview", "forget")]
    s = scene.renderfarm
    out["defaults"] = {"claim": s.claim, "batch": s.batch, "parallelism": s.parallelism,
                       "use_scene_range": s.use_scene_range, "device": s.device,
                       "pack": s.pack, "blender_version": s.blender_version,
                       "kube_context": s.kube_context}
    configure(scene, opts)
    out["contexts"] = [i[0] for i in mod.props._context_items(s, bpy.context)]
    if "pick_context" in opts:
        s.kube_context = opts["pick_context"]
        out["namespace_after_pick"] = s.namespace
    try:
        out["argv"] = mod.operators.submit_argv(scene, s)[1:]
    except mod.plugin.PluginMissing as e:
        out["argv_error"] = str(e)
    return out


def case_submit(opts):
    # The scene first: make-scene.py reads factory settings, which would disable the add-on.
    scene = make_scene(opts)
    out = {"addons": install(opts["zip"])}
    configure(scene, opts)
    if opts.get("dirty"):
        # A change since the save: Submit must save it first.
        time.sleep(1.1)
        bpy.data.objects.new("unsaved-change", None)
        bpy.context.scene.collection.objects.link(bpy.data.objects["unsaved-change"])
    out["dirty_before"] = bpy.data.is_dirty
    saved = opts.get("save_to")
    mtime = os.path.getmtime(saved) if saved else None
    out.update(run_operator(bpy.ops.renderfarm.submit))
    out["saved_by_submit"] = bool(saved) and os.path.getmtime(saved) != mtime
    out["job"] = job_state(scene)
    if opts.get("follow") and not out["error"]:
        out["seen"] = follow(scene, opts.get("timeout", 600))
        out["job"] = job_state(scene)
    if opts.get("fetch") and not out["error"]:
        out["fetch"] = run_operator(bpy.ops.renderfarm.fetch)
        out["fetched_into"] = addon().jobs.output_dir(scene)
        out["job"] = job_state(scene)
    return out


def main():
    case, zip_path, raw = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "{}"
    opts = json.loads(raw)
    opts["zip"] = zip_path
    result = {"install": case_install, "submit": case_submit}[case](opts)
    result["blender"] = bpy.app.version_string
    print("ADDON-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
