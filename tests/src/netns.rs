//! Real network partitions for multi-process tests: every node in its own network namespace
//! with one address (`10.78.0.<i>` on its loopback), and a veth link to every other node, so a
//! test can cut and heal links while the processes run. Needs root and `ip` (iproute2), as on
//! this project's CI machines; the namespaces go when the [`Mesh`] is dropped.

use std::process::Command;

/// `size` network namespaces, fully linked.
pub struct Mesh {
    prefix: String,
    size: usize,
}

/// Runs `ip` with `args`; panics naming the command and its error.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run `ip {}`: {e} (iproute2 is needed)", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed (network namespaces need root): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Mesh {
    /// Creates the namespaces and links; node numbers are 1-based.
    pub fn new(size: usize) -> Mesh {
        assert!((2..=200).contains(&size), "a mesh of 2 to 200 nodes");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mesh = Mesh {
            prefix: format!("swt{}-{nanos:x}", std::process::id()),
            size,
        };
        for i in 1..=size {
            let ns = mesh.namespace(i);
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/32", mesh.ip(i)),
                "dev",
                "lo",
            ]);
        }
        for i in 1..=size {
            for j in i + 1..=size {
                ip(&[
                    "link",
                    "add",
                    &link(j),
                    "netns",
                    &mesh.namespace(i),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &link(i),
                    "netns",
                    &mesh.namespace(j),
                ]);
                mesh.heal(i, j);
            }
        }
        mesh
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// The namespace of node `i`.
    pub fn namespace(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    /// The address of node `i`.
    pub fn ip(&self, i: usize) -> String {
        format!("10.78.0.{i}")
    }

    /// Cuts the link between nodes `i` and `j`: packets between them are lost, connections
    /// time out.
    pub fn cut(&self, i: usize, j: usize) {
        ip(&["-n", &self.namespace(i), "link", "set", &link(j), "down"]);
    }

    /// Restores the link between nodes `i` and `j` (and its routes, which went down with it).
    pub fn heal(&self, i: usize, j: usize) {
        for (a, b) in [(i, j), (j, i)] {
            let ns = self.namespace(a);
            ip(&["-n", &ns, "link", "set", &link(b), "up"]);
            ip(&[
                "-n",
                &ns,
                "route",
                "replace",
                &format!("{}/32", self.ip(b)),
                "dev",
                &link(b),
                "src",
                &self.ip(a),
            ]);
        }
    }

    /// Cuts every link of node `i`.
    pub fn isolate(&self, i: usize) {
        for j in (1..=self.size).filter(|&j| j != i) {
            self.cut(i, j);
        }
    }

    /// Heals every link of node `i`.
    pub fn rejoin(&self, i: usize) {
        for j in (1..=self.size).filter(|&j| j != i) {
            self.heal(i, j);
        }
    }
}

/// The name, in one node's namespace, of its link to node `j`.
fn link(j: usize) -> String {
    format!("to{j}")
}

impl Drop for Mesh {
    fn drop(&mut self) {
        // Deleting a namespace deletes its links; processes still in it keep it alive until
        // they exit (the nodes are dropped, and killed, before the mesh).
        for i in 1..=self.size {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.namespace(i)])
                .output();
        }
    }
}
