"""`blender` for Blender installed as a Python module (PyPI's bpy wheel), which has no program
of its own. It takes the part of Blender's command line that render-node, the demo and the
tests use, and applies it left to right as Blender does:

    blender [-b] [-noaudio] [--factory-startup] [-Y] [FILE] [-o PATH] [-F FORMAT] [-x 0|1]
            [-E ENGINE] [-t N] [-s N] [-e N] [-j N] [--python-exit-code N]
            [--python FILE] [--python-expr EXPR] [-f FRAMES] [-a] [-- ARGS...]
    blender --version

It differs from Blender's own program where a render farm needs it to:
- A .blend file's scripts never run: files open with `use_scripts=False` (no registered text
  blocks, no Python drivers), and `-y`/`--enable-autoexec` is refused.
- `-E BLENDER_EEVEE` and `-E BLENDER_EEVEE_NEXT` both mean this Blender's EEVEE (4.2 to 4.5 call
  it BLENDER_EEVEE_NEXT, 5.0 BLENDER_EEVEE again).
- An unknown argument or render engine is an error (exit 1), not a warning.
What follows `--` is left in sys.argv for scripts and for Cycles (`--cycles-device`).
"""
import os
import shutil
import sys
import traceback

USAGE = __doc__.split("\n\n")[1]

# Blender's options that take a value, and those that take none.
WITH_VALUE = {
    "-o", "--render-output", "-F", "--render-format", "-x", "--use-extension", "-E", "--engine",
    "-t", "--threads", "-s", "--frame-start", "-e", "--frame-end", "-j", "--frame-jump",
    "-f", "--render-frame", "-P", "--python", "--python-expr", "--python-exit-code",
}
FLAGS = {
    "-b", "--background", "-noaudio", "--factory-startup", "-Y", "--disable-autoexec",
    "-a", "--render-anim", "-v", "--version", "-h", "--help", "-y", "--enable-autoexec",
}


class Exit(Exception):
    """Stop processing arguments and exit with `code`."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def say(*parts):
    print(*parts, flush=True)


def error(text):
    """An error line as Blender prints them (render-node reads `Error:` lines)."""
    for i, line in enumerate(str(text).strip().splitlines() or [""]):
        say(("Error: " if i == 0 and not line.startswith("Error:") else "") + line)


def parse(argv):
    """[(option, value)] in order; FILE arguments as (None, path)."""
    steps = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            break
        if a in WITH_VALUE:
            if i + 1 >= len(argv):
                raise SystemExit("blender: %s needs a value" % a)
            steps.append((a, argv[i + 1]))
            i += 2
            continue
        if a in FLAGS:
            steps.append((a, None))
        elif a.startswith("-"):
            raise SystemExit("blender: unknown argument %s (supported:\n%s)" % (a, USAGE))
        else:
            steps.append((None, a))
        i += 1
    return steps


def frames(spec):
    """Blender's `-f` syntax: `7`, `1,3..5,9`."""
    out = []
    for part in spec.split(","):
        if ".." in part:
            a, b = part.split("..", 1)
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def banner(bpy):
    app = bpy.app
    return "Blender %s (hash %s built %s %s)" % (
        app.version_string,
        app.build_hash.decode(errors="replace"),
        app.build_date.decode(errors="replace"),
        app.build_time.decode(errors="replace"),
    )


class Blender:
    def __init__(self, bpy):
        self.bpy = bpy
        self.threads = None
        self.exit_code_on_error = 0

    @property
    def scene(self):
        return self.bpy.context.scene

    def engine(self, name):
        aliases = {"BLENDER_EEVEE": "BLENDER_EEVEE_NEXT", "BLENDER_EEVEE_NEXT": "BLENDER_EEVEE"}
        # The engines are a dynamic enum (add-ons register them): try the name, then its alias.
        for candidate in (name, aliases.get(name)):
            try:
                if candidate:
                    self.scene.render.engine = candidate
                    return
            except TypeError as e:
                why = e
        error("engine not found '%s' (%s)" % (name, why))
        # Rendering with another engine than the one asked for would be a wrong picture.
        raise Exit(1)

    def open(self, path):
        path = os.path.abspath(path)
        try:
            self.bpy.ops.wm.open_mainfile(filepath=path, load_ui=False, use_scripts=False)
        except RuntimeError:
            # Blender has printed the error (an operator's reports); as Blender in the
            # background, stop: later arguments would act on the wrong file.
            raise Exit(1)

    def prepare(self, scene):
        if self.threads is not None:
            scene.render.threads_mode = "FIXED" if self.threads > 0 else "AUTO"
            if self.threads > 0:
                scene.render.threads = self.threads

    def render_frames(self, spec):
        bpy, scene = self.bpy, self.scene
        self.prepare(scene)
        pattern = scene.render.filepath
        try:
            for frame in frames(spec):
                # A still's path is not numbered by Blender: name the frame's file here, as
                # Blender's own `-f` does.
                scene.render.filepath = pattern
                scene.render.filepath = scene.render.frame_path(frame=frame)
                scene.frame_set(frame)
                try:
                    bpy.ops.render.render(write_still=True)
                except RuntimeError:
                    pass  # Blender has printed the error; on to the next frame, as Blender does
        finally:
            scene.render.filepath = pattern

    def render_animation(self):
        self.prepare(self.scene)
        try:
            self.bpy.ops.render.render(animation=True)
        except RuntimeError:
            pass  # Blender has printed the error

    def python(self, code, name):
        env = {"__name__": "__main__", "__file__": name, "__builtins__": __builtins__}
        try:
            exec(compile(code, name, "exec"), env)
        except SystemExit:
            raise
        except BaseException:
            lines = traceback.format_exc().rstrip().splitlines()
            say("Error: Python: " + lines[0])
            for line in lines[1:]:
                say(line)
            if self.exit_code_on_error:
                raise Exit(self.exit_code_on_error)

    def run(self, option, value):
        bpy, scene = self.bpy, self.scene
        if option is None:
            self.open(value)
        elif option in ("-o", "--render-output"):
            scene.render.filepath = value if value.startswith("//") else os.path.abspath(value)
        elif option in ("-F", "--render-format"):
            scene.render.image_settings.file_format = value
        elif option in ("-x", "--use-extension"):
            scene.render.use_file_extension = value != "0"
        elif option in ("-E", "--engine"):
            self.engine(value)
        elif option in ("-t", "--threads"):
            self.threads = int(value)
        elif option in ("-s", "--frame-start"):
            scene.frame_start = int(value)
        elif option in ("-e", "--frame-end"):
            scene.frame_end = int(value)
        elif option in ("-j", "--frame-jump"):
            scene.frame_step = int(value)
        elif option in ("-f", "--render-frame"):
            self.render_frames(value)
        elif option in ("-a", "--render-anim"):
            self.render_animation()
        elif option == "--python-exit-code":
            self.exit_code_on_error = int(value)
        elif option in ("-P", "--python"):
            with open(value, encoding="utf-8") as f:
                self.python(f.read(), value)
        elif option == "--python-expr":
            self.python(value, "<expr>")
        elif option == "--factory-startup":
            bpy.ops.wm.read_factory_settings()
        # -b, -noaudio, -Y: the module always runs in the background, without audio, with
        # auto-run off.


