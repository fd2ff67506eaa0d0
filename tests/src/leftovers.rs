//! What a lab left on the machine after `lab down` (or a dropped embedded lab): the check
//! the lab life-cycle tests end with.

/// Everything of lab `prefix` that still exists on the machine.
pub fn leftovers(prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let tag = format!("{prefix}-");
    // Namespaces, and the containers' resolv.conf files (/etc/netns/NAMESPACE/).
    for (dir, what) in [("/run/netns", "namespace"), ("/etc/netns", "netns files")] {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&tag) {
                found.push(format!("{what} {name}"));
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in mounts
        .lines()
        .filter(|l| l.contains(&format!("/run/netns/{tag}")))
    {
        found.push(format!("mount {line}"));
    }
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(p.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(" agent ") && cmd.contains(&format!("--netns {tag}")) {
                found.push(format!("process {cmd}"));
            }
        }
    }
    for dir in [
        format!("/run/vxmesh/lab/{prefix}"),
        format!("/sys/fs/cgroup/unified/vxmesh-lab-{prefix}"),
        format!("/sys/fs/bpf/vxmesh-lab-{prefix}"),
    ] {
        if std::path::Path::new(&dir).exists() {
            found.push(format!("directory {dir}"));
        }
    }
    found
}
