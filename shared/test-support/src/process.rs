//! Child processes for benchmarks that measure the real service binaries: building them,
//! stopping them, and reading their CPU time and memory from `/proc` (Linux).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A child process that gets SIGTERM when dropped, then SIGKILL if it has not exited within
/// 10 s (a service's graceful shutdown is part of what is being run).
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The release build of binary `bin` of workspace package `package`: the path in `env_var`
/// if set, else built with `cargo build --release -p <package>` into the target directory of
/// the running benchmark (a no-op when up to date). `None`, with the reason on stderr, when
/// the build fails.
pub fn release_binary(package: &str, bin: &str, env_var: &str) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(env_var) {
        return Some(PathBuf::from(path));
    }
    // Benchmarks run from <target>/release/deps/; binaries land in <target>/release/.
    let exe = std::env::current_exe().ok()?;
    let release = exe.parent()?.parent()?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building {bin}: cargo build --release -p {package}");
    let built = Command::new(cargo)
        .args(["build", "--release", "-p", package])
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", release.parent()?)
        .status();
    if !built.is_ok_and(|s| s.success()) {
        eprintln!("could not build {bin} (set {env_var} to a binary to use that instead)");
        return None;
    }
    let path = release.join(bin);
    path.exists().then_some(path)
}

/// User + system CPU time of a process (all threads), from `/proc/<pid>/stat`; zero when
/// unreadable.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name; USER_HZ is 100.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// `/proc/<pid>/status` (empty when unreadable).
pub fn proc_status(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
}

/// The number in a `/proc/<pid>/status` line (`name` with its colon, e.g. `"VmRSS:"`; a
/// `kB` unit is dropped); zero when the line is missing.
pub fn status_number(status: &str, name: &str) -> f64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// `VmRSS` and `VmHWM` (peak) of a process, in MiB; zero when unreadable.
pub fn memory_mib(pid: u32) -> (f64, f64) {
    let status = proc_status(pid);
    (
        status_number(&status, "VmRSS:") / 1024.0,
        status_number(&status, "VmHWM:") / 1024.0,
    )
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` prints them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