LIBC = None
# The module once imported: `end` removes its session folder (blender_XXXXXX in $TMPDIR), as
# Blender's own exit would.
BPY = None


def line_buffered_stdout():
    """Blender's own lines (`Fra:`, `Saved:`) are printed by C's stdio, which buffers whole
    blocks on a pipe: make it flush every line, so that a reader sees each as it happens and in
    order with Python's."""
    try:
        import ctypes

        global LIBC
        LIBC = ctypes.CDLL(None)
        LIBC.setvbuf(ctypes.c_void_p.in_dll(LIBC, "stdout"), None, 1, 0)  # _IOLBF
    except (OSError, ValueError, AttributeError):
        pass


def import_bpy(steps):
    """Import the module with Blender's task scheduler sized to `-t N`. The scheduler (TBB) sizes
    its pool by the CPUs this process may run on when the module loads; with fewer render
    threads than that, an idle worker spins in sched_yield while Cycles renders (-t 1 on two
    CPUs: half as much CPU again per frame). So the process may use only N CPUs while the module
    loads; then every thread may use all of them again."""
    threads = None
    for option, value in steps:
        if option in ("-t", "--threads"):
            try:
                threads = int(value)
            except ValueError:
                threads = None  # Blender.run reports it
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    narrow = threads is not None and 0 < threads < len(cpus)
    if narrow:
        os.sched_setaffinity(0, sorted(cpus)[:threads])
    try:
        import bpy
    finally:
        if narrow:
            for task in os.listdir("/proc/self/task"):
                try:
                    os.sched_setaffinity(int(task), cpus)
                except OSError:
                    pass  # a thread that ended meanwhile
    return bpy


def main():
    argv = sys.argv[1:]
    steps = parse(argv)
    options = {o for o, _ in steps}
    if options & {"-h", "--help"}:
        say(USAGE)
        return 0
    if options & {"-y", "--enable-autoexec"}:
        error("this Blender never runs scripts from .blend files (-y/--enable-autoexec refused)")
        return 1
    if options & {"-v", "--version"} and len(steps) == 1:
        # Without loading Blender: render-node asks this when the image does not say it.
        try:
            from importlib.metadata import version

            say("Blender " + version("bpy"))
            return 0
        except ImportError:
            pass
    # Scripts and Cycles read sys.argv as Blender's own: the program, then every argument.
    sys.argv = ["blender"] + argv
    line_buffered_stdout()
    bpy = import_bpy(steps)
    global BPY
    BPY = bpy

    say(banner(bpy))
    if options & {"-v", "--version"}:
        return 0
    blender = Blender(bpy)
    try:
        for option, value in steps:
            blender.run(option, value)
    except Exit as e:
        return e.code
    return 0


def end(code):
    """Exit without the module's exit handlers: after some scenes Blender's leak detector loops
    for ever at interpreter exit. Everything is written by now; flush what is buffered."""
    sys.stdout.flush()
    sys.stderr.flush()
    if LIBC is not None:
        LIBC.fflush(None)
    # Read now: loading the factory settings (--factory-startup) starts a new folder.
    temp = BPY.app.tempdir if BPY is not None else ""
    if os.path.basename(os.path.normpath(temp)).startswith("blender_"):
        shutil.rmtree(temp, ignore_errors=True)
    os._exit(code)


if __name__ == "__main__":
    try:
        code = main()
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            code = 1
        else:
            code = e.code or 0
    end(code)
