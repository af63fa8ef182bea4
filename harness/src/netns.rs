//! Network namespaces as owned file descriptors, and running code inside them.
//!
//! A namespace is created with `unshare(CLONE_NEWNET)` on a short-lived thread, which keeps the fd
//! from `/proc/thread-self/ns/net`. When every fd (and socket) referring to it is closed, the
//! kernel frees the namespace and every interface in it: dropping a lab, a panic and SIGKILL all
//! clean up the same way. Code that must run inside a namespace runs on a fresh std thread that
//! `setns`es into it (never a tokio worker: those threads are reused).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use nix::sched::{setns, unshare, CloneFlags};

/// An owned network namespace. Cloning shares the fd.
#[derive(Clone, Debug)]
pub struct Netns {
    fd: Arc<NsFd>,
    inode: u64,
}

/// The fd behind every clone of a [`Netns`]; closing the last one releases the namespace, which
/// is noted so that leak checks can ask whether anything of this process still holds it.
#[derive(Debug)]
struct NsFd {
    fd: OwnedFd,
    inode: u64,
}

impl Drop for NsFd {
    fn drop(&mut self) {
        let mut released = RELEASED.lock().unwrap_or_else(|p| p.into_inner());
        if released.len() >= RELEASED_KEPT {
            released.pop_front();
        }
        released.push_back(self.inode);
    }
}

/// How many released namespaces are remembered (a long run makes many).
const RELEASED_KEPT: usize = 1 << 16;
static RELEASED: std::sync::Mutex<std::collections::VecDeque<u64>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

/// Namespaces whose last fd this process closed, oldest first (a thread of this process still
/// inside one of them keeps it alive: see `leakcheck::threads_in_released`).
pub fn released() -> Vec<u64> {
    let released = RELEASED.lock().unwrap_or_else(|p| p.into_inner());
    released.iter().copied().collect()
}

impl Netns {
    /// Creates a new anonymous namespace.
    pub fn create() -> io::Result<Netns> {
        Self::create_with(|| Ok(())).map(|(ns, ())| ns)
    }

    /// Creates a new anonymous namespace and runs `f` inside it, on the thread that created it.
    pub fn create_with<R, F>(f: F) -> io::Result<(Netns, R)>
    where
        R: Send,
        F: FnOnce() -> io::Result<R> + Send,
    {
        std::thread::scope(|s| {
            s.spawn(|| {
                unshare(CloneFlags::CLONE_NEWNET).map_err(|e| {
                    io::Error::new(
                        io::Error::from(e).kind(),
                        format!("cannot create a network namespace (unshare CLONE_NEWNET): {e}; netfault needs root or a user namespace"),
                    )
                })?;
                let ns = Netns::from_file(File::open("/proc/thread-self/ns/net")?)?;
                let r = f()?;
                Ok((ns, r))
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Like `create_with`, but on the calling thread, which stays in the new namespace: only for
    /// a thread that exits when its work is done (it creates namespace after namespace).
    pub fn create_here_with<R, F>(f: F) -> io::Result<(Netns, R)>
    where
        F: FnOnce() -> io::Result<R>,
    {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("cannot create a network namespace (unshare CLONE_NEWNET): {e}; netfault needs root or a user namespace"),
            )
        })?;
        let ns = Netns::from_file(File::open("/proc/thread-self/ns/net")?)?;
        let r = f()?;
        Ok((ns, r))
    }

    /// Whether a UDP socket is bound to `port` in this namespace (what `ss -uln` shows).
    pub fn udp_bound(&self, port: u16) -> io::Result<bool> {
        let text = self
            .run(|| std::fs::read_to_string("/proc/thread-self/net/udp"))
            .and_then(|r| r)?;
        let want = format!(":{port:04X}");
        Ok(text.lines().skip(1).any(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|local| local.ends_with(&want))
        }))
    }

    /// Opens a namespace by path: a pin under /run/netns, or /proc/PID/ns/net.
    pub fn open(path: &Path) -> io::Result<Netns> {
        Self::from_file(File::open(path)?)
    }

    fn from_file(f: File) -> io::Result<Netns> {
        let inode = f.metadata()?.ino();
        Ok(Netns {
            fd: Arc::new(NsFd {
                fd: OwnedFd::from(f),
                inode,
            }),
            inode,
        })
    }

