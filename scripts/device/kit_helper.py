#!/usr/bin/env python3
"""Helpers for scripts/device/make_kit.sh (the .devkit of Debian 12's C++ dependencies).

  kit_helper.py closure ELF...            sonames (and real paths) of every shared library the ELF
                                          files load, LibTorch and the C/C++ runtime left out;
                                          prints "soname<TAB>path" lines
  kit_helper.py stubs OUT SPEC CONSUMER...
                                          for each "soname<TAB>real path<TAB>mode<TAB>message" line
                                          of SPEC writes OUT/soname: a library with that name that
                                          defines every symbol the CONSUMERs import from the real one
                                          (same versions, object sizes); its functions trap (mode
                                          trap: print the message, then SIGILL) or return 0 (zero)
  kit_helper.py devlinks DIR              "link<TAB>soname" for each libfoo.so development link in
                                          DIR that points at a library named by a line of stdin
  kit_helper.py pack KIT MIN_KIB          xz-compresses the libraries and tools over MIN_KIB (FILE →
                                          FILE.xz) so the kit travels small
  kit_helper.py unpack KIT DEST           copies KIT to DEST, decompressing the .xz files (a no-op
                                          when DEST already holds this kit); prints DEST
  kit_helper.py fix-cmake KIT_PREFIX      makes the kit's CMake files relocatable and drops the
                                          existence checks of library files the kit leaves out

closure, stubs and fix-cmake use readelf and gcc; pack and unpack only Python's standard library.
"""
import os
import re
import shutil
import subprocess
import sys

try:
    import lzma
except ImportError:
    lzma = None

ARCH = "x86_64-linux-gnu"
# Not carried: LibTorch (the device machine has its own), glibc, the GCC runtime.
SKIP = re.compile(r"^(libtorch|libc10|libcaffe2|libshm|libc\.so|libm\.so|libdl\.so|libpthread|librt\.so|"
                  r"ld-linux|libstdc\+\+|libgcc_s|libutil\.so|libresolv|libmvec|libanl|libnsl|"
                  r"libBrokenLocale|libcrypt\.so|libgomp)")


def readelf(*args):
    return subprocess.run(["readelf", "-W", *args], check=True, capture_output=True, text=True).stdout


def needed(path):
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.*)\]", readelf("-d", path))


def ldconfig_paths():
    out = subprocess.run(["/sbin/ldconfig", "-p"], check=True, capture_output=True, text=True).stdout
    paths = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) \((.*)\) => (.*)", line)
        if m and "x86-64" in m.group(2):
            paths.setdefault(m.group(1), m.group(3))
    return paths


def closure(elves, stop=()):
    """soname → real path for every library reachable from elves; `stop` sonames are listed but not
    descended into (they become stubs)."""
    where = ldconfig_paths()
    found = {}
    todo = [n for e in elves for n in needed(e)]
    while todo:
        name = todo.pop()
        if name in found or SKIP.match(name):
            continue
        path = where.get(name)
        if path is None:
            sys.exit(f"kit_helper: {name} (needed by the kit) is not installed")
        found[name] = os.path.realpath(path)
        if name not in stop:
            todo.extend(needed(found[name]))
    return found


SYM = re.compile(r"^\s*\d+: ([0-9a-f]+)\s+(\d+|0x[0-9a-f]+) (\w+)\s+(\w+)\s+\w+\s+(\w+) (\S+)")


def dynsyms(path):
    """(name, version or None, default?, type, size, defined?) for each dynamic symbol."""
    out = []
    for line in readelf("--dyn-syms", path).splitlines():
        m = SYM.match(line)
        if not m or not m.group(6):
            continue
        _, size, typ, bind, ndx, full = m.groups()
        if bind not in ("GLOBAL", "WEAK", "GNU_UNIQUE"):
            continue
        name, ver, default = full, None, True
        if "@@" in full:
            name, ver = full.split("@@", 1)
        elif "@" in full:
            name, ver = full.split("@", 1)
            default = ndx == "UND"  # a reference names the version it needs
        out.append((name, ver, default, typ, int(size, 0), ndx != "UND"))
    return out


