//! pidfds: a handle on one process that a later process reusing its pid can
//! never stand for. Owner deaths (`watch`) and signals (`reaper::signal`)
//! both go through one; this leaf module gives them the two system calls as
//! safe functions (rustix's), in the types the rest of the daemon uses.
//!
//! Linux 5.3 and later; on older kernels both calls fail with ENOSYS and the
//! callers fall back (polling for deaths, skipping a signal).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::sys::signal::Signal;
use rustix::process::{Pid, PidfdFlags};

/// Opens a pidfd for `pid`: ESRCH if no such process exists now, EINVAL
/// for pid 0 or a pid beyond the kernel's range.
pub fn open(pid: u32) -> io::Result<OwnedFd> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    // No PIDFD_NONBLOCK: it needs Linux 5.10, and nothing reads the fd;
    // poll and epoll readiness (the process exited) is all that is used.
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// Sends `signal` to the process behind `pidfd`: ESRCH once it has exited,
/// even if its pid names another process by now.
pub fn send_signal(pidfd: impl AsFd, signal: Signal) -> io::Result<()> {
    let signal = rustix::process::Signal::from_named_raw(signal as i32)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    Ok(rustix::process::pidfd_send_signal(pidfd, signal)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    #[test]
    fn a_signal_through_a_pidfd_reaches_its_process() {
        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        let fd = open(child.id()).unwrap();
        send_signal(&fd, Signal::SIGTERM).unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn a_pidfd_outlives_its_process_and_signals_nothing() {
        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        let fd = open(child.id()).unwrap();
        child.kill().unwrap();
        // Reaped: the pid is free for the kernel to hand out again.
        child.wait().unwrap();
        let err = send_signal(&fd, Signal::SIGKILL).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH), "{err}");
    }

    #[test]
    fn pids_that_name_no_process_get_no_pidfd() {
        // pid_max itself is one past the largest pid the kernel hands out.
        let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let err = open(pid_max).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH), "{err}");
        for pid in [0, u32::MAX] {
            let err = open(pid).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "pid {pid}: {err}");
        }
    }
}
