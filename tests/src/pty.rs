//! A pseudo-terminal for tests of what processes do with their controlling
//! terminal: who gets the keyboard (the foreground process group), and
//! whether a process that reads from the terminal may (or is stopped with
//! SIGTTIN).
//!
//! [`Terminal::spawn`] starts a command as the leader of a new session whose
//! controlling terminal is the pty's slave side, on its stdin, stdout and
//! stderr, as a terminal emulator starts a login shell. The test holds the
//! master side: it types with [`Terminal::send`], reads the screen with
//! [`Terminal::wait_output`], and asks the kernel for the terminal's
//! foreground group with [`Terminal::foreground_group`].

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::pty::openpty;
use nix::unistd::tcgetpgrp;

use crate::procs::ChildGuard;

/// A command running in a session of its own on a new pty; killed (with its
/// session's foreground group hung up) when dropped.
#[derive(Debug)]
pub struct Terminal {
    /// Dropped first: closing the master hangs the terminal up.
    master: File,
    guard: ChildGuard,
    /// Everything the session wrote so far (with the terminal's echo of
    /// what was typed, and `\r\n` line ends).
    output: Vec<u8>,
}

impl Terminal {
    /// Starts `cmd` as a session leader with the pty's slave side as its
    /// controlling terminal and its stdin, stdout and stderr.
    pub fn spawn(cmd: &mut Command) -> Terminal {
        let pty = openpty(None, None).expect("openpty");
        // Neither side may leak into the command (or into other tests'
        // processes) except as the dup2'ed stdio below.
        close_on_exec(&pty.master);
        close_on_exec(&pty.slave);
        let slave = pty.slave.as_raw_fd();
        // SAFETY: setsid, dup2 and ioctl are async-signal-safe; std has set
        // up stdio before pre_exec closures run, so the dup2s replace it.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                for fd in 0..=2 {
                    if libc::dup2(slave, fd) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let guard = ChildGuard::spawn(cmd.stdout(Stdio::null()).stderr(Stdio::null()));
        // Only the session keeps the slave open: once it is all gone, the
        // master reads EOF (EIO).
        drop(pty.slave);
        Terminal {
            master: File::from(pty.master),
            guard,
            output: Vec::new(),
        }
    }

    /// The session leader's pid (also its session and process group id).
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    pub fn guard_mut(&mut self) -> &mut ChildGuard {
        &mut self.guard
    }

    /// Types `text` (a line needs its `\n`).
    pub fn send(&mut self, text: &str) {
        self.master
            .write_all(text.as_bytes())
            .expect("write to the pty master");
    }

    /// Reads until the output contains `needle` (true) or `timeout` passes
    /// or the session has closed the terminal (false).
    pub fn wait_output(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            if self.output().contains(needle) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let wait = PollTimeout::try_from(left.min(Duration::from_millis(100)))
                .expect("a short timeout");
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, wait) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => panic!("poll the pty master: {e}"),
            }
            match self.master.read(&mut buf) {
                Ok(0) => return self.output().contains(needle),
                Ok(n) => self.output.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // EIO: every process has closed the slave side.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => {
                    return self.output().contains(needle);
                }
                Err(e) => panic!("read the pty master: {e}"),
            }
        }
    }

    /// Everything read from the terminal so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    /// The terminal's foreground process group (TIOCGPGRP on the master
    /// side, which Linux answers for the slave); `None` if there is none.
    pub fn foreground_group(&self) -> Option<u32> {
        tcgetpgrp(self.master.as_fd())
            .ok()
            .map(|pgrp| pgrp.as_raw() as u32)
    }
}

fn close_on_exec(fd: &OwnedFd) {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).expect("set FD_CLOEXEC");
}
