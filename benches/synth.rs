//! Whole-process `jitr-infra synth` time and peak memory (the Lambdas are embedded in the
//! binary), in the checkout and, as a user gets it, with the binary copied outside the
//! checkout into a fresh `init` project with no Rust toolchain on PATH.
//! Run with `scripts/bench-synth`.

use std::path::PathBuf;
use std::time::Instant;

const RUNS: usize = 100;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = std::env::var_os("JITR_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/debug/jitr-infra"));
    assert!(
        bin.exists(),
        "{} missing: run scripts/bench-synth",
        bin.display()
    );
    let out = std::env::temp_dir().join(format!("jitr-bench-synth-{}", std::process::id()));
    let mut wall_ms = Vec::with_capacity(RUNS);
    let mut max_rss_kib = 0i64;
    for i in 0..RUNS + 1 {
        let start = Instant::now();
        // Reaped by wait4 below, which also reports the child's peak RSS.
        #[allow(clippy::zombie_processes)]
        let child = std::process::Command::new(&bin)
            .current_dir(&root)
            .args(["synth", "--stage", "dev", "--out"])
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start jitr-infra");
        let mut status = 0;
        // SAFETY: plain wait4 on our own child; rusage is fully written by the kernel.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
        let elapsed = start.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(pid, child.id() as i32);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "synth failed"
        );
        if i == 0 {
            continue; // the first run may build the Lambdas
        }
        wall_ms.push(elapsed);
        max_rss_kib = max_rss_kib.max(usage.ru_maxrss);
    }
    let _ = std::fs::remove_dir_all(&out);
    wall_ms.sort_by(f64::total_cmp);
    let at = |p: f64| wall_ms[((wall_ms.len() - 1) as f64 * p).round() as usize];
    println!("jitr-infra synth --stage dev, whole process, {RUNS} runs, Lambdas already built");
    println!(
        "{:<28} {:>9} {:>10}   cdk synth (same stack)",
        "metric", "value", "target"
    );
    println!(
        "{:<28} {:>6.1} ms {:>7} ms   7340 ms",
        "wall time, median",
        at(0.5),
        30
    );
    println!("{:<28} {:>6.1} ms", "wall time, p90", at(0.9));
    println!("{:<28} {:>6.1} ms", "wall time, min", at(0.0));
    println!(
        "{:<28} {:>5.1} MiB {:>6} MiB   424 MiB",
        "peak RSS (max of runs)",
        max_rss_kib as f64 / 1024.0,
        20
    );
    println!("speed-up over cdk synth: {:.0}x", 7340.0 / at(0.5));
    fresh_project(&bin);
}

/// The binary alone in a fresh directory: `init`, then the first `synth` and more.
fn fresh_project(bin: &std::path::Path) {
    let home = std::env::temp_dir().join(format!("jitr-bench-fresh-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(home.join("bin")).unwrap();
    let copy = home.join("bin/jitr-infra");
    std::fs::copy(bin, &copy).expect("copy the binary");
    let run = |dir: &std::path::Path, args: &[&str]| {
        let start = Instant::now();
        let status = std::process::Command::new(&copy)
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &home)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("start jitr-infra");
        assert!(status.success(), "jitr-infra {args:?} failed");
        start.elapsed().as_secs_f64() * 1000.0
    };
    let init = run(&home, &["init", "project", "--region", "eu-west-1"]);
    let project = home.join("project");
    let first = run(&project, &["synth"]);
    let mut later: Vec<f64> = (0..20).map(|_| run(&project, &["synth"])).collect();
    later.sort_by(f64::total_cmp);
    let _ = std::fs::remove_dir_all(&home);
    println!();
    println!("the binary alone, outside the checkout, PATH=/usr/bin:/bin, a fresh init project");
    println!("{:<28} {:>6.1} ms", "init (makes the CA)", init);
    println!("{:<28} {:>6.1} ms", "first synth", first);
    println!("{:<28} {:>6.1} ms", "synth, median of 20", later[10]);
}
