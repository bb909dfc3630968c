#!/usr/bin/env python3
"""The figures of bench/render.sh and bench/first-frame.sh, from what they record.

    kind.py poll DIR COUNT OUT [TIMEOUT]   stamp each frame_*.png in DIR when first seen
                                           (microseconds, this machine's clock) until COUNT
    kind.py cpu BEFORE AFTER [UID...]      CPU seconds between two cgroup snapshots (JSON)
    kind.py farm-case DIR RJ T0 P N CASE BEFORE AFTER OP-UID   one render.sh case (JSON)
    kind.py bare-case OUT FRAMES T0 T1 N CASE                  one bare Blender case (JSON)
    kind.py render-case CASE.json          print one case of render.sh
    kind.py render-table CASE.json...      the tables of render.sh
    kind.py first-frame-run DIR RJ T0      one run of first-frame.sh (JSON)
    kind.py first-frame RUN.json...        the table of first-frame.sh

Timestamps: watch lines are "MICROSECONDS rest" (bench/lib.sh's stamp); pod logs come from
`kubectl logs --timestamps` (RFC 3339, ns, stamped by the node's container runtime; kind nodes
share this machine's clock).
"""
import calendar
import json
import os
import re
import sys
import time

FRAME = re.compile(r"^frame_\d+\.png$")


def poll(folder, count, out, timeout=1800):
    """Stamp frames as they appear: a file counts once it has bytes."""
    seen = {}
    end = time.time() + float(timeout)
    with open(out, "w") as f:
        while len(seen) < int(count) and time.time() < end:
            try:
                names = os.listdir(folder)
            except FileNotFoundError:
                names = []
            now = int(time.time() * 1e6)
            for n in names:
                if n in seen or not FRAME.match(n):
                    continue
                try:
                    if os.path.getsize(os.path.join(folder, n)) == 0:
                        continue
                except OSError:
                    continue
                seen[n] = now
                f.write(f"{now} {n}\n")
                f.flush()
            time.sleep(0.02)
    return 0 if len(seen) >= int(count) else 1


def log_us(ts):
    """2026-12-01T14:20:00.123456789Z -> microseconds."""
    ts = ts.rstrip("Z")
    date, _, frac = ts.partition(".")
    secs = calendar.timegm(time.strptime(date, "%Y-%m-%dT%H:%M:%S"))
    return secs * 1_000_000 + int((frac + "000000000")[:9]) // 1000


def watch_lines(path):
    """(stamp, [fields]) of a watch file whose lines are "STAMP a|b|c"."""
    out = []
    if not os.path.exists(path):
        return out
    for line in open(path):
        stamp, _, rest = line.rstrip("\n").partition(" ")
        if stamp.isdigit():
            out.append((int(stamp), rest.split("|")))
    return out


def events(path):
    """(stamp, event) of render-node's JSON progress lines in a pod log."""
    out = []
    for line in open(path):
        ts, _, rest = line.rstrip("\n").partition(" ")
        if not rest.startswith("{"):
            continue
        try:
            e = json.loads(rest)
        except ValueError:
            continue
        if isinstance(e, dict) and "event" in e:
            out.append((log_us(ts), e))
    return out


def cpu_snapshot(path):
    """{node: {"node": ns, "kubepods": ns, "pods": {uid: ns}}} of a render.sh snapshot."""
    snap = {}
    for line in open(path):
        parts = line.split()
        if len(parts) != 3:
            continue
        node, what, value = parts[0], parts[1], int(parts[2])
        n = snap.setdefault(node, {"node": 0, "kubepods": 0, "pods": {}})
        if what in ("node", "kubepods"):
            n[what] = value
        else:
            # A pod's UID, with "_" for "-"; a static pod's (the control plane's) is a hash of
            # 32 hex digits, which must count as long-lived too, not as the render's.
            m = re.search(r"pod([0-9a-f]{32}|[0-9a-f_]{36})\.slice", what)
            if m:
                n["pods"][m.group(1).replace("_", "-")] = value
    return snap