def imported(consumers):
    wanted = set()
    for c in consumers:
        for name, _, _, _, _, defined in dynsyms(c):
            if not defined:
                wanted.add(name)
    return wanted


def stub(soname, real, outdir, mode, message, wanted):
    symbols = [s for s in dynsyms(real) if s[5] and s[0] in wanted]
    asm = ['\t.text', '__cf_stub_trap:', '\tmov $1, %eax', '\tmov $2, %edi', '\tlea __cf_stub_msg(%rip), %rsi',
           f'\tmov ${len(message.encode()) + 1}, %edx', '\tsyscall', '\tud2',
           '\t.section .rodata', '__cf_stub_msg:', f'\t.ascii "{message}\\n"']
    nodes = {}  # version → names with that default version
    for i, (name, ver, default, typ, size, _) in enumerate(symbols):
        label = f'"{name}"' if ver is None or default else f"__cf_stub_{i}"
        if ver is not None and not default:
            asm.append(f'\t.symver {label}, "{name}@{ver}"')
        if ver is not None:
            nodes.setdefault(ver, [])
            if default:
                nodes[ver].append(name)
        if typ in ("OBJECT", "TLS", "COMMON"):
            asm += ["\t.data", "\t.balign 16", f"\t.globl {label}", f"\t.type {label}, @object",
                    f"\t.size {label}, {max(size, 1)}", f"{label}:", f"\t.zero {max(size, 1)}"]
        else:
            body = ["\txor %eax, %eax", "\tret"] if mode == "zero" else ["\tjmp __cf_stub_trap"]
            asm += ["\t.text", f"\t.globl {label}", f"\t.type {label}, @function", f"{label}:", *body]
    asm.append('\t.section .note.GNU-stack,"",@progbits')
    os.makedirs(outdir, exist_ok=True)
    src = os.path.join(outdir, soname + ".s")
    with open(src, "w") as f:
        f.write("\n".join(asm) + "\n")
    cmd = ["gcc", "-shared", "-nostdlib", "-o", os.path.join(outdir, soname), src, f"-Wl,-soname,{soname}",
           "-Wl,-z,noexecstack"]
    if nodes:
        vs = os.path.join(outdir, soname + ".map")
        with open(vs, "w") as f:
            for k, (ver, names) in enumerate(sorted(nodes.items())):
                body = "".join(f' "{n}";' for n in names)
                f.write(f"{ver} {{ global:{body} {'local: *;' if k == 0 else ''} }};\n")
        cmd.append(f"-Wl,--version-script={vs}")
    subprocess.run(cmd, check=True)
    os.remove(src)
    if nodes:
        os.remove(vs)
    print(f"stub {soname}: {len(symbols)} symbols ({mode})")


def fix_cmake(prefix):
    """Debian's config files compare their location with /usr/lib/<arch>/cmake/<pkg> (the "/usr
    move" check); point that at the kit so no absolute path is left. Drop the existence checks of
    library files that the kit does not carry (targets nobody links: grpc_unsecure, the
    prometheus push/pull libraries, ...)."""
    root = os.path.join(prefix, "lib", ARCH, "cmake")
    share = os.path.join(prefix, "share", "cmake")
    for top in (root, share):
        for d, _, files in os.walk(top):
            for fn in files:
                if not fn.endswith(".cmake"):
                    continue
                path = os.path.join(d, fn)
                with open(path) as f:
                    text = f.read()
                new = re.sub(r'"/usr/(lib/' + ARCH + r'/cmake|share/cmake)/[^"]*"', '"${CMAKE_CURRENT_LIST_DIR}"', text)
                new = re.sub(r'set\((PACKAGE_PREFIX_DIR|_IMPORT_PREFIX) "/usr[^"]*"\)',
                             lambda m: f'set({m.group(1)} "${{{m.group(1)}}}")', new)
                # CMake 4 refuses compatibility with CMake < 3.5.
                new = re.sub(r"cmake_policy\(VERSION 2\.[0-9.]*\.\.\.", "cmake_policy(VERSION 3.5...", new)
                kept = []
                for line in new.splitlines(keepends=True):
                    m = re.match(r'\s*list\(APPEND (_cmake_import_check_files_for_|_IMPORT_CHECK_FILES_FOR_)(\S+) (.*)\)',
                                 line)
                    if m:
                        files_ = re.findall(r'"([^"]*)"', m.group(3))
                        here = [x.replace("${_IMPORT_PREFIX}", prefix) for x in files_]
                        if not all(os.path.exists(x) for x in here):
                            continue
                    kept.append(line)
                new = "".join(kept)
                if new != text:
                    with open(path, "w") as f:
                        f.write(new)
    left = subprocess.run(["grep", "-rln", "/usr/", root, share], capture_output=True, text=True).stdout.split()
    left = [p for p in left
            if any(not l.lstrip().startswith("#") and "/usr/" in l for l in open(p).read().splitlines())]
    if left:
        sys.exit("kit_helper: absolute /usr paths left in " + " ".join(left))


