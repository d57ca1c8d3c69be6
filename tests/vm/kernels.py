"""Fetch and prepare Debian kernels for the qemu matrix: package, modules, vmlinux, initramfs.

Everything lands in a cache directory (``build/vm-cache`` in the checkout, or
``$TRACEKIT_VM_CACHE``), one subdirectory per kernel package, and is reused: a prepared
kernel is marked by a ``ready`` stamp written last, so an interrupted preparation is simply
redone. Nothing is installed into the host: the .deb is unpacked with ``dpkg-deb -x``.

Stdlib only (plus Debian tools that are apt-installed on demand), so the runner works
before tracekit itself is importable.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]

@dataclass(frozen=True)
class Series:
    """Where the kernels of one matrix entry come from."""

    #: matches a package name; group 1 is the release (`uname -r`), group 2 the part that
    #: orders packages of the series (compared as a tuple of its numbers)
    pattern: re.Pattern[str]
    #: what `apt-cache pkgnames` is asked for (a prefix of every matching name)
    prefix: str
    #: a Debian suite fetched through a private apt state in the VM cache (never the
    #: host's sources or lists); None: the host's own apt configuration
    suite: str | None = None


# The generic flavour: the -cloud- flavour lacks 9p, -rt- is a different scheduler; -dbg and
# linux-image-unsigned-* do not match either.
SERIES: dict[str, Series] = {
    "6.1": Series(re.compile(r"^linux-image-(6\.1\.0-(\d+)-amd64)$"), "linux-image-6"),
    "6.12": Series(re.compile(r"^linux-image-(6\.12\.(\d+)\+deb12-amd64)$"), "linux-image-6"),
    # Debian sid's newest kernel, whatever its version (7.2.x in Dec 2026). From 7.x on its
    # linux-image-<ver> is a metapackage over linux-binary/-modules/-base-<ver>.
    "sid": Series(re.compile(r"^linux-image-((\d+\.\d+\.\d+)\+deb\d+-amd64)$"), "linux-image-", "sid"),
}

# What the initramfs needs to mount the 9p shares under an overlay; dependencies
# (netfs, 9pnet, virtio core pieces, ...) are added from modules.dep.
ROOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio_rng")

# Debian package providing each host tool we call.
TOOL_PACKAGES = {
    "qemu-system-x86_64": "qemu-system-x86",
    "depmod": "kmod",
    "zstd": "zstd",
    "dpkg-deb": "dpkg",
}
BUSYBOX = Path("/bin/busybox")


class VMSetupError(RuntimeError):
    """Preparing a kernel for the VM failed (package, extraction, tooling)."""


def cache_dir() -> Path:
    return Path(os.environ.get("TRACEKIT_VM_CACHE", CHECKOUT / "build" / "vm-cache"))


def log(msg: str) -> None:
    print(f"[vm] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- host tools

def _apt_install(packages: list[str]) -> None:
    log(f"installing {' '.join(packages)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", *packages],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    if proc.returncode != 0:
        # A stale package index is the usual cause; refresh once and retry.
        subprocess.run(["apt-get", "update"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        proc = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", *packages],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
    if proc.returncode != 0:
        raise VMSetupError(f"apt-get install {' '.join(packages)} failed:\n{proc.stderr[-2000:]}")


def ensure_tools() -> None:
    """Install the Debian packages providing qemu, depmod, zstd and a static busybox."""
    missing = sorted({pkg for tool, pkg in TOOL_PACKAGES.items() if not _which(tool)})
    if not _busybox_is_static():
        missing.append("busybox-static")
    if missing:
        _apt_install(missing)
    if not _busybox_is_static():
        raise VMSetupError(f"{BUSYBOX} is not a static busybox even after installing busybox-static")


def _which(tool: str) -> str | None:
    return shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def _busybox_is_static() -> bool:
    """A dynamic busybox would need a libc inside the initramfs; only the static one will do."""
    try:
        with open(BUSYBOX, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF":
                return False
            # No PT_INTERP program header == statically linked.
            phoff, = struct.unpack_from("<Q", head, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
        return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))
    except OSError:
        return False


# --------------------------------------------------------------------------- packages

def _order(m: re.Match[str]) -> tuple[int, ...]:
    """Sort key of a matching package name: the numbers of its version part."""
    return tuple(int(x) for x in re.findall(r"\d+", m.group(2)))


def _series(series: str) -> Series:
    try:
        return SERIES[series]
    except KeyError:
        raise VMSetupError(f"unknown kernel series {series!r}; choose from {', '.join(SERIES)}") from None


# ----------------------------------------------------- a private apt state for other suites

DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
HOST_SOURCES = Path("/etc/apt")
#: hooks the host's apt.conf.d runs after `apt-get update` (PackageKit, appstream
#: catalogue refreshes): they concern the host's package state, not ours, so they are
#: cleared for the private updates
_APT_CONF = """\
#clear APT::Update::Pre-Invoke;
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
"""


def host_mirror(etc: Path = HOST_SOURCES) -> str:
    """The Debian archive URI the host's apt sources use (not its security archive).

    Reads deb822 ``*.sources`` stanzas and one-line ``*.list``/``sources.list`` entries;
    falls back to deb.debian.org when the host has no Debian source.
    """
    uris: list[str] = []
    for path in sorted((etc / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", _read(path)):
            fields = dict(re.findall(r"^([\w-]+):[ \t]*(.*)$", stanza, re.M))
            if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
                uris += fields.get("URIs", "").split()
    for path in [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]:
        for line in _read(path).splitlines():
            m = re.match(r"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)", line)
            if m:
                uris.append(m.group(1))
    for uri in uris:
        # The main archive ends in /debian (deb.debian.org, a local mirror, snapshot.d.o);
        # debian-security carries no kernels of sid.
        if re.search(r"/debian/?$", uri):
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def apt_dir(suite: str, base: Path | None = None) -> Path:
    return (base or cache_dir()) / f"apt-{suite}"


def apt_options(suite: str, base: Path | None = None) -> list[str]:
    """apt-get/apt-cache options that make them see only ``suite`` of the host's Debian
    mirror, with lists and downloaded archives kept under the VM cache.

    The host's sources, lists and package caches stay as they are: every path apt would
    write to is redirected here, and the sources file names the keyring it must verify
    the suite's Release file with (Debian's, already on the host).
    """
    d = apt_dir(suite, base)
    for sub in ("lists/partial", "archives/partial"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    sources = d / f"{suite}.list"
    line = f"deb [signed-by={DEBIAN_KEYRING}] {host_mirror()} {suite} main\n"
    if _read(sources) != line:
        sources.write_text(line)
    conf = d / "apt.conf"
    if _read(conf) != _APT_CONF:
        conf.write_text(_APT_CONF)
    return [
        "-c", str(conf),
        "-o", f"Dir::Etc::SourceList={sources}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={d / 'lists'}",
        "-o", f"Dir::Cache::archives={d / 'archives'}",
        # the binary caches apt may keep next to the host's own (disabled on this VM's
        # image, not everywhere): none for this private state
        "-o", "Dir::Cache::pkgcache=",
        "-o", "Dir::Cache::srcpkgcache=",
        # the cache may live where user _apt cannot write (a 0700 TRACEKIT_VM_CACHE); apt
        # would fall back to root with a warning after every download anyway
        "-o", "APT::Sandbox::User=root",
    ]


def apt_update(suite: str, base: Path | None = None, *, max_age: float = 86400.0) -> list[str]:
    """Refresh ``suite``'s private package lists (at most once per ``max_age`` seconds,
    or always with TRACEKIT_VM_REFRESH=1) and return the apt options that use them.

    A failed refresh keeps lists from an earlier one; with none at all it is an error.
    A Release file whose signature does not verify against Debian's keyring is an error
    even when apt only warns about it (apt then keeps the old lists silently).
    """
    opts = apt_options(suite, base)
    d = apt_dir(suite, base)
    stamp = d / "updated"
    if (stamp.exists() and time.time() - stamp.stat().st_mtime < max_age
            and os.environ.get("TRACEKIT_VM_REFRESH") != "1"):
        return opts
    if not DEBIAN_KEYRING.exists():
        raise VMSetupError(f"{DEBIAN_KEYRING} is missing: apt-get install debian-archive-keyring "
                           f"(it verifies Debian {suite}'s Release file)")
    log(f"apt-get update for Debian {suite} (private lists in {d / 'lists'})")
    proc = subprocess.run(["apt-get", *opts, "update"], capture_output=True, text=True,
                          env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    bad_sig = re.search(r"^[WE]: .*(GPG|NO_PUBKEY|not signed|signature|OpenPGP).*$", proc.stderr, re.M)
    if bad_sig:
        raise VMSetupError(f"Debian {suite}'s Release file does not verify with {DEBIAN_KEYRING}: "
                           f"{bad_sig.group(0)} (a newer debian-archive-keyring may be needed)")
    have_lists = any((d / "lists").glob("*_Packages*"))
    if proc.returncode != 0 or re.search(r"^(E: |W: (Failed to fetch|Some index files))", proc.stderr, re.M):
        msg = f"apt-get update for Debian {suite} failed:\n{proc.stderr[-1500:]}"
        if not have_lists:
            raise VMSetupError(msg)
        log(msg + "\nusing the lists of an earlier update")
        return opts
    if not have_lists:
        raise VMSetupError(f"apt-get update for Debian {suite} left no package lists in {d / 'lists'}")
    stamp.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    return opts


def series_apt_options(series: str, base: Path | None = None) -> list[str]:
    """The apt options for a series: none for the host's own suites, a private state
    (refreshed when a day old) for the others."""
    suite = _series(series).suite
    return apt_update(suite, base) if suite else []


def newest_package(series: str, apt_opts: Sequence[str] = ()) -> str:
    """The newest installable generic kernel package of a series, per apt-cache."""
    s = _series(series)
    names = subprocess.run(["apt-cache", *apt_opts, "pkgnames", s.prefix], check=True,
                           capture_output=True, text=True).stdout.split()
    candidates = sorted(((_order(m), name) for name in names if (m := s.pattern.match(name))), reverse=True)
    for _, name in candidates:
        # pkgnames also lists names that have no downloadable version any more.
        policy = subprocess.run(["apt-cache", *apt_opts, "policy", name], capture_output=True, text=True).stdout
        if re.search(r"Candidate: (?!\(none\))", policy):
            return name
    raise VMSetupError(f"apt-cache knows no installable package for kernel {series} "
                       f"(pattern {s.pattern.pattern}); run apt-get update?")


#: the pieces of a split kernel package (Debian 7.x): vmlinuz, modules, and config/System.map/modules.builtin
SPLIT_PARTS = ("linux-binary-", "linux-modules-", "linux-base-")


def kernel_packages(package: str, apt_opts: Sequence[str] = ()) -> list[str]:
    """The .debs that hold a kernel: the package itself, or, for a metapackage over
    linux-binary/-modules/-base-<ver> (Debian 7.x), those three."""
    out = subprocess.run(["apt-cache", *apt_opts, "depends", package], check=True,
                         capture_output=True, text=True).stdout
    release = package.removeprefix("linux-image-")
    deps = set(re.findall(r"^\s+\|?Depends: (\S+)$", out, re.M))
    parts = [p + release for p in SPLIT_PARTS if p + release in deps]
    if not parts:
        return [package]
    missing = [p + release for p in SPLIT_PARTS[:2] if p + release not in parts]
    if missing:
        raise VMSetupError(f"{package} is split but does not depend on {', '.join(missing)}:\n{out}")
    return parts


@dataclass(frozen=True)
class Kernel:
    """A kernel prepared for booting: everything the runner hands to qemu."""

    series: str
    package: str
    release: str          # `uname -r` in the guest
    root: Path            # the unpacked package(s) (lib/modules/, boot/ up to 6.x)
    vmlinux: Path         # uncompressed ELF, booted through its PVH note
    initramfs: Path
    config: Path          # the build config, bound at /boot/config-<release> in the guest

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib" / "modules" / self.release


def _cached(series: str, base: Path) -> Kernel | None:
    """The newest ready kernel of a series already in the cache (for offline use)."""
    pattern = _series(series).pattern
    best: tuple[tuple[int, ...], Path] | None = None
    if base.is_dir():
        for d in base.iterdir():
            m = pattern.match(d.name)
            if m and (d / "ready").exists() and (best is None or _order(m) > best[0]):
                best = (_order(m), d)
    return _load(series, best[1]) if best else None


def _initramfs_recipe() -> str:
    """Names the initramfs after what goes into it, so editing /init rebuilds it (~1 s)."""
    h = hashlib.sha256(INIT_SCRIPT.encode() + repr(ROOT_MODULES).encode())
    h.update(str(BUSYBOX.stat().st_mtime_ns).encode() if BUSYBOX.exists() else b"")
    return h.hexdigest()[:12]


def _in_package(root: Path, release: str, boot_name: str, modules_name: str) -> Path:
    """A file the 6.x packages keep in /boot and the 7.x ones in /usr/lib/modules/<ver>/."""
    boot = root / "boot" / f"{boot_name}-{release}"
    return boot if boot.exists() else root / "lib" / "modules" / release / modules_name


def _load(series: str, d: Path) -> Kernel:
    release = (d / "ready").read_text().strip()
    root = d / "root"
    initramfs = d / f"initramfs-{_initramfs_recipe()}.cpio.gz"
    if not initramfs.exists():
        for old in d.glob("initramfs*.cpio.gz"):
            old.unlink()
        tmp = initramfs.with_suffix(".tmp")
        tmp.write_bytes(build_initramfs(root / "lib" / "modules" / release))
        tmp.rename(initramfs)
    return Kernel(series, d.name, release, root, d / "vmlinux", initramfs,
                  _in_package(root, release, "config", "config"))


def _package_size(package: str, apt_options: Sequence[str] = ()) -> int | None:
    out = subprocess.run(["apt-cache", *apt_options, "show", "--no-all-versions", package],
                         capture_output=True, text=True)
    m = re.search(r"^Size: (\d+)$", out.stdout, re.M)
    return int(m.group(1)) if m else None



def download(package: str, dest: Path, apt_options: Sequence[str] = ()) -> None:
    """``apt-get download package`` into ``dest``, saying how far it got every few seconds
    (kernel packages are tens to hundreds of MB: silence looks like a hang)."""
    total = _package_size(package, apt_options)
    size = f"{total / 1e6:.{0 if total >= 10e6 else 1}f} MB" if total else "size unknown"
    log(f"downloading {package} ({size})")
    done = threading.Event()

    def progress() -> None:
        start = time.monotonic()
        while not done.wait(5.0):
            # apt writes the .deb in dest as it arrives (under partial/ on some versions)
            got = sum(p.stat().st_size for p in dest.rglob("*.deb*") if p.is_file())
            pct = f" ({100 * got / total:.0f}%)" if total else ""
            log(f"  {package}: {got / 1e6:.0f} MB{pct} after {time.monotonic() - start:.0f} s")

    th = threading.Thread(target=progress, daemon=True)
    th.start()
    try:
        # apt-get warns that _apt cannot write here; harmless, so keep it off the terminal.
        dl = subprocess.run(["apt-get", *apt_options, "download", package], cwd=dest, capture_output=True,
                            text=True)
    finally:
        done.set()
        th.join()
    if dl.returncode != 0:
        raise VMSetupError(f"apt-get download {package} failed:\n{dl.stderr[-2000:]}")
    log(f"downloaded {package}")


def prepare_kernel(series: str, *, cache: Path | None = None, offline: bool = False) -> Kernel:
    """Return a bootable kernel of ``series`` ("6.1", "6.12" or "sid"), fetching it if needed.

    Idempotent: the newest package per apt-cache is downloaded and prepared once. With
    ``offline=True`` (or when apt fails) the newest already-prepared one is used. "sid"
    goes through a private apt state under the cache (see :func:`apt_options`).
    """
    _series(series)
    base = cache or cache_dir()
    if offline:
        k = _cached(series, base)
        if k is None:
            raise VMSetupError(f"no prepared {series} kernel in {base} and offline=True")
        return k
    # apt-cache takes ~1.5 s (sid: + an 11 MB list update): remember its answer for a day
    # (TRACEKIT_VM_REFRESH=1 to force).
    latest = base / f"latest-{series}"
    fresh = (latest.exists() and time.time() - latest.stat().st_mtime < 86400
             and os.environ.get("TRACEKIT_VM_REFRESH") != "1")
    if fresh and (base / latest.read_text().strip() / "ready").exists():
        return _load(series, base / latest.read_text().strip())
    try:
        opts = series_apt_options(series, base)
        package = newest_package(series, opts)
    except (OSError, subprocess.CalledProcessError, VMSetupError) as e:
        k = _cached(series, base)
        if k is None:
            raise VMSetupError(f"cannot find a package for kernel {series} with apt: {e}") from e
        log(f"apt failed ({e}); using the prepared {k.package}")
        return k
    base.mkdir(parents=True, exist_ok=True)
    latest.write_text(package + "\n")
    d = base / package
    if (d / "ready").exists():
        return _load(series, d)
    ensure_tools()
    log(f"preparing {package} in {d}")
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    root = d / "root"
    for part in kernel_packages(package, opts):
        # One at a time, unpacked and deleted at once: the progress figures stay per
        # package, and the 110 MB modules .deb never sits next to its unpacked copy for long.
        download(part, d, opts)
        debs = list(d.glob("*.deb"))
        if len(debs) != 1:
            raise VMSetupError(f"apt-get download {part} produced {debs}")
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True)
        debs[0].unlink()  # 70+ MB we never need again
    # bookworm packages use /lib/modules; newer ones ship /usr/lib/modules.
    if not (root / "lib" / "modules").is_dir() and (root / "usr" / "lib" / "modules").is_dir():
        (root / "lib").mkdir(exist_ok=True)
        (root / "lib" / "modules").symlink_to("../usr/lib/modules")
    releases = [p.name for p in (root / "lib" / "modules").iterdir()]
    if len(releases) != 1:
        raise VMSetupError(f"{package}: expected one modules directory, found {releases}")
    release = releases[0]
    subprocess.run([_which("depmod") or "depmod", "-b", str(root), release], check=True)
    bzimage = _in_package(root, release, "vmlinuz", "vmlinuz")
    config = _in_package(root, release, "config", "config")
    for need in (bzimage, config, root / "lib" / "modules" / release / "modules.builtin"):
        if not need.exists():
            raise VMSetupError(f"{package}: no {need.relative_to(root)} in the unpacked package(s)")
    (d / "vmlinux").write_bytes(extract_vmlinux(bzimage.read_bytes()))
    (d / "ready").write_text(release + "\n")
    log(f"prepared {package} ({release})")
    return _load(series, d)


# --------------------------------------------------------------------------- vmlinux

def extract_vmlinux(bzimage: bytes) -> bytes:
    """Decompress the ELF vmlinux out of an x86 bzImage.

    The boot protocol header says where the compressed payload is: the protected-mode
    part starts after (setup_sects + 1) sectors, and payload_offset/payload_length (at
    0x248/0x24c, protocol >= 2.08) locate the payload within it. The kernel build appends
    the uncompressed size as 4 little-endian bytes to the payload, which we use to check.
    """
    if bzimage[0x202:0x206] != b"HdrS":
        raise VMSetupError("not a bzImage (no HdrS boot header)")
    setup_sects = bzimage[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = bzimage[start:start + payload_length]
    expected, = struct.unpack("<I", payload[-4:])
    if payload.startswith(b"\xfd7zXZ\x00"):
        dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        out = dec.decompress(payload)  # stops at the end of the stream; the size trailer is left over
    elif payload.startswith(b"\x28\xb5\x2f\xfd"):
        zstd = _which("zstd")
        if zstd is None:
            raise VMSetupError("zstd is needed to unpack this kernel (apt-get install zstd)")
        proc = subprocess.run([zstd, "-d", "-c", "-q"], input=payload[:-4], capture_output=True)
        if proc.returncode != 0:
            raise VMSetupError(f"zstd failed on the bzImage payload: {proc.stderr.decode()[:500]}")
        out = proc.stdout
    elif payload.startswith(b"\x1f\x8b"):
        out = gzip.decompress(payload[:-4])
    else:
        raise VMSetupError(f"unknown bzImage payload compression (magic {payload[:6].hex()})")
    # Compare modulo 2**32: the trailer is 32 bits.
    if (len(out) & 0xFFFFFFFF) != expected or not out.startswith(b"\x7fELF"):
        raise VMSetupError(f"bzImage payload decompressed to {len(out)} bytes, expected an ELF of {expected}")
    return out


# --------------------------------------------------------------------------- initramfs

def _module_closure(mods: Path, wanted: tuple[str, ...]) -> list[Path]:
    """Module files for ``wanted`` and their dependencies, dependencies first.

    Built-in modules (modules.builtin) need nothing; names missing altogether are an error
    for the 9p/overlay ones, because the guest could not mount its root without them.
    """
    deps: dict[str, list[str]] = {}
    for line in (mods / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
    by_name = {_mod_name(p): p for p in deps}
    builtin = {_mod_name(b) for b in (mods / "modules.builtin").read_text().split()}
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in deps[path]:
            visit(dep)
        order.append(path)

    for name in wanted:
        name = name.replace("-", "_")
        if name in by_name:
            visit(by_name[name])
        elif name not in builtin and name != "virtio_rng":
            raise VMSetupError(f"module {name} is neither built in nor shipped in {mods}")
    return [mods / p for p in order]


def _mod_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    return base.split(".ko", 1)[0].replace("-", "_")


INIT_SCRIPT = r"""#!/bin/busybox sh
# tracekit VM init: mount the host's / (read-only, under a tmpfs overlay) and the shares,
# run the command described in /ctl/job, record its exit status, power off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "TRACEKIT-VM: $*" > /dev/ttyS0; }
fail() { say "init failed: $*"; reboot -f; sleep 5; echo b > /proc/sysrq-trigger; }
for m in $(cat /modules.order); do
    insmod "/modules/$m" || say "insmod $m failed"