def cpu_delta(before, after, *uids):
    """CPU seconds per node: the node's container, all pods, pods that exist in both snapshots
    (long-lived: the operator, DaemonSets) and the rest (pods of this render); `uids` are
    reported on their own (the operator's pod)."""
    a, b = cpu_snapshot(before), cpu_snapshot(after)
    out = {"nodes": {}, "named": {u: 0.0 for u in uids}}
    for node in b:
        if node not in a:
            continue
        x, y = a[node], b[node]
        longlived = sum(y["pods"][u] - x["pods"][u] for u in y["pods"] if u in x["pods"])
        for u in uids:
            if u in x["pods"] and u in y["pods"]:
                out["named"][u] += (y["pods"][u] - x["pods"][u]) / 1e9
        pods = y["kubepods"] - x["kubepods"]
        out["nodes"][node] = {
            "node": (y["node"] - x["node"]) / 1e9,
            "pods": pods / 1e9,
            "longlived": longlived / 1e9,
            "new_pods": (pods - longlived) / 1e9,
        }
    return out


def bare_case(out, frames_file, t0, t1, n, case):
    """Wall time (docker run -> last frame on disk, and -> exit), CPU from bash's `times`
    (children's user + system) and Blender's per-frame "Time:" lines."""
    text = open(out).read()
    seen = sorted(int(l.split()[0]) for l in open(frames_file)) if os.path.exists(frames_file) else []
    clock = re.findall(r"(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s", text)
    cpu_s = None
    if clock:
        um, us, sm, ss = clock[-1]
        cpu_s = int(um) * 60 + float(us) + int(sm) * 60 + float(ss)
    frames = [int(m) * 60 + float(s) for m, s in re.findall(r"Time: (\d+):([\d.]+)", text)]
    return {"case": case, "frames": n,
            "wall_disk": d(t0, seen[-1]) if len(seen) >= n else None,
            "wall_succeeded": d(t0, t1), "first_frame": d(t0, seen[0]) if seen else None,
            "cpu_per_frame": cpu_s / n if cpu_s is not None else None,
            "frame_seconds": mean(frames)}


def first(lines, pred):
    for stamp, f in lines:
        if pred(f):
            return stamp
    return None


def batches(folder, rj, t_apply, parallelism):
    """Per-batch timeline of render `rj` from the watches and pod logs in `folder`."""
    t_apply = int(t_apply)
    par = int(parallelism)
    pods_w = [(s, f) for s, f in watch_lines(f"{folder}/pods") if len(f) >= 6 and f[1] == rj]
    jobs_w = [(s, f) for s, f in watch_lines(f"{folder}/jobs") if len(f) >= 4 and f[1] == rj]
    rj_w = [(s, f) for s, f in watch_lines(f"{folder}/renderjobs") if len(f) >= 2 and f[0] == rj]
    out = {"rj": rj, "t_apply": t_apply, "parallelism": par}
    out["rj_seen"] = first(rj_w, lambda f: True)
    out["rj_succeeded"] = first(rj_w, lambda f: f[1] == "Succeeded")
    jobs = {}
    for s, f in jobs_w:
        name, _, succeeded, complete = f[:4]
        j = jobs.setdefault(name, {"created": s, "complete": None, "batch": f[2]})
        if complete == "True" and j["complete"] is None:
            j["complete"] = s
    # Batch label of the job is in the pod line; the job line's third field is .status.succeeded.
    pods = {}
    for s, f in pods_w:
        name, _, batch, node, phase, state = f[:6]
        if not batch:
            continue  # the preview step's pod
        p = pods.setdefault(name, {"batch": int(batch), "created": s, "scheduled": None,
                                   "running_seen": None, "succeeded": None, "node": ""})
        if node and p["scheduled"] is None:
            p["scheduled"] = s
            p["node"] = node
        if '"running"' in state and p["running_seen"] is None:
            p["running_seen"] = s
        if phase == "Succeeded" and p["succeeded"] is None:
            p["succeeded"] = s
    rows = []
    for name, p in pods.items():
        log = f"{folder}/logs/{name}.log"
        if p["succeeded"] is None or not os.path.exists(log):
            continue
        ev = events(log)
        by = lambda kind: [s for s, e in ev if e["event"] == kind]
        job = next((j for jn, j in jobs.items() if name.startswith(jn + "-")), {})
        r = dict(p, pod=name, job_created=job.get("created"), job_complete=job.get("complete"))
        starts, rendering, fs, saved, done = by("start"), by("rendering"), by("frame_started"), \
            by("frame_saved"), by("done")
        r["start"] = starts[0] if starts else None
        r["rendering"] = rendering[0] if rendering else None
        r["first_started"] = fs[0] if fs else None
        r["first_saved"] = saved[0] if saved else None
        r["last_saved"] = saved[-1] if saved else None
        r["done"] = done[-1] if done else None
        r["frames"] = len(saved)
        r["frame_seconds"] = sum(e.get("seconds") or 0 for s, e in ev if e["event"] == "frame_saved")
        r["startup_seconds"] = next((e.get("startup_seconds") for s, e in ev
                                     if e["event"] == "rendering"), None)
        rows.append(r)
    rows.sort(key=lambda r: (r["job_created"] or r["created"], r["batch"]))
    out["batches"] = rows
    return out


