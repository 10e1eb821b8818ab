//! Gives memory back to the system after and during busy periods.
//!
//! A burst of webhooks leaves glibc's arenas holding freed memory: after 10,000 requests at
//! full speed the process stayed at about 95 MiB resident although it needs less than half of
//! that. glibc returns only the top of each arena by itself; `malloc_trim(0)` also releases the
//! free pages in the middle of every arena. It walks the arenas under their locks (15–45 ms
//! in all under full load on the project's machine), so it runs when it pays: once the
//! process has gone quiet after starting and after work, and during sustained work only when
//! the process's anonymous memory grew by [`Trimmer::GROWTH`] since the last trim, which keeps
//! a long burst from piling up freed memory (docs/performance.md, "Memory").
//!
//! The process's own CPU time and memory tell busy from quiet, so every service gets this
//! without reporting its activity anywhere.

// Without glibc only the tests use the decision logic.
#![cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]

use std::time::Duration;

/// How often the CPU time and memory are read.
const INTERVAL: Duration = Duration::from_secs(1);

/// Decides, from readings taken at a steady interval, when to trim.
#[derive(Debug, Default)]
struct Trimmer {
    last: Option<u64>,
    /// CPU time spent since the last trim.
    worked: u64,
    /// Anonymous resident memory after the last trim (or at the first reading).
    base: Option<u64>,
    /// The process has trimmed since it started (the first quiet reading trims otherwise).
    trimmed_once: bool,
}

/// One reading of the process.
#[derive(Debug, Clone, Copy)]
struct Reading {
    /// User and system CPU time, in clock ticks (1/100 s).
    cpu: u64,
    /// Resident memory that is not a file's pages (the binary's code is), in bytes.
    anon: u64,
}

impl Trimmer {
    /// CPU time since the last trim that makes a trim worth it once the process is quiet.
    const WORK: u64 = 20;
    /// At most this much CPU time in one interval counts as quiet.
    const IDLE: u64 = 2;
    /// Growth of the anonymous memory since the last trim that makes a trim worth it while
    /// the process works.
    const GROWTH: u64 = 8 << 20;

    /// Takes a reading; true when memory should be trimmed now. After trimming, the caller
    /// reports what is left with [`Trimmer::trimmed`].
    fn observe(&mut self, now: Reading) -> bool {
        let base = *self.base.get_or_insert(now.anon);
        let Some(last) = self.last.replace(now.cpu) else { return false };
        let spent = now.cpu.saturating_sub(last);
        self.worked += spent;
        let quiet = spent <= Self::IDLE;
        let quiet_after_work = quiet && self.worked >= Self::WORK;
        // Starting (opening the database and reading what it needs, catching up on streams)
        // leaves freed memory behind however little CPU it took: 6.5 MiB after the correlator
        // read the filters of 10,000 requests in 0.1 s. The first quiet reading trims once.
        let started = quiet && !self.trimmed_once;
        let grown = now.anon >= base + Self::GROWTH;
        if quiet_after_work || started || grown {
            self.worked = 0;
            self.trimmed_once = true;
            return true;
        }
        false
    }

    /// The anonymous memory left by a trim: growth is counted from there.
    fn trimmed(&mut self, anon: u64) {
        self.base = Some(anon);
    }
}

/// Blocks at least this large are mapped on their own and unmapped when freed
/// ([`start_release_thread`]).
const MMAP_THRESHOLD: i32 = 128 << 10;

/// Starts the thread that trims during and after busy periods (glibc on Linux; elsewhere the
/// allocator has no such call and nothing starts).
///
/// It also fixes glibc's mmap threshold at its default (128 KiB). Left alone, glibc raises it
/// each time a mapped block is freed, up to 32 MiB, and a batch's large buffers (its rows as
/// JSON, the blobs beside them) then come from the arenas, where their pages stay after they
/// are freed until the next trim. Fixed, they go back to the system when freed: through runs
/// of 10,000 requests at 64 senders the process's peak (sampled every 200 ms) fell from 73–74
/// to 67–69 MiB and its memory right after the last request from 68–76 to 62–65 MiB; the rate
/// was perhaps 3 % lower, within this machine's noise (docs/performance.md, "Memory").
pub fn start_release_thread() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        fix_mmap_threshold();
        let spawned = std::thread::Builder::new().name("memory-release".into()).spawn(|| {
            let mut trimmer = Trimmer::default();
            loop {
                std::thread::sleep(INTERVAL);
                let Some(now) = read() else { return };
                if trimmer.observe(now) {
                    trim();
                    trimmer.trimmed(read().map_or(now.anon, |r| r.anon));
                }
            }
        });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the memory release thread");
        }
    }
}

/// This process's CPU time and anonymous resident memory.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn read() -> Option<Reading> {
    let cpu = parse_cpu_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let anon = parse_anon_bytes(&std::fs::read_to_string("/proc/self/status").ok()?)?;
    Some(Reading { cpu, anon })
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

