//! Hostile disks for the store and the file sink: a small tmpfs (read-only,
//! full) where `mount` is allowed, `chattr +i` where root can set it, and
//! `RLIMIT_FSIZE` on the daemon (a full disk without root).
//!
//! `ORDERWATCH_TEST_NO_MOUNT=1` and `ORDERWATCH_TEST_NO_CHATTR=1` force the
//! fallbacks; with `ORDERWATCH_REQUIRE_ROOT` set as well, a test that then
//! has no way to make its fault fails instead of skipping.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Daemon, is_root};

fn quiet(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A tmpfs mounted on a directory for one test, unmounted on drop.
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs with `options` (e.g. "size=512k" or "ro"); `None`
    /// where mounting is not allowed.
    pub fn mount(dir: &Path, options: &str) -> Option<Tmpfs> {
        if std::env::var_os("ORDERWATCH_TEST_NO_MOUNT").is_some() {
            return None;
        }
        std::fs::create_dir_all(dir).expect("mount point");
        let mounted = quiet(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", options, "tmpfs"])
                .arg(dir),
        );
        mounted.then(|| Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    pub fn remount(&self, options: &str) {
        let ok = quiet(
            Command::new("mount")
                .args(["-o", &format!("remount,{options}")])
                .arg(&self.dir),
        );
        assert!(ok, "cannot remount {} with {options}", self.dir.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        quiet(Command::new("umount").arg("-l").arg(&self.dir));
    }
}

/// `chattr +i` on some paths, undone on drop (so the temp dir can go).
pub struct Immutable {
    paths: Vec<PathBuf>,
}

impl Immutable {
    /// `None` where the attribute cannot be set (not root, or a file
    /// system without it).
    pub fn set(paths: &[PathBuf]) -> Option<Immutable> {
        if !is_root() || std::env::var_os("ORDERWATCH_TEST_NO_CHATTR").is_some() {
            return None;
        }
        let ok = quiet(Command::new("chattr").arg("+i").args(paths));
        let guard = Immutable {
            paths: paths.to_vec(),
        };
        if ok { Some(guard) } else { None }
    }

    pub fn release(&mut self) {
        if !self.paths.is_empty() {
            quiet(Command::new("chattr").arg("-i").args(&self.paths));
            self.paths.clear();
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        self.release();
    }
}

/// How a directory's disk is made full: a tiny tmpfs, or `RLIMIT_FSIZE` on
/// the daemon (any file it writes stops growing at the limit).
pub enum FullDisk {
    Tmpfs(Tmpfs),
    FileSizeLimit(u64),
}

impl FullDisk {
    pub fn new(dir: &Path, bytes: u64) -> FullDisk {
        match Tmpfs::mount(dir, &format!("size={}k", bytes / 1024)) {
            Some(t) => FullDisk::Tmpfs(t),
            None => {
                std::fs::create_dir_all(dir).expect("dir");
                FullDisk::FileSizeLimit(bytes)
            }
        }
    }

    /// Applies the limit to a daemon about to be spawned.
    pub fn apply(&self, cmd: &mut Command) {
        if let FullDisk::FileSizeLimit(bytes) = *self {
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    // Over the limit a write fails with EFBIG instead of
                    // killing the process (an ignored signal survives exec).
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    let mut lim = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    lim.rlim_cur = bytes.min(lim.rlim_max);
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
    }

    /// Makes room: a bigger tmpfs, or no limit for the running daemon.
    pub fn grow(&self, daemon: &Daemon) {
        match self {
            FullDisk::Tmpfs(t) => t.remount("size=256m"),
            FullDisk::FileSizeLimit(_) => lift_file_size_limit(daemon.pid()),
        }
    }

    /// What the daemon's message says about the cause.
    pub fn cause(&self) -> &'static str {
        match self {
            FullDisk::Tmpfs(_) => "the disk is full; free space",
            // SQLite reports EFBIG as an I/O error, not as a full disk.
            FullDisk::FileSizeLimit(_) => "disk I/O error",
        }
    }
}

fn lift_file_size_limit(pid: i32) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointers to rlimit structs.
    unsafe {
        assert_eq!(
            libc::prlimit(pid, libc::RLIMIT_FSIZE, std::ptr::null(), &mut lim),
            0
        );
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(
            libc::prlimit(pid, libc::RLIMIT_FSIZE, &lim, std::ptr::null_mut()),
            0,
            "{}",
            std::io::Error::last_os_error()
        );
    }
}

/// Fills the file system of `path` until a write fails.
pub fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).expect("filler");
    let block = vec![0u8; 4096];
    while f.write_all(&block).and_then(|()| f.sync_data()).is_ok() {}
}

/// Writes whole JSON lines of old events to `path` until it holds `bytes`.
pub fn prefill(path: &Path, bytes: u64) {
    let mut text = String::new();
    let mut n = 0u64;
    while (text.len() as u64) < bytes {
        text.push_str(&format!(
            "{{\"id\":\"0:old-{n}\",\"pad\":\"{}\"}}\n",
            "x".repeat(200)
        ));
        n += 1;
    }
    std::fs::write(path, text).expect("prefill");
}
