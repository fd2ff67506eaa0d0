//! Builds the C eBPF programs in `bpf/` with Debian's clang (`-target bpf -g -O2`, libbpf-dev
//! headers) into `$OUT_DIR/<name>.o`, every build from source: no object is committed.
//! `src/objects.rs` embeds them. Missing tools fail the build with the Debian package to
//! install (`cargo xtask setup` installs them all).

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

/// The programs, one source per attach point.
const PROGRAMS: &[&str] = &["lxc", "sock", "host", "overlay_fast"];

/// Compilers tried in order (`VXMESH_CLANG` overrides): Debian 12's clang-22 package, then
/// whatever `clang` is.
const CLANGS: &[&str] = &["clang-22", "clang"];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let bpf = manifest.join("bpf");
    println!("cargo:rerun-if-env-changed=VXMESH_CLANG");
    println!("cargo:rerun-if-changed={}", bpf.display());
    for entry in walk(&bpf) {
        println!("cargo:rerun-if-changed={}", entry.display());
    }

    let clang = find_clang();
    require(
        Path::new("/usr/include/bpf/bpf_helpers.h"),
        "libbpf-dev (the BPF helper headers)",
    );
    require(
        Path::new("/usr/include/linux/bpf.h"),
        "linux-libc-dev (the kernel's UAPI headers)",
    );
    require(
        Path::new("/usr/include/x86_64-linux-gnu/asm/types.h"),
        "linux-libc-dev (asm/types.h)",
    );

    for name in PROGRAMS {
        let src = bpf.join(format!("{name}.c"));
        let obj = out.join(format!("{name}.o"));
        let output = Command::new(&clang)
            .args(["-target", "bpf", "-g", "-O2", "-Wall", "-Werror"])
            .arg("-I/usr/include/x86_64-linux-gnu")
            .arg(format!("-I{}", bpf.join("include").display()))
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "running {clang} on {}: {e} (install the Debian package clang-22: \
                     `cargo xtask setup`)",
                    src.display()
                )
            });
        if !output.status.success() {
            panic!(
                "{clang} failed to compile {}:\n{}{}",
                src.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

fn find_clang() -> String {
    if let Some(c) = env::var_os("VXMESH_CLANG") {
        return c.to_string_lossy().into_owned();
    }
    for c in CLANGS {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return (*c).to_string();
        }
    }
    panic!(
        "no clang found (tried {}): install the Debian package clang-22 \
         (`cargo xtask setup` installs it with libbpf-dev and bpftool), \
         or point VXMESH_CLANG at a clang that targets bpf",
        CLANGS.join(", ")
    );
}

fn require(path: &Path, package: &str) {
    if !path.exists() {
        panic!(
            "{} not found: install the Debian package {package} (`cargo xtask setup` does)",
            path.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                files.extend(walk(&p));
            } else {
                files.push(p);
            }
        }
    }
    files
}
