//! The Rust mirrors (`src/maps/types.rs`) against the compiled objects' BTF: every struct
//! of `vxmesh_maps.h` must have the same size and the same member offsets in both objects.
//! The .BTF section is parsed here by hand (format: Documentation/bpf/btf.rst), so the test
//! does not lean on the loader it checks.

use std::collections::BTreeMap;

use object::{Object, ObjectSection};
use vxmesh_ebpf::fast::FAST_LAYOUTS;
use vxmesh_ebpf::{Layout, FAST_OBJ, HOST_OBJ, LAYOUTS, LXC_OBJ, SOCK_OBJ};

const BTF_KIND_STRUCT: u32 = 4;

/// A struct as BTF describes it: size in bytes, members as (name, bit offset).
#[derive(Debug)]
struct BtfStruct {
    size: u32,
    members: Vec<(String, u32)>,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn cstr(strings: &[u8], off: u32) -> String {
    let s = &strings[off as usize..];
    let end = s.iter().position(|&c| c == 0).unwrap();
    String::from_utf8(s[..end].to_vec()).unwrap()
}

/// Every named struct of the .BTF section of `elf`.
fn btf_structs(elf: &[u8]) -> BTreeMap<String, BtfStruct> {
    let file = object::File::parse(elf).expect("ELF");
    let btf = file
        .section_by_name(".BTF")
        .expect(".BTF section (built with -g)")
        .data()
        .unwrap();
    assert_eq!(u16::from_le_bytes([btf[0], btf[1]]), 0xeb9f, "BTF magic");
    let hdr_len = u32_at(btf, 4) as usize;
    let (type_off, type_len) = (u32_at(btf, 8) as usize, u32_at(btf, 12) as usize);
    let (str_off, str_len) = (u32_at(btf, 16) as usize, u32_at(btf, 20) as usize);
    let types = &btf[hdr_len + type_off..hdr_len + type_off + type_len];
    let strings = &btf[hdr_len + str_off..hdr_len + str_off + str_len];

    let mut out = BTreeMap::new();
    let mut at = 0;
    while at < types.len() {
        let name_off = u32_at(types, at);
        let info = u32_at(types, at + 4);
        let size = u32_at(types, at + 8);
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let kind_flag = info >> 31;
        at += 12;
        // Bytes that follow struct btf_type, per kind.
        let extra = match kind {
            1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
            3 => 12,                      // ARRAY
            4 | 5 | 15 | 19 => vlen * 12, // STRUCT, UNION, DATASEC, ENUM64
            6 | 13 => vlen * 8,           // ENUM, FUNC_PROTO
            _ => 0,
        };
        if kind == BTF_KIND_STRUCT && name_off != 0 {
            let members = (0..vlen)
                .map(|i| {
                    let m = at + i * 12;
                    let off = u32_at(types, m + 8);
                    // With kind_flag, the low 24 bits are the bit offset.
                    let bits = if kind_flag == 1 {
                        off & 0x00ff_ffff
                    } else {
                        off
                    };
                    (cstr(strings, u32_at(types, m)), bits)
                })
                .collect();
            out.insert(cstr(strings, name_off), BtfStruct { size, members });
        }
        at += extra;
    }
    out
}

fn check(object: &str, elf: &[u8]) {
    check_layouts(object, elf, LAYOUTS);
}

fn check_layouts(object: &str, elf: &[u8], layouts: &[Layout]) {
    let structs = btf_structs(elf);
    for (name, size, fields) in layouts {
        let s = structs
            .get(*name)
            .unwrap_or_else(|| panic!("{object}.o: struct {name} not in BTF"));
        assert_eq!(s.size as usize, *size, "{object}.o: size of struct {name}");
        let btf: Vec<(String, usize)> = s
            .members
            .iter()
            .map(|(n, bits)| {
                assert_eq!(bits % 8, 0, "{object}.o: {name}.{n} is a bitfield");
                (n.clone(), (*bits / 8) as usize)
            })
            .collect();
        let rust: Vec<(String, usize)> = fields.iter().map(|(n, o)| (n.to_string(), *o)).collect();
        assert_eq!(
            btf, rust,
            "{object}.o: members and offsets of struct {name}"
        );
    }
}

#[test]
fn mirrors_match_the_btf_of_lxc_o() {
    check("lxc", LXC_OBJ);
}

#[test]
fn mirrors_match_the_btf_of_sock_o() {
    check("sock", SOCK_OBJ);
}

#[test]
fn mirrors_match_the_btf_of_host_o() {
    check("host", HOST_OBJ);
}

#[test]
fn mirrors_match_the_btf_of_overlay_fast_o() {
    check_layouts("overlay_fast", FAST_OBJ, FAST_LAYOUTS);
}

/// The names of the structs a header declares (`struct NAME {` at the start of a line).
fn declared(header: &str) -> Vec<&str> {
    header
        .lines()
        .filter_map(|l| l.strip_prefix("struct "))
        .filter_map(|l| l.strip_suffix(" {"))
        .filter(|n| *n != "vx_maglev_inner")
        .collect()
}

#[test]
fn every_struct_of_the_header_is_mirrored() {
    // A struct added to vxmesh_maps.h without a mirror fails here.
    let mirrored: Vec<&str> = LAYOUTS.iter().map(|l| l.0).collect();
    assert_eq!(
        declared(include_str!("../bpf/include/vxmesh_maps.h")),
        mirrored
    );
}

#[test]
fn every_struct_of_the_fast_header_is_mirrored() {
    // A struct added to fast_maps.h without a mirror fails here.
    let mirrored: Vec<&str> = FAST_LAYOUTS.iter().map(|l| l.0).collect();
    assert_eq!(
        declared(include_str!("../bpf/include/fast_maps.h")),
        mirrored
    );
}