    /// The namespace's inode number: its identity on this machine (as in `net:[INODE]`).
    pub fn inode(&self) -> u64 {
        self.inode
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.fd.as_fd()
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.fd.as_raw_fd()
    }

    /// Runs `f` on a fresh thread inside this namespace and returns its result. Blocks.
    pub fn run<R, F>(&self, f: F) -> io::Result<R>
    where
        R: Send,
        F: FnOnce() -> R + Send,
    {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter()?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Runs `f` inside this namespace without blocking the async runtime.
    pub async fn run_async<R, F>(&self, f: F) -> io::Result<R>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let ns = self.clone();
        std::thread::Builder::new()
            .name("netfault-ns".into())
            .spawn(move || {
                let r = ns.enter().map(|()| f());
                let _ = tx.send(r);
            })?;
        rx.await
            .map_err(|_| io::Error::other("a thread running inside a lab namespace panicked"))?
    }

    /// Starts `cmd` inside this namespace, tied to this process: the kernel SIGKILLs it when this
    /// process dies, however it dies (a long-lived helper such as `nft monitor` would otherwise
    /// outlive a SIGKILLed netfault). The death signal follows the thread that forks, so one
    /// thread that lasts as long as the process forks every tied child.
    pub fn spawn_tied(&self, mut cmd: std::process::Command) -> io::Result<std::process::Child> {
        use std::os::unix::process::CommandExt;
        use std::sync::mpsc;
        type Job = (
            std::process::Command,
            mpsc::Sender<io::Result<std::process::Child>>,
        );
        static SPAWNER: std::sync::OnceLock<std::sync::Mutex<mpsc::Sender<Job>>> =
            std::sync::OnceLock::new();
        // The first caller may sit inside a lab namespace: the spawner starts at home, or it
        // would hold that lab's namespace for the rest of the process.
        let spawner = SPAWNER.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            spawn_home("netfault-spawner", move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                Ok(())
            })
            .expect("spawner thread");
            std::sync::Mutex::new(tx)
        });
        let fd = self.raw_fd();
        let me = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe syscalls between fork and exec; `fd` stays open until
        // the spawner answers (this call holds `self`).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                    || libc::getppid() != me
                    || libc::setns(fd, libc::CLONE_NEWNET) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (tx, rx) = mpsc::channel();
        spawner
            .lock()
            .map_err(|_| io::Error::other("the spawner thread is gone"))?
            .send((cmd, tx))
            .map_err(|_| io::Error::other("the spawner thread is gone"))?;
        rx.recv()
            .map_err(|_| io::Error::other("the spawner thread is gone"))?
    }

    /// Starts a long-lived thread inside this namespace (a packet capture, say). The thread holds
    /// the namespace while it runs: join it before the lab goes away.
    pub fn spawn_inside<R, F>(
        &self,
        name: &str,
        f: F,
    ) -> io::Result<std::thread::JoinHandle<io::Result<R>>>
    where
        R: Send + 'static,
        F: FnOnce() -> io::Result<R> + Send + 'static,
    {
        let ns = self.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                ns.enter()?;
                drop(ns);
                f()
            })
    }

    /// Moves the calling thread into this namespace. Only for threads netfault created itself.
    fn enter(&self) -> io::Result<()> {
        setns(self.fd.fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
    }

    /// Pins the namespace at `path` (a bind mount, like `ip netns add`), so it outlives the process.
    pub fn pin(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            ensure_netns_dir(dir)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        let src = format!("/proc/self/fd/{}", self.fd.fd.as_raw_fd());
        let r = nix::mount::mount(
            Some(src.as_str()),
            path,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        );
        if let Err(e) = r {
            let _ = std::fs::remove_file(path);
            return Err(io::Error::new(
                io::Error::from(e).kind(),
                format!("cannot pin the namespace at {}: {e}", path.display()),
            ));
        }
        Ok(())
    }
}

/// The inode of the process's own network namespace: the main thread's, which never enters a lab (only
/// threads netfault creates for the purpose do). `/proc/self` names the main thread even when a
/// later thread reads it.
/// It is not held open: an fd of it would show among the namespaces the process holds.
pub fn home_inode() -> io::Result<u64> {
    Ok(std::fs::metadata("/proc/self/ns/net")?.ino())
}

