//! Softirq CPU time of the whole machine, from /proc/stat: where the
//! forwarding work of veth, TBF/IFB and natra's tcx programs is accounted.
use std::time::Duration;

/// Softirq time summed over all CPUs so far.
pub fn total() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").expect("read /proc/stat");
    let cpu = stat.lines().next().expect("/proc/stat is empty");
    // cpu user nice system idle iowait irq softirq ...
    let jiffies: u64 = cpu
        .split_whitespace()
        .nth(7)
        .and_then(|v| v.parse().ok())
        .expect("softirq column of /proc/stat");
    // /proc/stat counts in USER_HZ, which the kernel fixes at 100 on Linux.
    Duration::from_millis(jiffies * 10)
}
