//! Where a source's bytes come from, decided in one place from what the configuration claims and
//! what the opened node really is.
//!
//! Only a character device can be hardware, and not every one: the kernel's own memory devices
//! (major 1: `mem`, `null`, `zero`, `full`, `random`, `urandom`, `kmsg`, ...) are never noise
//! sources, and terminals (pseudo-terminals, consoles, virtual terminals) carry whatever someone
//! writes into them. Devices are compared by major:minor, never by path, so a `mknod` copy of
//! /dev/urandom is refused like the original. The shell decides on what it opened (`fstat` of the
//! descriptor), not on the path it was given. Only [`Provenance::Hardware`] may credit the kernel.

use core::fmt;

/// Where the bytes come from. Only [`Provenance::Hardware`] may ever credit the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provenance {
    /// A physical noise source.
    Hardware,
    /// The qeaas simulator, a pseudo-terminal, a pipe, or a file.
    Simulated,
    /// Another qeaas over the network.
    Network,
}

impl Provenance {
    /// Stable label for logs and metrics.
    pub const fn label(self) -> &'static str {
        match self {
            Provenance::Hardware => "hardware",
            Provenance::Simulated => "simulated",
            Provenance::Network => "network",
        }
    }
}

/// What a path or an open descriptor is, as `stat`/`fstat` report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// A character device.
    CharDevice {
        /// Major number (the driver).
        major: u32,
        /// Minor number (the device of that driver).
        minor: u32,
    },
    /// A named pipe.
    Fifo,
    /// A regular file.
    RegularFile,
    /// Anything else: a directory, a socket, a block device.
    Other,
}

/// Major number of the kernel's memory devices (`drivers/char/mem.c`).
const MEM_MAJOR: u32 = 1;

impl Node {
    /// Human name of the kind of node.
    pub const fn label(self) -> &'static str {
        match self {
            Node::CharDevice {
                major: 136..=143, ..
            } => "pseudo-terminal",
            Node::CharDevice { major, minor } if is_terminal(major, minor) => "terminal",
            Node::CharDevice {
                major: MEM_MAJOR, ..
            } => "kernel memory device",
            Node::CharDevice { .. } => "character device",
            Node::Fifo => "named pipe",
            Node::RegularFile => "regular file",
            Node::Other => "neither a device, a pipe nor a file",
        }
    }

    /// True for a regular file: its end is final, it is never read twice.
    pub const fn is_regular_file(self) -> bool {
        matches!(self, Node::RegularFile)
    }
}

/// Terminals by major number (Documentation/admin-guide/devices.txt): BSD pty masters (2) and
/// slaves (3), virtual consoles (4, minors below 64; 64 and up are the serial ports ttyS, which
/// a serial TRNG may use), /dev/tty, /dev/console and /dev/ptmx (5), Unix98 pty slaves
/// (136..=143). A process writes into each of them whatever it likes.
const fn is_terminal(major: u32, minor: u32) -> bool {
    matches!(major, 2 | 3 | 5 | 136..=143) || (major == 4 && minor < 64)
}

/// What the configuration says about a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// A device kind (`quantis`, `serial`, `hwrng`): hardware if the node is a character
    /// device that can be hardware; simulated if it is a pipe, a regular file or a terminal (how
    /// the simulator stands in for a device).
    Device,
    /// A `file` source: never hardware.
    File,
    /// `hardware = true` on a `file` source: the operator asserts a hardware character device.
    /// Anything else is a configuration error.
    Hardware,
    /// `simulated = true`: never hardware, whatever the node.
    Simulated,
    /// Another qeaas over the network (`upstream`): never hardware.
    Network,
}

impl Claim {
    /// True when some node could make a source so configured hardware: the only sources that
    /// can ever let the kernel be credited. The same rule as [`decide`], asked before any open.
    pub const fn may_be_hardware(self) -> bool {
        matches!(self, Claim::Device | Claim::Hardware)
    }
}

/// Why a node may not be used as configured. Each is a configuration error: the source is never
/// read, and `check-config` names it when the path exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// One of the kernel's memory devices (major 1), e.g. a copy of /dev/urandom: its output is
    /// the kernel's own CRNG, or constant, never noise.
    KernelDevice {
        /// Major number (1).
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// `hardware = true` on a node that cannot be hardware (a regular file, a pipe, a terminal).
    NotHardware(Node),
    /// Nothing a noise source can be read from (a directory, a socket, a block device).
    NotASource(Node),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::KernelDevice { major, minor } => write!(
                f,
                "character device {major}:{minor} is one of the kernel's memory devices (such as /dev/random or /dev/urandom), not a noise source"
            ),
            Refusal::NotHardware(n) => write!(
                f,
                "hardware = true, but this is a {}: only a character device can be hardware",
                n.label()
            ),
            Refusal::NotASource(n) => write!(f, "this is {}: not a noise source", n.label()),
        }
    }
}