def d(a, b):
    """Seconds from stamp a to stamp b, or None."""
    return None if a is None or b is None else (b - a) / 1e6


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def fmt(x, w=7, p=2):
    return f"{'-':>{w}}" if x is None else f"{x:>{w}.{p}f}"


# The steps of one batch, in order: name, from, to.
STEPS = [
    ("Job->pod", "job_created", "created"),
    ("sched", "created", "scheduled"),
    ("kubelet", "scheduled", "start"),
    ("blender", "start", "rendering"),
    ("wait", "rendering", "first_started"),
    ("render", "first_started", "last_saved"),
    ("tail", "last_saved", "done"),
    ("exit", "done", "succeeded"),
    ("pod->Job", "succeeded", "job_complete"),
]
# The refill of a slot: the batch that ended (prev) and the one started in its place (cur).
GAP = [
    ("tail", "prev", "last_saved", "prev", "done"),
    ("exit", "prev", "done", "prev", "succeeded"),
    ("pod->Job", "prev", "succeeded", "prev", "job_complete"),
    ("operator", "prev", "job_complete", "cur", "job_created"),
    ("Job->pod", "cur", "job_created", "cur", "created"),
    ("sched", "cur", "created", "cur", "scheduled"),
    ("kubelet", "cur", "scheduled", "cur", "start"),
    ("blender", "cur", "start", "cur", "rendering"),
    ("wait", "cur", "rendering", "cur", "first_started"),
]


def step(r, name, a, b):
    """Seconds of one step of batch r."""
    return d(r[a], r[b])


def summarise(t, frames_file, n_frames):
    """Wall times, means per batch and refill gaps of a batches() timeline."""
    rows = t["batches"]
    par = t["parallelism"]
    seen = sorted(int(l.split()[0]) for l in open(frames_file)) if os.path.exists(frames_file) else []
    s = {"rj": t["rj"], "frames": n_frames, "batches": len(rows)}
    s["wall_disk"] = d(t["t_apply"], seen[-1]) if len(seen) >= n_frames else None
    s["wall_succeeded"] = d(t["t_apply"], t["rj_succeeded"])
    s["first_frame"] = d(t["t_apply"], seen[0]) if seen else None
    s["steps"] = {name: mean(step(r, name, a, b) for r in rows) for name, a, b in STEPS}
    s["startup_seconds"] = mean(r["startup_seconds"] for r in rows)
    s["frame_seconds"] = mean(r["frame_seconds"] / r["frames"] for r in rows if r["frames"])
    s["render_sum"] = sum(x for x in (d(r["first_started"], r["last_saved"]) for r in rows) if x)
    first = rows[0] if rows else {}
    s["apply->job"] = d(t["t_apply"], first.get("job_created"))
    s["apply->rj"] = d(t["t_apply"], t["rj_seen"])
    # The k-th batch to start rendering (k >= parallelism) takes the slot of the (k -
    # parallelism)-th to end (by render-node's `done`; a batch started ahead waits for that).
    ended = sorted((r for r in rows if r["done"]), key=lambda r: r["done"])
    started = sorted((r for r in rows if r["first_started"]), key=lambda r: r["first_started"])
    gaps = []
    for k, cur in enumerate(started[par:]):
        if k >= len(ended):
            break
        prev = ended[k]
        pc = {"prev": prev, "cur": cur}
        g = {name: step(pc[pb], name, a, b) if pa == pb else d(pc[pa][a], pc[pb][b])
             for name, pa, a, pb, b in GAP}
        g["total"] = d(prev["last_saved"], cur["first_started"])
        gaps.append(g)
    s["gaps"] = len(gaps)
    s["gap"] = {name: mean(g[name] for g in gaps) for name, *_ in GAP}
    s["gap"]["total"] = mean(g["total"] for g in gaps)
    s["gap_sum"] = sum(g["total"] for g in gaps if g["total"] is not None)
    s["last_disk->succeeded"] = d(seen[-1], t["rj_succeeded"]) if seen else None
    return s