done
mkdir -p /ctl /host /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 ctl /ctl || fail "mount ctl"
. /ctl/job
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro hostroot /host || fail "mount hostroot"
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work /newroot || fail "mount overlay"
R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
mount -t tmpfs tmpfs $R/tmp
mount -t tmpfs tmpfs $R/run
mount -t tracefs tracefs $R/sys/kernel/tracing
mount -t debugfs debugfs $R/sys/kernel/debug
mount -t bpf bpf $R/sys/fs/bpf
mkdir -p "$R$TK_CHECKOUT" $R/run/tracekit-vm
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose checkout "$R$TK_CHECKOUT" || fail "mount checkout"
mount --bind /ctl $R/run/tracekit-vm
# Only the guests write bytecode here, so the page cache may keep it (cache=loose):
# imports then cost no 9p round trips for .pyc files.
mkdir -p "$R$TK_PYCACHE"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose pycache "$R$TK_PYCACHE" || say "no pycache share"
# The host's interpreter or venv under a directory the guest replaces with a tmpfs (/tmp,
# /run, /dev/shm): shared read-only at the same path, so the guest runs the same python.
i=0
for p in $TK_EXTRA; do
    mkdir -p "$R$p"
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro "extra$i" "$R$p" || fail "mount $p"
    i=$((i + 1))
