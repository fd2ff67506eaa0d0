//! Running the tc programs on a packet with BPF_PROG_TEST_RUN: the packet tests, and the
//! micro-benchmark hook of `cargo xtask bench lb`. A test run touches no device; it runs the
//! real program against the real maps of the node (a packet that makes a flow leaves its
//! connection-table entry behind, as a real one would).

use aya::programs::{SchedClassifier, TestRun, TestRunOptions};

use crate::{
    error::{Error, Result},
    loader::Datapath,
    objects::{HOST_PROGRAMS, LXC_PROGRAMS},
};

/// `TC_ACT_OK` (include/uapi/linux/pkt_cls.h): continue with the packet.
pub const TC_ACT_OK: u32 = 0;
/// `TC_ACT_SHOT`: drop the packet.
pub const TC_ACT_SHOT: u32 = 2;
/// `TC_ACT_REDIRECT`: the program redirected the packet (bpf_redirect).
pub const TC_ACT_REDIRECT: u32 = 7;
/// `TCX_NEXT` (`TC_ACT_UNSPEC`, -1, as the u32 a test run returns): not the program's
/// packet, untouched; the next tcx program and then the device's tc filters decide.
pub const TCX_NEXT: u32 = u32::MAX;

/// `sizeof(struct __sk_buff)` and the offsets of its `gso_segs` and `gso_size`
/// (include/uapi/linux/bpf.h; the same in the kernel's BTF of this machine).
const SK_BUFF_SIZE: usize = 192;
const SK_BUFF_GSO_SEGS: usize = 164;
const SK_BUFF_GSO_SIZE: usize = 176;

/// What one test run returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcRun {
    /// The program's return value (`TC_ACT_*`).
    pub verdict: u32,
    /// The packet as the program left it.
    pub packet: Vec<u8>,
}

impl Datapath {
    fn classifier(&self, prog: &str) -> Result<(&'static str, &SchedClassifier)> {
        let (object, ebpf) = if HOST_PROGRAMS.contains(&prog) {
            ("host", &self.host)
        } else {
            ("lxc", &self.lxc)
        };
        let name = LXC_PROGRAMS
            .iter()
            .chain(HOST_PROGRAMS.iter())
            .copied()
            .find(|&n| n == prog)
            .ok_or_else(|| {
                Error::invalid(
                    "program",
                    format!("{prog:?} is not one of {LXC_PROGRAMS:?} {HOST_PROGRAMS:?}"),
                )
            })?;
        let p = ebpf.program(name).ok_or(Error::Missing {
            object,
            kind: "program",
            name,
        })?;
        let p: &SchedClassifier = p
            .try_into()
            .map_err(|e| Error::program(name, "as classifier", e))?;
        Ok((name, p))
    }

    /// Runs tc program `prog` (one of [`crate::LXC_PROGRAMS`] or [`crate::HOST_PROGRAMS`]) once on
    /// the Ethernet frame `packet` and returns its verdict and output packet.
    ///
    /// Errors: [`Error::Invalid`] for another program name; [`Error::Program`] when the
    /// kernel refuses the run (a frame shorter than 14 bytes gets EINVAL).
    pub fn run_tc(&self, prog: &str, packet: &[u8]) -> Result<TcRun> {
        self.run_tc_ctx(prog, packet, None)
    }

    /// [`Datapath::run_tc`] on a GSO packet: the skb says it stands for `gso_segs` segments
    /// of `gso_size` bytes of payload each, as a TSO packet from a container's TCP or one
    /// that GRO merged does (`skb_is_gso()`).
    ///
    /// Errors: as [`Datapath::run_tc`]; the kernel refuses more than 65,535 segments.
    pub fn run_tc_gso(
        &self,
        prog: &str,
        packet: &[u8],
        gso_size: u32,
        gso_segs: u32,
    ) -> Result<TcRun> {
        // struct __sk_buff (include/uapi/linux/bpf.h): 192 bytes, gso_segs at 164, gso_size
        // at 176. BPF_PROG_TEST_RUN takes only a few of its fields from user space
        // (convert___skb_to_skb in net/bpf/test_run.c); every other byte must be 0.
        let mut ctx = [0u8; SK_BUFF_SIZE];
        ctx[SK_BUFF_GSO_SEGS..SK_BUFF_GSO_SEGS + 4].copy_from_slice(&gso_segs.to_ne_bytes());
        ctx[SK_BUFF_GSO_SIZE..SK_BUFF_GSO_SIZE + 4].copy_from_slice(&gso_size.to_ne_bytes());
        self.run_tc_ctx(prog, packet, Some(&ctx))
    }

    fn run_tc_ctx(&self, prog: &str, packet: &[u8], ctx: Option<&[u8]>) -> Result<TcRun> {
        let (name, p) = self.classifier(prog)?;
        run_once(name, p, packet, ctx)
    }

    /// Runs tc program `prog` `repeat` times on `packet` in the kernel and returns the mean
    /// time per run in nanoseconds, as the kernel measured it (BPF_PROG_TEST_RUN's
    /// `duration`). Each call has a fixed cost of milliseconds: use repeat ≥ 1e6 for a
    /// figure per packet (FIELD-NOTES). The first run may make a connection-table entry;
    /// the others then take the established-flow path.
    pub fn bench_tc(&self, prog: &str, packet: &[u8], repeat: u32) -> Result<f64> {
        if repeat == 0 {
            return Err(Error::invalid("repeat", "must be at least 1"));
        }
        let (name, p) = self.classifier(prog)?;
        let r = p
            .test_run(TestRunOptions {
                data_in: Some(packet),
                repeat,
                ..TestRunOptions::default()
            })
            .map_err(|e| Error::program(name, "test run", e))?;
        Ok(r.duration.as_nanos() as f64)
    }
}

/// Runs tc program `p` (named `name`) once on `packet`, with `ctx` as the input
/// `struct __sk_buff` (a prefix of it; None: all zero), and returns its verdict and output
/// packet.
pub(crate) fn run_once(
    name: &'static str,
    p: &SchedClassifier,
    packet: &[u8],
    ctx: Option<&[u8]>,
) -> Result<TcRun> {
    let mut out = vec![0u8; packet.len() + 256];
    let r = p
        .test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            ctx_in: ctx,
            ..TestRunOptions::default()
        })
        .map_err(|e| Error::program(name, "test run", e))?;
    out.truncate(r.data_size_out as usize);
    Ok(TcRun {
        verdict: r.return_value,
        packet: out,
    })
}
