"""Render on Kubernetes: submit the open scene to a renderfarm cluster from Blender, follow its
progress, fetch its frames and open its preview, through the `kubectl render` plugin."""
from . import jobs, operators, props, ui

MODULES = (props, operators, ui, jobs)


def register():
    for m in MODULES:
        m.register()


def unregister():
    for m in reversed(MODULES):
        m.unregister()