def pack(kit, min_kib):
    for top in ("usr/lib", "usr/libexec"):
        for d, _, files in os.walk(os.path.join(kit, top)):
            for fn in files:
                path = os.path.join(d, fn)
                if os.path.islink(path) or os.path.getsize(path) < min_kib * 1024 or fn.endswith(".xz"):
                    continue
                with open(path, "rb") as f, lzma.open(path + ".xz", "wb", preset=6) as out:
                    shutil.copyfileobj(f, out)
                shutil.copymode(path, path + ".xz")
                os.remove(path)


def unpack(kit, dest):
    stamp = os.path.join(dest, "MANIFEST.txt")
    with open(os.path.join(kit, "MANIFEST.txt")) as f:
        manifest = f.read()
    if os.path.exists(stamp) and open(stamp).read() == manifest:
        print(dest)
        return
    if os.path.exists(dest):
        shutil.rmtree(dest)
    shutil.copytree(kit, dest, symlinks=True, ignore=shutil.ignore_patterns("MANIFEST.txt"))
    for d, _, files in os.walk(dest):
        for fn in files:
            if fn.endswith(".xz"):
                path = os.path.join(d, fn)
                if lzma is not None:
                    with lzma.open(path, "rb") as f, open(path[:-3], "wb") as out:
                        shutil.copyfileobj(f, out)
                else:  # a Python built without liblzma: the xz tool
                    with open(path[:-3], "wb") as out:
                        subprocess.run(["xz", "-dc", path], check=True, stdout=out)
                shutil.copymode(path, path[:-3])
                os.remove(path)
    with open(stamp, "w") as f:  # last: a half-done copy is redone
        f.write(manifest)
    print(dest)


def main():
    cmd = sys.argv[1]
    if cmd == "closure":
        stop = set(os.environ.get("KIT_STUBS", "").split())
        for name, path in sorted(closure(sys.argv[2:], stop).items()):
            print(f"{name}\t{path}")
    elif cmd == "stubs":
        outdir, spec = sys.argv[2:4]
        wanted = imported(sys.argv[4:])
        for line in open(spec).read().splitlines():
            soname, real, mode, message = line.split("\t")
            stub(soname, real, outdir, mode, message, wanted)
    elif cmd == "devlinks":
        reals = set(l.strip() for l in sys.stdin if l.strip())
        d = sys.argv[2]
        for fn in sorted(os.listdir(d)):
            p = os.path.join(d, fn)
            if fn.endswith(".so") and os.path.islink(p) and os.path.realpath(p) in reals:
                print(f"{fn}\t{os.path.realpath(p)}")
    elif cmd == "pack":
        pack(sys.argv[2], int(sys.argv[3]))
    elif cmd == "unpack":
        unpack(sys.argv[2], os.path.abspath(sys.argv[3]))
    elif cmd == "fix-cmake":
        fix_cmake(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