done
KVER=$(uname -r)
# Debian kernels have no /proc/config.gz: expose the package's config where libbpf looks.
mkdir -p $R/boot $R/lib/modules/$KVER
touch "$R/boot/config-$KVER"
mount --bind "$R$TK_KCONFIG" "$R/boot/config-$KVER"
mount --bind "$R$TK_KMODULES" "$R/lib/modules/$KVER"
for t in /dev/ttyS1 /dev/ttyS2; do stty -F $t raw -echo -onlcr 2>/dev/null; done
echo > /ctl/started
say "cmd-start"
if [ "$TK_SHELL" = 1 ]; then
    setsid cttyhack chroot $R /bin/sh /run/tracekit-vm/cmd.sh
else
    chroot $R /bin/sh /run/tracekit-vm/cmd.sh < /dev/null > /dev/ttyS1 2> /dev/ttyS2
fi
rc=$?
echo $rc > /ctl/rc.tmp && mv /ctl/rc.tmp /ctl/rc
say "cmd-exit $rc"
sync
umount "$R$TK_CHECKOUT" 2>/dev/null
reboot -f
"""


def build_initramfs(mods: Path) -> bytes:
    """A gzip'd newc cpio: static busybox, the 9p/overlay modules (uncompressed), /init.

    .ko.xz modules are decompressed here (Python's lzma) so busybox's insmod need not
    understand compression.
    """
    files: list[tuple[str, int, bytes]] = []  # (path, mode, data)
    for d in ("bin", "dev", "proc", "sys", "modules", "ctl", "host", "rw", "newroot", "tmp"):
        files.append((d, 0o040755, b""))
    files.append(("bin/busybox", 0o100755, BUSYBOX.read_bytes()))
    files.append(("init", 0o100755, INIT_SCRIPT.encode()))
    order = []
    for path in _module_closure(mods, ROOT_MODULES):
        data = path.read_bytes()
        name = path.name
        if name.endswith(".xz"):
            data, name = lzma.decompress(data), name[:-3]
        elif name.endswith(".zst"):
            data = subprocess.run([_which("zstd") or "zstd", "-d", "-c", "-q"], input=data,
                                  check=True, capture_output=True).stdout
            name = name[:-4]
        files.append((f"modules/{name}", 0o100644, data))
        order.append(name)
    files.append(("modules.order", 0o100644, ("\n".join(order) + "\n").encode()))
    return gzip.compress(cpio_newc(files), compresslevel=6, mtime=0)


def cpio_newc(files: list[tuple[str, int, bytes]]) -> bytes:
    """The "newc" (070701) cpio format the kernel's initramfs unpacker reads."""
    out = io.BytesIO()

    def entry(ino: int, name: str, mode: int, data: bytes) -> None:
        nameb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nameb), 0))
        out.write(hdr.encode() + nameb)
        out.write(b"\0" * (-(110 + len(nameb)) % 4))
        out.write(data)
        out.write(b"\0" * (-len(data) % 4))

    for ino, (name, mode, data) in enumerate(files, start=1):
        entry(ino, name, mode, data)
    entry(0, "TRAILER!!!", 0, b"")
    return out.getvalue()
