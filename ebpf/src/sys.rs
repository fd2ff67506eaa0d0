//! The few bpf(2) commands aya 0.14 does not expose: BPF_OBJ_GET of a pinned link,
//! BPF_LINK_UPDATE (swap the program behind an existing link, used on reload), and
//! BPF_MAP_UPDATE_BATCH (write a whole Maglev table in one call) and BPF_MAP_LOOKUP_BATCH
//! (read one back in one call). Layouts from
//! `union bpf_attr` in include/uapi/linux/bpf.h.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;
const BPF_LINK_UPDATE: libc::c_long = 29;

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: attr is a #[repr(C)] prefix of union bpf_attr for cmd, and its size is passed;
    // the kernel reads (and for some commands writes) only that many bytes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

#[repr(C)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

/// Opens the object pinned at `path` (BPF_OBJ_GET).
pub(crate) fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr = ObjGetAttr {
        pathname: c.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
        path_fd: 0,
        _pad: 0,
    };
    let fd = bpf(BPF_OBJ_GET, &mut attr)?;
    // SAFETY: BPF_OBJ_GET returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[repr(C)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// Makes the link `link` run `prog` from now on (BPF_LINK_UPDATE), atomically.
pub(crate) fn link_update(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = LinkUpdateAttr {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: prog.as_raw_fd() as u32,
        flags: 0,
        old_prog_fd: 0,
    };
    bpf(BPF_LINK_UPDATE, &mut attr).map(|_| ())
}

#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Writes `values[i]` at key `i` for every i of an ARRAY map of u32 (BPF_MAP_UPDATE_BATCH).
pub(crate) fn array_update_all_u32(map: BorrowedFd<'_>, values: &[u32]) -> io::Result<()> {
    let keys: Vec<u32> = (0..values.len() as u32).collect();
    update_batch_u32(map, &keys, values)
}

/// Reads keys `0..len` of an ARRAY map of u32 in one BPF_MAP_LOOKUP_BATCH (an array's batch
/// token is a u32 key). Errors when the array holds fewer than `len` entries.
pub(crate) fn array_lookup_all_u32(map: BorrowedFd<'_>, len: u32) -> io::Result<Vec<u32>> {
    let mut keys = vec![0u32; len as usize];
    let mut values = vec![0u32; len as usize];
    if len == 0 {
        return Ok(values);
    }
    let mut token: u32 = 0;
    let mut attr = BatchAttr {
        in_batch: 0,
        out_batch: &mut token as *mut u32 as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: len,
        map_fd: map.as_raw_fd() as u32,
        elem_flags: 0,
        flags: 0,
    };
    match bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) {
        Ok(_) => {}
        // ENOENT: the walk reached the end of the array; `count` says how far it got.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    if attr.count != len || keys.iter().enumerate().any(|(i, &k)| k != i as u32) {
        return Err(io::Error::other(format!(
            "BPF_MAP_LOOKUP_BATCH read {} of {len} entries",
            attr.count
        )));
    }
    Ok(values)
}

/// Writes `keys[i]` → `values[i]` into a map whose keys and values are both 4 bytes (a u32
/// array, or a map of maps whose values are map fds), in one BPF_MAP_UPDATE_BATCH. For a map
/// of maps the kernel waits for running programs (synchronize_rcu) once per batch instead of
/// once per update (kernel/bpf/syscall.c, maybe_wait_bpf_programs).
pub(crate) fn update_batch_u32(
    map: BorrowedFd<'_>,
    keys: &[u32],
    values: &[u32],
) -> io::Result<()> {
    batch(
        BPF_MAP_UPDATE_BATCH,
        "BPF_MAP_UPDATE_BATCH",
        map,
        keys,
        Some(values),
    )
}

/// Removes `keys` (4 bytes each) from a map in one BPF_MAP_DELETE_BATCH. Every key must be
/// present (ENOENT otherwise, after removing those before it).
pub(crate) fn delete_batch_u32(map: BorrowedFd<'_>, keys: &[u32]) -> io::Result<()> {
    batch(
        BPF_MAP_DELETE_BATCH,
        "BPF_MAP_DELETE_BATCH",
        map,
        keys,
        None,
    )
}

fn batch(
    cmd: libc::c_long,
    name: &str,
    map: BorrowedFd<'_>,
    keys: &[u32],
    values: Option<&[u32]>,
) -> io::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut attr = BatchAttr {
        in_batch: 0,
        out_batch: 0,
        keys: keys.as_ptr() as u64,
        values: values.map_or(0, |v| v.as_ptr() as u64),
        count: keys.len() as u32,
        map_fd: map.as_raw_fd() as u32,
        elem_flags: 0,
        flags: 0,
    };
    bpf(cmd, &mut attr)?;
    if attr.count as usize != keys.len() {
        return Err(io::Error::other(format!(
            "{name} did {} of {} entries",
            attr.count,
            keys.len()
        )));
    }
    Ok(())
}