/// `RssAnon` of `/proc/<pid>/status`: resident memory that is the process's own, not the
/// pages of its binary or other mapped files.
fn parse_anon_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("RssAnon:"))?;
    let kib: u64 = line.split_ascii_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fix_mmap_threshold() {
    // SAFETY: mallopt takes no pointer and only sets a parameter of the allocator.
    #[allow(unsafe_code)]
    if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) } != 1 {
        tracing::warn!("glibc's mmap threshold was not set; large blocks may stay resident until trimmed");
    }
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

    /// Bytes glibc has in blocks mapped on their own.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn mapped() -> i64 {
        // SAFETY: mallinfo2 takes no argument and only reads the allocator's counters.
        #[allow(unsafe_code)]
        let info = unsafe { libc::mallinfo2() };
        info.hblkhd as i64
    }

    /// A large block freed would raise glibc's threshold and keep the next ones in the
    /// arenas, resident after they are freed; with the threshold fixed they are mapped.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn large_blocks_are_mapped_even_after_a_larger_one_was_freed() {
        fix_mmap_threshold();
        drop(std::hint::black_box(vec![0u8; 4 << 20]));
        let before = mapped();
        let block = std::hint::black_box(vec![1u8; 1 << 20]);
        let grown = mapped() - before;
        drop(block);
        assert!(grown >= 1 << 20, "a 1 MiB block after a 4 MiB one was freed: {grown} bytes more mapped");
    }

    const MIB: u64 = 1 << 20;

    /// Readings of CPU time with the memory steady at 30 MiB.
    fn run(trimmer: &mut Trimmer, cpu: &[u64]) -> Vec<bool> {
        cpu.iter().map(|&cpu| trimmer.observe(Reading { cpu, anon: 30 * MIB })).collect()
    }

    #[test]
    fn trims_once_when_a_busy_period_ends() {
        let mut t = Trimmer::default();
        // Started, idle, then 3 busy seconds, then idle again.
        let trims = run(&mut t, &[100, 100, 101, 180, 260, 340, 341, 341, 342]);
        assert_eq!(trims, [false, true, false, false, false, false, true, false, false]);
    }

    #[test]
    fn trims_a_process_that_only_idles_once_after_it_started() {
        let mut t = Trimmer::default();
        let trims = run(&mut t, &(0..100).map(|i| i / 10).collect::<Vec<_>>());
        assert_eq!(trims.iter().filter(|t| **t).count(), 1);
        assert!(trims[1], "the first quiet reading");
    }

    #[test]
    fn never_trims_a_process_that_only_works_in_steady_memory() {
        let mut t = Trimmer::default();
        assert!(!run(&mut t, &(0..100).map(|i| i * 50).collect::<Vec<_>>()).contains(&true));
    }

    #[test]
    fn little_bits_of_work_add_up_to_one_trim() {
        let mut t = Trimmer::default();
        // 2 ticks per second is quiet, yet after 10 seconds it is worth a trim (besides the
        // one after start-up).
        let trims = run(&mut t, &(0..=12).map(|i| i * 2).collect::<Vec<_>>());
        let at: Vec<usize> = trims.iter().enumerate().filter(|(_, t)| **t).map(|(i, _)| i).collect();
        assert_eq!(at, [1, 11]);
    }

    #[test]
    fn trims_while_working_whenever_memory_grew_by_the_threshold_since_the_last_trim() {
        let mut t = Trimmer::default();
        let busy = |s: u64, anon_mib: u64| Reading { cpu: s * 100, anon: anon_mib * MIB };
        assert!(!t.observe(busy(0, 20)));
        assert!(!t.observe(busy(1, 27)), "7 MiB more is not enough");
        assert!(t.observe(busy(2, 28)), "8 MiB more is");
        // The trim gave back 6 MiB: growth now counts from 22 MiB.
        t.trimmed(22 * MIB);
        assert!(!t.observe(busy(3, 29)));
        assert!(t.observe(busy(4, 30)));
        // A trim that gave nothing back still moves the base, so it is not repeated every second.
        t.trimmed(30 * MIB);
        assert!(!t.observe(busy(5, 31)));
        assert!(!t.observe(busy(6, 37)));
        assert!(t.observe(busy(7, 38)));
    }

    #[test]
    fn a_trim_while_working_does_not_count_as_the_one_after_the_work() {
        let mut t = Trimmer::default();
        let at = |cpu: u64, anon_mib: u64| Reading { cpu, anon: anon_mib * MIB };
        assert!(!t.observe(at(0, 20)));
        assert!(t.observe(at(100, 30)), "grown while busy");
        t.trimmed(21 * MIB);
        assert!(!t.observe(at(101, 21)), "1 tick of work since the trim is not worth another");
    }

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (status (tr) x) S 1 4242 4242 0 -1 4194304 1500 0 0 0 731 269 0 0 20 0 9 0 123 456";
        assert_eq!(parse_cpu_ticks(stat), Some(1000));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn anonymous_memory_is_read_from_the_status_file() {
        let status = "Name:\tstatus-tracker\nVmRSS:\t   60000 kB\nRssAnon:\t   40960 kB\nRssFile:\t   19040 kB\n";
        assert_eq!(parse_anon_bytes(status), Some(40 * MIB));
        assert_eq!(parse_anon_bytes("Name:\tx\n"), None);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn this_process_can_be_read() {
        let r = read().expect("a reading of this process");
        assert!(r.anon > 0);
    }
}
