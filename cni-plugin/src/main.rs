//! `vxmesh-cni`: the vxmesh CNI plugin binary (install it as `vxmesh` in the runtime's CNI_PATH).

fn main() {
    std::process::exit(vxmesh_cni::main_entry());
}
