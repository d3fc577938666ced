//! For tests of what happens when the disk under the database fills up
//! (feature `testing`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A small tmpfs mounted on `dir`, unmounted on drop.
#[derive(Debug)]
pub struct SmallDisk(PathBuf);

impl SmallDisk {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it, e.g. `4m`)
    /// on `dir`, an existing empty directory; `None` where mounting is not
    /// allowed (not root), and the test should say it skipped.
    pub fn mount(dir: &Path, size: &str) -> Option<Self> {
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .is_ok_and(|out| out.status.success());
        mounted.then(|| Self(dir.to_owned()))
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Fills the disk with the file `name` until nothing more fits; removing
    /// the file frees the space again.
    ///
    /// # Panics
    /// When the file cannot be created.
    pub fn fill(&self, name: &str) -> PathBuf {
        let path = self.0.join(name);
        let mut ballast = std::fs::File::create(&path).expect("ballast file");
        let block = vec![0u8; 64 * 1024];
        while ballast.write_all(&block).is_ok() {}
        // The last bytes that fit, one at a time.
        while ballast.write_all(&[0]).is_ok() {}
        let _ = ballast.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: the store's connection threads may still hold files.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
