#!/usr/bin/env python
"""Build the fairseq 0.12.2 wheel the zoo runs on: official PyPI sdist + one asserted patch.

    python tools/env/build_fairseq_wheel.py ~/.cache/sau-zoo/wheels
    pip install ~/.cache/sau-zoo/wheels/fairseq-0.12.2+sauzoo*.whl -r requirements/fairseq.txt

Steps: ``pip download --no-deps --no-binary :all: fairseq==0.12.2`` (the sdist is cached in the
output dir), unpack, apply ``fairseq-0.12.2-sau-zoo.patch`` (every hunk's old text must occur exactly
once, else we stop), then ``pip wheel --no-deps`` with build isolation. A wheel already in the output
dir for the same sdist, patch, Python and numpy is reused.

Why the official sdist plus a patch rather than ``fairseq-fixed`` 0.12.3.1: the sdist is the release
the paper-era recipes (examples/scaling_nmt) were run with, and the patch is five small edits anyone
can read in one screen; ``fairseq-fixed`` is one person's repackaging of unreleased upstream main
(hundreds of unreviewed commits after 0.12.2) and still needs the ``weights_only`` fix.

Why build isolation, with numpy pinned by ``--build-constraint``: the sdist compiles libbleu (plain
C++) and two Cython modules against numpy's C API; its torch C++ extensions (libbase, libnat) are
not in the sdist at all, and setup.py skips them when torch cannot be imported, which is the case in
the isolated env (torch is no build requirement). Without isolation torch is importable, setup.py
adds those extensions and the build fails on their missing sources. So the isolated env holds
setuptools, wheel, cython and numpy only, and the build constraint pins numpy to the version of the
environment that will run fairseq, so the Cython modules match its C API exactly (the wheel's local
version label records it). No 555 MB torch wheel is installed into a throwaway env.
"""
import argparse
import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

FAIRSEQ_VERSION = '0.12.2'
#: sha256 of fairseq-0.12.2.tar.gz on PyPI; a different file is refused.
SDIST_SHA256 = '34f1b18426bf3844714534162f065ab733e049597476daa35fffb4d06a92b524'
PATCH = Path(__file__).with_name('fairseq-0.12.2-sau-zoo.patch')


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def parse_patch(text):
    """Unified diff -> {relative path: [(old, new), ...]}; the text before the first ``--- `` is prose."""
    edits, path, old, new = {}, None, None, None

    def flush():
        if old is not None:
            edits[path].append((''.join(old), ''.join(new)))

    for line in text.splitlines(keepends=True):
        if line.startswith('--- '):
            flush()
            old = new = None
        elif line.startswith('+++ '):
            path = line[4:].strip().split('\t')[0]
            path = path[2:] if path.startswith('b/') else path
            edits.setdefault(path, [])
        elif line.startswith('@@'):
            flush()
            old, new = [], []
        elif old is not None and line[:1] in (' ', '-', '+'):
            if line[0] != '+':
                old.append(line[1:])
            if line[0] != '-':
                new.append(line[1:])
        elif old is not None and line.strip() == '':  # a blank context line that lost its space
            old.append('\n')
            new.append('\n')
    flush()
    return edits


def apply_patch(src_dir, patch=PATCH):
    """Apply every hunk of ``patch`` under ``src_dir``, each one exactly once, or raise."""
    edits = parse_patch(Path(patch).read_text())
    if not edits:
        raise SystemExit(f'{patch}: no hunks found')
    for rel, hunks in edits.items():
        path = Path(src_dir, rel)
        text = path.read_text()
        for i, (old, new) in enumerate(hunks, 1):
            count = text.count(old)
            if count != 1:
                raise SystemExit(f'{patch}: hunk {i} of {rel} matches {count} times (must be exactly once); '
                                 f'is this the pristine fairseq {FAIRSEQ_VERSION} sdist?')
            text = text.replace(old, new)
        path.write_text(text)
    return sum(len(h) for h in edits.values())


def wheel_tag():
    """Local version label: the patch and the numpy the Cython modules were compiled against."""
    return f'sauzoo.{sha256(PATCH)[:8]}.np{importlib.metadata.version("numpy")}'.replace('-', '')


def pip(*args):
    cmd = [sys.executable, '-m', 'pip', *args]
    print('+', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out_dir', type=Path, help='where the sdist is cached and the wheel is left')
    parser.add_argument('--force', action='store_true', help='rebuild even if the wheel exists')
    args = parser.parse_args(argv)
    out = args.out_dir.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)

    version = f'{FAIRSEQ_VERSION}+{wheel_tag()}'
    wheels = sorted(out.glob(f'fairseq-{version}-*.whl'))
    if wheels and not args.force:
        print(f'{wheels[-1]} already built (same sdist, patch and numpy)')
        return 0

    sdist = out / f'fairseq-{FAIRSEQ_VERSION}.tar.gz'
    if not sdist.exists():
        # --no-build-isolation: pip still "prepares metadata" of the downloaded sdist; isolated, it
        # would try to build the build requirements from source too, because of --no-binary :all:.
        pip('download', '--no-deps', '--no-binary', ':all:', '--no-build-isolation',
            f'fairseq=={FAIRSEQ_VERSION}', '-d', str(out))
    if SDIST_SHA256 and sha256(sdist) != SDIST_SHA256:
        raise SystemExit(f'{sdist}: sha256 {sha256(sdist)} is not the PyPI release {SDIST_SHA256}')

    with tempfile.TemporaryDirectory(prefix='fairseq-build-') as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter='data')
        src = Path(tmp, f'fairseq-{FAIRSEQ_VERSION}')
        n = apply_patch(src)
        print(f'applied {n} hunks of {PATCH.name}')
        # The local version label makes the wheel say what it is (and that it is patched).
        version_py = src / 'fairseq' / 'version.txt'
        version_py.write_text(version + '\n')
        constraints = Path(tmp, 'build-constraints.txt')
        constraints.write_text(f'numpy=={importlib.metadata.version("numpy")}\n')
        pip('wheel', '--no-deps', '--build-constraint', str(constraints), '-w', tmp, str(src))
        built = sorted(Path(tmp).glob('fairseq-*.whl'))
        if len(built) != 1:
            raise SystemExit(f'expected one fairseq wheel, pip left {built}')
        target = out / built[0].name
        shutil.move(built[0], target)
    print(f'built {target}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
