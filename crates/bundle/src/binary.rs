//! What Lambda can run: the checks a built binary passes before it is zipped.

use super::{BundleError, ARCHITECTURE, MAX_GLIBC};

/// Refuses a binary Lambda could not run: anything but a 64-bit little-endian ELF executable
/// for [`ARCHITECTURE`] with the Linux (System V or GNU) ABI, or one needing a glibc newer
/// than [`MAX_GLIBC`]. A provider binary Lambda cannot start never answers CloudFormation,
/// and the stack then waits out the custom resource's ServiceTimeout.
pub fn check_lambda_binary(package: &str, bytes: &[u8]) -> Result<(), BundleError> {
    use object::{Object, ObjectKind};
    let refuse = |found: String| BundleError::NotForLambda {
        package: package.to_string(),
        found,
    };
    let kind = object::FileKind::parse(bytes)
        .map_err(|_| refuse("something that is not an executable".into()))?;
    let file = match kind {
        object::FileKind::Elf64 => {
            object::File::parse(bytes).map_err(|e| refuse(format!("a damaged ELF file ({e})")))?
        }
        object::FileKind::MachO32
        | object::FileKind::MachO64
        | object::FileKind::MachOFat32
        | object::FileKind::MachOFat64 => return Err(refuse("a Mach-O (macOS) binary".into())),
        object::FileKind::Pe32 | object::FileKind::Pe64 => {
            return Err(refuse("a PE (Windows) binary".into()))
        }
        object::FileKind::Elf32 => return Err(refuse("a 32-bit ELF binary".into())),
        other => return Err(refuse(format!("a {other:?} file"))),
    };
    if file.architecture() != ARCHITECTURE.object() || !file.is_little_endian() {
        return Err(refuse(format!(
            "an ELF binary for {:?}",
            file.architecture()
        )));
    }
    if !matches!(file.kind(), ObjectKind::Executable | ObjectKind::Dynamic) {
        return Err(refuse(format!(
            "an ELF {:?} file, not an executable",
            file.kind()
        )));
    }
    // e_ident[EI_OSABI]: 0 (System V) or 3 (GNU/Linux); anything else is another OS's ABI.
    let os_abi = bytes[7];
    if !matches!(os_abi, 0 | 3) {
        return Err(refuse(format!(
            "an ELF binary for OS ABI {os_abi}, not Linux"
        )));
    }
    if let Some(found) = max_glibc(bytes) {
        if found > MAX_GLIBC {
            return Err(BundleError::GlibcTooNew {
                package: package.to_string(),
                found,
            });
        }
    }
    Ok(())
}

/// The highest `GLIBC_x.y` symbol version an ELF binary references, if any. Version names
/// live in the dynamic string table as plain text, so a scan finds every one of them.
pub fn max_glibc(binary: &[u8]) -> Option<(u32, u32)> {
    const TAG: &[u8] = b"GLIBC_";
    let mut best: Option<(u32, u32)> = None;
    let mut i = 0;
    while let Some(pos) = find(&binary[i..], TAG) {
        let start = i + pos + TAG.len();
        let digits = |from: usize| {
            let end = binary[from..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .map_or(binary.len(), |p| from + p);
            (
                std::str::from_utf8(&binary[from..end])
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok()),
                end,
            )
        };
        if let (Some(major), end) = digits(start) {
            if binary.get(end) == Some(&b'.') {
                if let (Some(minor), _) = digits(end + 1) {
                    best = best.max(Some((major, minor)));
                }
            }
        }
        i = start;
    }
    best
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_scan_finds_the_highest_version() {
        let blob = b"\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_2.17\0GLIBC_PRIVATE\0GLIBC_2.3.4\0";
        assert_eq!(max_glibc(blob), Some((2, 34)));
        assert_eq!(max_glibc(b"no versions here"), None);
    }

    /// A minimal 64-bit little-endian ELF header: enough for the checks, no sections.
    fn elf(machine: u16, os_abi: u8, e_type: u16) -> Vec<u8> {
        let mut h = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, os_abi];
        h.resize(16, 0);
        h.extend(e_type.to_le_bytes());
        h.extend(machine.to_le_bytes());
        h.extend(1u32.to_le_bytes()); // e_version
        h.extend([0u8; 24]); // e_entry, e_phoff, e_shoff
        h.extend(0u32.to_le_bytes()); // e_flags
        h.extend(64u16.to_le_bytes()); // e_ehsize
        h.extend(56u16.to_le_bytes()); // e_phentsize
        h.extend(0u16.to_le_bytes()); // e_phnum
        h.extend(64u16.to_le_bytes()); // e_shentsize
        h.extend([0u8; 4]); // e_shnum, e_shstrndx
        h
    }

    const EM_X86_64: u16 = 62;
    const EM_AARCH64: u16 = 183;
    const ET_DYN: u16 = 3;

    #[test]
    fn only_linux_executables_for_the_template_architecture_are_bundled() {
        check_lambda_binary("p", &elf(EM_X86_64, 0, ET_DYN)).unwrap();
        check_lambda_binary("p", &elf(EM_X86_64, 3, 2)).unwrap();
        let refused = |bytes: &[u8]| check_lambda_binary("jitr-activator", bytes).unwrap_err();

        // A Mac laptop's host build (64-bit Mach-O, arm64).
        let mut macho = vec![0xcf, 0xfa, 0xed, 0xfe, 0x0c, 0x00, 0x00, 0x01];
        macho.resize(64, 0);
        assert_eq!(
            refused(&macho).to_string(),
            "Lambda `jitr-activator` was built as a Mach-O (macOS) binary, but Lambda runs \
             x86_64 Linux (glibc) executables (x86_64-unknown-linux-gnu); refusing to bundle it"
        );
        // An arm64 Linux laptop's host build.
        let e = refused(&elf(EM_AARCH64, 0, ET_DYN)).to_string();
        assert!(e.contains("built as an ELF binary for Aarch64"), "{e}");
        // FreeBSD's ABI, a relocatable object, a Windows binary, a script.
        let e = refused(&elf(EM_X86_64, 9, ET_DYN)).to_string();
        assert!(e.contains("OS ABI 9, not Linux"), "{e}");
        let e = refused(&elf(EM_X86_64, 0, 1)).to_string();
        assert!(e.contains("not an executable"), "{e}");
        let mut pe = b"MZ".to_vec();
        pe.resize(256, 0);
        assert!(matches!(
            check_lambda_binary("p", &pe),
            Err(BundleError::NotForLambda { .. })
        ));
        let e = refused(b"#!/bin/sh\necho hi\n").to_string();
        assert!(e.contains("not an executable"), "{e}");

        // Linux x86_64, but linked against a newer glibc than AL2023's.
        let mut new_glibc = elf(EM_X86_64, 0, ET_DYN);
        new_glibc.extend(b"\0GLIBC_2.38\0");
        assert!(matches!(
            check_lambda_binary("p", &new_glibc),
            Err(BundleError::GlibcTooNew { found: (2, 38), .. })
        ));
    }
}