def render_case(path):
    s = json.load(open(path))
    print(f"  {s['case']}: frames on disk {fmt(s.get('wall_disk'), 0, 1)} s, Succeeded "
          f"{fmt(s.get('wall_succeeded'), 0, 1)} s, CPU {fmt(s.get('cpu_per_frame'), 0, 2)} s/frame, "
          f"{fmt(s.get('frame_seconds'), 0, 2)} s per frame in Blender")
    if "steps" not in s:
        return
    print(f"    {s['batches']} batches; first Job {fmt(s['apply->job'], 0)} s after apply; "
          f"first frame on disk {fmt(s['first_frame'], 0)} s; "
          f"Blender's own startup_seconds {fmt(s['startup_seconds'], 0)}; "
          f"{fmt(s['frame_seconds'], 0)} s per frame in Blender")
    print("    per batch, mean s: " + "  ".join(f"{k} {fmt(v, 0)}" for k, v in s["steps"].items()))
    print(f"    refill of a slot ({s['gaps']} refills), mean s: "
          + "  ".join(f"{k} {fmt(v, 0)}" for k, v in s["gap"].items()))


def render_table(paths):
    cases = [json.load(open(p)) for p in paths]
    bare = [c for c in cases if c["case"].startswith("bare")]
    bwall = mean(c["wall_disk"] for c in bare)
    bcpu = mean(c["cpu_per_frame"] for c in bare)
    print("\n| case | frames on disk s | Succeeded s | ratio (disk) | ratio (Succeeded) "
          "| CPU s/frame | CPU ratio | operator CPU s | worker nodes CPU s | control-plane node CPU s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for c in cases:
        r1 = c["wall_disk"] / bwall if c.get("wall_disk") and bwall else None
        r2 = c["wall_succeeded"] / bwall if c.get("wall_succeeded") and bwall else None
        rc = c["cpu_per_frame"] / bcpu if c.get("cpu_per_frame") and bcpu else None
        print(f"| {c['case']} | {fmt(c.get('wall_disk'), 0, 1)} | {fmt(c.get('wall_succeeded'), 0, 1)} "
              f"| {fmt(r1, 0)} | {fmt(r2, 0)} | {fmt(c.get('cpu_per_frame'), 0)} | {fmt(rc, 0)} "
              f"| {fmt(c.get('operator_cpu'), 0)} | {fmt(c.get('workers_cpu'), 0, 1)} "
              f"| {fmt(c.get('control_plane_cpu'), 0, 1)} |")
    farm = [c for c in cases if "steps" in c]
    if not farm:
        return
    names = [n for n, *_ in STEPS]
    print("\nPer batch, mean seconds (Job->pod: Job controller; sched: scheduler; kubelet: pod "
          "scheduled -> render-node's first line; blender: Blender start and scene load; tail: "
          "last frame saved -> render-node done; exit: -> pod seen Succeeded):\n")
    print("| case | batches | " + " | ".join(names) + " | s/frame in Blender |")
    print("| --- | --- | " + " | ".join("---" for _ in names) + " | --- |")
    for c in farm:
        print(f"| {c['case']} | {c['batches']} | "
              + " | ".join(fmt(c["steps"][n], 0) for n in names)
              + f" | {fmt(c['frame_seconds'], 0)} |")
    gnames = [n for n, *_ in GAP] + ["total"]
    print("\nRefill of a slot, mean seconds from one batch's last frame saved to the next batch's "
          "first frame started in its place (operator: batch Job seen Complete -> next Job seen):\n")
    print("| case | refills | " + " | ".join(gnames) + " | idle slot-s | idle share |")
    print("| --- | --- | " + " | ".join("---" for _ in gnames) + " | --- | --- |")
    for c in farm:
        slot = c["parallelism"] * c["wall_disk"] if c.get("wall_disk") else None
        idle = slot - c["render_sum"] if slot else None
        print(f"| {c['case']} | {c['gaps']} | " + " | ".join(fmt(c["gap"][n], 0) for n in gnames)
              + f" | {fmt(idle, 0, 1)} | {fmt(idle / slot if slot else None, 0)} |")


def pct(xs, p):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    return xs[max(0, (len(xs) * p + 99) // 100 - 1)]


FF = [
    ("apply", "t_apply", "rj_seen"),
    ("operator", "rj_seen", "job_created"),
    ("Job->pod", "job_created", "created"),
    ("sched", "created", "scheduled"),
    ("kubelet", "scheduled", "start"),
    ("blender", "start", "rendering"),
    ("frame", "rendering", "first_saved"),
    ("visible", "first_saved", "visible"),
    ("total", "t_apply", "visible"),
]


def first_frame(paths):
    runs = []
    for p in paths:
        t = json.load(open(p))
        if not t["batches"]:
            continue
        r = dict(t["batches"][0], t_apply=t["t_apply"], rj_seen=t["rj_seen"], visible=t.get("visible"))
        runs.append({name: d(r[a], r[b]) for name, a, b in FF})
    names = [n for n, *_ in FF]
    print("| run | " + " | ".join(names) + " |")
    print("| --- | " + " | ".join("---" for _ in names) + " |")
    for i, r in enumerate(runs, 1):
        print(f"| {i} | " + " | ".join(fmt(r[n], 0, 3) for n in names) + " |")
    for p in (50, 90):
        print(f"| p{p} | " + " | ".join(fmt(pct([r[n] for r in runs], p), 0, 3) for n in names) + " |")


def main(argv):
    cmd = argv[1]
    if cmd == "poll":
        return poll(*argv[2:])
    if cmd == "cpu":
        print(json.dumps(cpu_delta(*argv[2:])))
        return 0
    if cmd == "farm-case":  # DIR RJ T_APPLY PARALLELISM FRAMES CASE CPU_BEFORE CPU_AFTER OP_UID
        folder, rj, t0, par, n, case, before, after, op = argv[2:11]
        t = batches(folder, rj, t0, par)
        json.dump(t, open(f"{folder}/{rj}.timeline.json", "w"))
        s = summarise(t, f"{folder}/{rj}.frames", int(n))
        c = cpu_delta(before, after, op)
        s.update(case=case, parallelism=int(par), cpu=c)
        s["cpu_per_frame"] = sum(v["new_pods"] for v in c["nodes"].values()) / int(n)
        s["operator_cpu"] = c["named"][op]
        s["workers_cpu"] = sum(v["node"] for k, v in c["nodes"].items() if not k.endswith("-control-plane"))
        s["control_plane_cpu"] = sum(v["node"] for k, v in c["nodes"].items() if k.endswith("-control-plane"))
        print(json.dumps(s))
        return 0
    if cmd == "bare-case":  # OUT FRAMES-FILE T0 T1 FRAMES CASE: a bare Blender run
        out, frames_file, t0, t1, n, case = argv[2:8]
        print(json.dumps(bare_case(out, frames_file, int(t0), int(t1), int(n), case)))
        return 0
    if cmd == "first-frame-run":  # DIR RJ T_APPLY: one run of first-frame.sh
        folder, rj, t0 = argv[2:5]
        t = batches(folder, rj, t0, 1)
        seen = [int(l.split()[0]) for l in open(f"{folder}/{rj}.frames")]
        t["visible"] = min(seen) if seen else None
        print(json.dumps(t))
        return 0
    if cmd == "render-case":
        return render_case(argv[2])
    if cmd == "render-table":
        return render_table(argv[2:])
    if cmd == "first-frame":
        return first_frame(argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv) or 0)
