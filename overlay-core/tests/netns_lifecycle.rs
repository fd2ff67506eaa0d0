//! Named network namespaces: create, list, delete, run code inside. Needs root.

use std::os::unix::fs::MetadataExt;

use overlay_core::dataplane::Dataplane;
use overlay_core::netns::{self, NetnsError, NetnsGuard};

mod common;
use common::{run, unique};

fn ns_inode(path: &str) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

#[test]
fn create_list_delete() {
    let name = unique("ns");
    assert!(!netns::exists(&name));
    {
        let guard = NetnsGuard::new(&name).expect("create");
        assert_eq!(guard.name(), name);
        assert_eq!(guard.path(), netns::path(&name));
        assert!(netns::exists(&name));
        assert!(netns::list().unwrap().contains(&name));

        // Witness: iproute2 sees it, and lo is up inside.
        let (ok, out) = run(&["ip", "netns", "list"]);
        assert!(ok && out.contains(&name), "{out}");
        let (ok, out) = run(&["ip", "-n", &name, "link", "show", "lo"]);
        assert!(ok && out.contains(",UP"), "{out}");
        let (ok, out) = run(&["ip", "-n", &name, "addr", "show", "lo"]);
        assert!(ok && out.contains("127.0.0.1/8"), "{out}");

        // A second create with the same name fails and leaves the first intact.
        match netns::create(&name) {
            Err(NetnsError::AlreadyExists { name: n }) => assert_eq!(n, name),
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
        assert!(netns::exists(&name));
        let (ok, _) = run(&["ip", "-n", &name, "link", "show", "lo"]);
        assert!(ok);
    }
    // The guard deleted it.
    assert!(!netns::exists(&name));
    assert!(!netns::list().unwrap().contains(&name));
    let (_, out) = run(&["ip", "netns", "list"]);
    assert!(!out.contains(&name), "{out}");
    // Deleting an absent namespace is fine.
    netns::delete(&name).unwrap();
}

#[test]
fn create_and_delete_without_guard() {
    let name = unique("raw");
    let path = netns::create(&name).unwrap();
    assert_eq!(path, netns::path(&name));
    assert!(netns::exists(&name));
    netns::delete(&name).unwrap();
    assert!(!netns::exists(&name));
    netns::delete(&name).unwrap();
}

#[test]
fn invalid_names_are_refused() {
    for bad in ["", "..", "a/b"] {
        assert!(matches!(
            netns::create(bad),
            Err(NetnsError::InvalidName { .. })
        ));
    }
}

#[test]
fn run_in_and_block_on_in_use_the_namespace() {
    let guard = NetnsGuard::new(&unique("run")).unwrap();
    let root_ino = ns_inode("/proc/thread-self/ns/net");
    let target_ino = ns_inode(guard.path().to_str().unwrap());
    assert_ne!(root_ino, target_ino);

    let inside = netns::run_in(guard.path(), || ns_inode("/proc/thread-self/ns/net")).unwrap();
    assert_eq!(inside, target_ino);
    // The caller's thread did not move.
    assert_eq!(ns_inode("/proc/thread-self/ns/net"), root_ino);

    let names = netns::block_on_in(guard.path(), || async {
        let dp = Dataplane::connect().unwrap();
        dp.links()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect::<Vec<_>>()
    })
    .unwrap();
    assert_eq!(names, vec!["lo".to_string()]);

    // enter() moves the calling thread only: do it on a throwaway thread.
    let path = guard.path().to_path_buf();
    let entered = std::thread::spawn(move || {
        netns::enter(&path).unwrap();
        ns_inode("/proc/thread-self/ns/net")
    })
    .join()
    .unwrap();
    assert_eq!(entered, target_ino);
    assert_eq!(ns_inode("/proc/thread-self/ns/net"), root_ino);

    // A missing namespace is a clear error.
    let missing = netns::path(&unique("missing"));
    let err = netns::run_in(&missing, || ()).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains(missing.to_str().unwrap()), "{err}");
}

#[test]
fn block_on_in_works_from_inside_a_runtime() {
    let guard = NetnsGuard::new(&unique("rt")).unwrap();
    let path = guard.path().to_path_buf();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let n = rt.block_on(async move {
        netns::block_on_in(&path, || async {
            Dataplane::connect().unwrap().links().await.unwrap().len()
        })
        .unwrap()
    });
    assert_eq!(n, 1);
}
