//! `blender -t N` with fewer threads than CPUs (scripts/blender.py): Blender's task scheduler
//! gets N threads, not one per CPU, so that no idle worker spins beside the render, and no
//! thread stays confined to fewer CPUs once the module has loaded. Real Blender 4.5, as in
//! tests/blender.rs (`hack/blender.sh 4.5`, or `RENDER_NODE_TEST_BLENDER_4_5`).

use std::process::Command;

mod common;
use common::blender;

/// The CPUs this test may run on, as the kernel lists them.
fn cpus_allowed(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
        .expect("Cpus_allowed_list in /proc/PID/status")
}

/// Renders one tiny Cycles frame of the factory scene with `-t threads`, then reports how many
/// threads Blender has and each one's allowed CPUs: (thread count, distinct CPU lists).
fn render_with(threads: u32) -> (usize, Vec<String>) {
    let dir = std::env::temp_dir().join(format!(
        "render-node-threads-{}-{threads}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let tiny = "import bpy; s = bpy.context.scene; s.cycles.samples = 1; \
                s.render.resolution_x = 32; s.render.resolution_y = 18";
    let report = "import os\n\
                  tasks = os.listdir('/proc/self/task')\n\
                  lists = sorted({[l.split(':', 1)[1].strip() for l in open('/proc/self/task/%s/status' % t)\n\
                                   if l.startswith('Cpus_allowed_list:')][0] for t in tasks})\n\
                  print('THREADS', len(tasks), '|'.join(lists), flush=True)";
    let out = Command::new(blender())
        .args(["-b", "--factory-startup", "-E", "CYCLES", "-t"])
        .arg(threads.to_string())
        .arg("-o")
        .arg(dir.join("f_####"))
        .args([
            "-F",
            "PNG",
            "--python-expr",
            tiny,
            "-f",
            "1",
            "--python-expr",
            report,
        ])
        .output()
        .expect("blender runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "blender failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("THREADS "))
        .unwrap_or_else(|| panic!("no THREADS line: {stdout}"));
    let (count, lists) = line.split_once(' ').expect("count and lists");
    (
        count.parse().expect("a thread count"),
        lists.split('|').map(str::to_string).collect(),
    )
}

#[test]
fn fewer_threads_than_cpus_start_no_idle_workers_and_pin_nothing() {
    let ours = cpus_allowed(&std::fs::read_to_string("/proc/self/status").expect("status"));
    let n_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (one, one_lists) = render_with(1);
    assert_eq!(
        one_lists,
        std::slice::from_ref(&ours),
        "threads left on fewer CPUs after -t 1"
    );
    if n_cpus < 2 {
        println!("one CPU: -t 1 is all of them, nothing to compare");
        return;
    }
    let (all, all_lists) = render_with(n_cpus as u32);
    assert_eq!(all_lists, [ours], "threads on fewer CPUs with -t {n_cpus}");
    // The scheduler's workers outlive the render: with one thread there are none.
    assert!(
        one < all,
        "-t 1 left {one} threads, -t {n_cpus} {all}: the task scheduler was sized to the CPUs, not to -t"
    );
    println!("threads after a render: -t 1 {one}, -t {n_cpus} {all}");
}