/// The inode of the calling thread's network namespace.
pub fn current_inode() -> io::Result<u64> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino())
}

/// Moves the calling thread back to the process's own namespace if it is elsewhere. Every thread
/// that outlives a lab step calls this first: a thread starts in its creator's namespace, and a
/// long-lived one created from inside a lab would keep that lab's namespace alive.
pub fn return_home() -> io::Result<()> {
    if current_inode()? != home_inode()? {
        // A bare fd, not a `Netns`: closing it releases nothing.
        let home = File::open("/proc/self/ns/net")?;
        setns(home.as_fd(), CloneFlags::CLONE_NEWNET)?;
    }
    Ok(())
}

/// Starts a long-lived thread (a spawner, a server loop, a tracer) in the process's own
/// namespace, wherever the caller is.
pub fn spawn_home<R, F>(name: &str, f: F) -> io::Result<std::thread::JoinHandle<io::Result<R>>>
where
    R: Send + 'static,
    F: FnOnce() -> io::Result<R> + Send + 'static,
{
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            return_home().map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("returning to the process's own network namespace: {e}"),
                )
            })?;
            f()
        })
}

/// Removes a pin made by [`Netns::pin`] (or `ip netns add`): detach the bind mount, unlink.
pub fn unpin(path: &Path) -> io::Result<()> {
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes /run/netns a shared mount point as `ip netns` does, so pins show in every mount namespace
/// that shares it.
fn ensure_netns_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if dir != Path::new("/run/netns") {
        return Ok(());
    }
    use nix::mount::{mount, MsFlags};
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    if mount(None::<&str>, dir, None::<&str>, shared, None::<&str>).is_err() {
        // Not a mount point yet: bind it onto itself first (what iproute2 does).
        mount(
            Some(dir),
            dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(io::Error::from)?;
        mount(None::<&str>, dir, None::<&str>, shared, None::<&str>).map_err(io::Error::from)?;
    }
    Ok(())
}

/// Reads a sysctl of the namespace the calling thread is in (call inside [`Netns::run`]).
pub fn read_sysctl(key: &str) -> io::Result<String> {
    let path = sysctl_path(key);
    std::fs::read_to_string(&path).map(|s| s.trim().to_string())
}

/// Writes a sysctl of the namespace the calling thread is in (call inside [`Netns::run`]).
pub fn write_sysctl(key: &str, value: &str) -> io::Result<()> {
    let path = sysctl_path(key);
    std::fs::write(&path, value)
        .map_err(|e| io::Error::new(e.kind(), format!("{key} = {value}: {e}")))
}

/// `net.ipv4.ip_forward` → `/proc/sys/net/ipv4/ip_forward`. Interface names may contain dots, so
/// keys for `conf.<ifname>.*` must be written with `/` between the parts that contain them.
pub fn sysctl_path(key: &str) -> String {
    if key.contains('/') {
        format!("/proc/sys/{key}")
    } else {
        format!("/proc/sys/{}", key.replace('.', "/"))
    }
}

/// Whether this process can create network namespaces at all (root or a user namespace).
pub fn can_create_namespaces() -> Result<(), String> {
    Netns::create().map(|_| ()).map_err(|e| e.to_string())
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_namespace_is_not_ours_and_has_its_own_sysctls() {
        let me = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
        let (ns, inside) =
            Netns::create_with(|| Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino()))
                .unwrap();
        assert_ne!(ns.inode(), me);
        assert_eq!(ns.inode(), inside);
        let seen = ns
            .run(|| std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino())
            .unwrap();
        assert_eq!(seen, ns.inode());
        ns.run(|| write_sysctl("net.ipv4.ip_forward", "1"))
            .unwrap()
            .unwrap();
        assert_eq!(
            ns.run(|| read_sysctl("net.ipv4.ip_forward"))
                .unwrap()
                .unwrap(),
            "1"
        );
        // The caller's namespace is untouched.
        assert_eq!(
            std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino(),
            me
        );
    }

    #[test]
    fn sysctl_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward"),
            "/proc/sys/net/ipv4/ip_forward"
        );
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.1/forwarding"),
            "/proc/sys/net/ipv4/conf/eth0.1/forwarding"
        );
    }
}