/// The provenance of a source configured with `claim` whose node is `node`, or why it may not be
/// used at all.
pub fn decide(claim: Claim, node: Node) -> Result<Provenance, Refusal> {
    let device = match node {
        Node::CharDevice { major, minor } if major == MEM_MAJOR => {
            return Err(Refusal::KernelDevice { major, minor })
        }
        Node::Other => return Err(Refusal::NotASource(node)),
        Node::CharDevice { major, minor } => !is_terminal(major, minor),
        Node::Fifo | Node::RegularFile => false,
    };
    match claim {
        Claim::Network => Ok(Provenance::Network),
        Claim::File | Claim::Simulated => Ok(Provenance::Simulated),
        Claim::Hardware if device => Ok(Provenance::Hardware),
        Claim::Hardware => Err(Refusal::NotHardware(node)),
        Claim::Device if device => Ok(Provenance::Hardware),
        Claim::Device => Ok(Provenance::Simulated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAIMS: [Claim; 5] = [
        Claim::Device,
        Claim::File,
        Claim::Hardware,
        Claim::Simulated,
        Claim::Network,
    ];

    fn chr(major: u32, minor: u32) -> Node {
        Node::CharDevice { major, minor }
    }

    #[test]
    fn kernel_memory_devices_are_refused_whatever_the_claim() {
        // random, urandom, zero, null, mem, kmsg: by number, wherever the node lives.
        for minor in [8, 9, 5, 3, 1, 11] {
            for c in CLAIMS {
                assert_eq!(
                    decide(c, chr(1, minor)),
                    Err(Refusal::KernelDevice { major: 1, minor }),
                    "{c:?} 1:{minor}"
                );
            }
        }
    }

    #[test]
    fn only_real_character_devices_are_hardware() {
        // /dev/hwrng (10:183), a Quantis (dynamic major), /dev/ttyACM0 (166:0), /dev/ttyS0 (4:64).
        for dev in [chr(10, 183), chr(240, 0), chr(166, 0), chr(4, 64)] {
            assert_eq!(decide(Claim::Device, dev), Ok(Provenance::Hardware));
            assert_eq!(decide(Claim::Hardware, dev), Ok(Provenance::Hardware));
            assert_eq!(decide(Claim::File, dev), Ok(Provenance::Simulated));
            assert_eq!(decide(Claim::Simulated, dev), Ok(Provenance::Simulated));
            assert_eq!(decide(Claim::Network, dev), Ok(Provenance::Network));
        }
        // Pseudo-terminals (136:3), /dev/tty (5:0), /dev/tty1 (4:1), pipes and files: never.
        for n in [
            chr(136, 3),
            chr(143, 1),
            chr(5, 0),
            chr(4, 1),
            chr(3, 0),
            Node::Fifo,
            Node::RegularFile,
        ] {
            assert_eq!(decide(Claim::Device, n), Ok(Provenance::Simulated), "{n:?}");
            assert_eq!(decide(Claim::Hardware, n), Err(Refusal::NotHardware(n)));
            assert_ne!(decide(Claim::Network, n), Ok(Provenance::Hardware));
        }
    }

    #[test]
    fn no_claim_makes_a_non_device_hardware() {
        for c in CLAIMS {
            for n in [Node::Fifo, Node::RegularFile, chr(136, 0), Node::Other] {
                assert_ne!(decide(c, n), Ok(Provenance::Hardware), "{c:?} {n:?}");
            }
            assert_eq!(
                decide(c, Node::Other),
                Err(Refusal::NotASource(Node::Other))
            );
        }
    }

    #[test]
    fn may_be_hardware_agrees_with_decide() {
        let nodes = [
            chr(10, 183),
            chr(240, 0),
            chr(1, 9),
            chr(136, 0),
            Node::Fifo,
            Node::RegularFile,
            Node::Other,
        ];
        for c in CLAIMS {
            let some = nodes
                .iter()
                .any(|&n| decide(c, n) == Ok(Provenance::Hardware));
            assert_eq!(c.may_be_hardware(), some, "{c:?}");
        }
    }

    #[test]
    fn refusals_say_what_the_node_is() {
        extern crate alloc;
        use alloc::string::ToString;
        let m = Refusal::NotHardware(Node::RegularFile).to_string();
        assert!(
            m.contains("regular file") && m.contains("hardware = true"),
            "{m}"
        );
        let m = Refusal::KernelDevice { major: 1, minor: 9 }.to_string();
        assert!(m.contains("1:9") && m.contains("kernel"), "{m}");
    }
}
