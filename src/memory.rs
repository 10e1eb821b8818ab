//! Gives memory back to the system once a busy period is over.
//!
//! A burst of webhooks leaves glibc's arenas holding freed memory: after 10,000 requests at
//! full speed the process stayed at about 95 MiB resident although it needs less than half of
//! that. glibc returns only the top of each arena by itself; `malloc_trim(0)` also releases the
//! free pages in the middle of every arena. It walks the arenas under their locks, so it runs
//! once, after the process has gone quiet, not while it works (docs/performance.md).
//!
//! The process's own CPU time tells busy from quiet, so every service gets this without
//! reporting its activity anywhere.

// Without glibc only the tests use the decision logic.
#![cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]

use std::time::Duration;

/// How often the CPU time is read.
const INTERVAL: Duration = Duration::from_secs(1);

/// Decides, from the process's CPU time read at a steady interval, when to trim: in the first
/// quiet interval after enough work.
#[derive(Debug, Default)]
struct Quiet {
    last: Option<u64>,
    /// CPU time spent since the last trim.
    worked: u64,
}

impl Quiet {
    /// CPU time (clock ticks, 1/100 s) since the last trim that makes a trim worth it.
    const WORK: u64 = 20;
    /// At most this much CPU time in one interval counts as quiet.
    const IDLE: u64 = 2;

    /// Takes the process's total CPU time; true when memory should be trimmed now.
    fn observe(&mut self, cpu: u64) -> bool {
        let Some(last) = self.last.replace(cpu) else { return false };
        let spent = cpu.saturating_sub(last);
        self.worked += spent;
        if spent <= Self::IDLE && self.worked >= Self::WORK {
            self.worked = 0;
            return true;
        }
        false
    }
}

/// Starts the thread that trims after busy periods (glibc on Linux; elsewhere the allocator
/// has no such call and nothing starts).
pub fn release_when_quiet() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new().name("memory-release".into()).spawn(|| {
            let mut quiet = Quiet::default();
            loop {
                std::thread::sleep(INTERVAL);
                let Some(cpu) = cpu_ticks() else { return };
                if quiet.observe(cpu) {
                    trim();
                }
            }
        });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the memory release thread");
        }
    }
}

/// User and system CPU time of this process, in clock ticks, from `/proc/self/stat`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn cpu_ticks() -> Option<u64> {
    parse_cpu_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// Fields 14 and 15 of `/proc/<pid>/stat`; the command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes no pointer, has no precondition and is thread-safe (it locks
    // each arena while it walks it).
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(quiet: &mut Quiet, samples: &[u64]) -> Vec<bool> {
        samples.iter().map(|&cpu| quiet.observe(cpu)).collect()
    }

    #[test]
    fn trims_once_when_a_busy_period_ends() {
        let mut q = Quiet::default();
        // Idle, then 3 busy seconds, then idle again.
        let trims = run(&mut q, &[100, 100, 101, 180, 260, 340, 341, 341, 342]);
        assert_eq!(trims, [false, false, false, false, false, false, true, false, false]);
    }

    #[test]
    fn never_trims_a_process_that_only_idles_or_only_works() {
        let mut q = Quiet::default();
        assert!(!run(&mut q, &(0..100).map(|i| i / 10).collect::<Vec<_>>()).contains(&true));
        let mut q = Quiet::default();
        assert!(!run(&mut q, &(0..100).map(|i| i * 50).collect::<Vec<_>>()).contains(&true));
    }

    #[test]
    fn little_bits_of_work_add_up_to_one_trim() {
        let mut q = Quiet::default();
        // 2 ticks per second is quiet, yet after 10 seconds it is worth a trim.
        let trims = run(&mut q, &(0..=12).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(trims.iter().filter(|t| **t).count(), 1);
    }

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (status (tr) x) S 1 4242 4242 0 -1 4194304 1500 0 0 0 731 269 0 0 20 0 9 0 123 456";
        assert_eq!(parse_cpu_ticks(stat), Some(1000));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn this_process_has_a_cpu_time() {
        assert!(cpu_ticks().is_some());
    }
}
