#!/usr/bin/env python
"""Build a wheel the zoo needs from an official PyPI sdist plus one asserted patch, into a wheel cache.

    python tools/env/build_wheel.py fairseq ~/.cache/sau-zoo/wheels
    python tools/env/build_wheel.py mmcv ~/.cache/sau-zoo/wheels

Steps: ``pip download --no-deps --no-binary :all:`` the sdist (cached in the output dir, its sha256
checked against the PyPI release), unpack, apply ``<package>-<version>-sau-zoo.patch`` (every hunk's old
text must occur exactly once, else we stop), then ``pip wheel --no-deps``. The wheel is left in
``<cache>/<name>-<version>+<label>/``, where the label names the patch and what the build was compiled
against; a wheel already there is reused. The last line printed is the wheel's path.

fairseq 0.12.2 (see its patch for the six edits): official sdist + patch rather than ``fairseq-fixed``
0.12.3.1, because the sdist is the release the paper-era recipes (examples/scaling_nmt) were run with and
the patch is six small edits anyone can read in one screen; ``fairseq-fixed`` is one person's
repackaging of unreleased upstream main and still needs the ``weights_only`` fix. It is built with build
isolation and numpy pinned by ``--build-constraint``: the sdist compiles libbleu and two Cython modules
against numpy's C API; its torch C++ extensions (libbase, libnat) are not in the sdist at all and setup.py
skips them when torch cannot be imported, which is the case in the isolated env. Without isolation torch
is importable and the build fails on their missing sources. The constraint pins numpy to the version of
the environment that will run fairseq, so the Cython modules match its C API exactly.

mmcv 2.1.0 (what mmdet 3.3.0 and mmseg 1.2.2 accept) with its compiled ops (``MMCV_WITH_OPS=1``, CPU
only): built without isolation against the installed torch (its setup.py imports torch and
pkg_resources, so setuptools<81), with C++20 for torch 2.14's headers. 25-40 minutes on 2 cores; debug
symbols are stripped afterwards (32 MB -> 1.4 MB). The build is checked to contain ``mmcv._ext``.
"""
import argparse
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Recipe:
    version: str
    sdist_sha256: str
    isolated: bool  # build in pip's isolated env (True) or against the installed packages (False)
    env: dict = field(default_factory=dict)
    pin_numpy: bool = False  # build against exactly the runtime numpy (Cython modules)
    strip_extensions: bool = False
    must_contain: str = ''  # a file the wheel must hold, or the build is refused
    label_version: bool = True  # write the local label into the version (mmcv parses its own as integers)

    def patch(self, name):
        return HERE / f'{name}-{self.version}-sau-zoo.patch'


RECIPES = {
    'fairseq': Recipe(version='0.12.2',
                      sdist_sha256='34f1b18426bf3844714534162f065ab733e049597476daa35fffb4d06a92b524',
                      isolated=True, pin_numpy=True),
    'mmcv': Recipe(version='2.1.0',
                   sdist_sha256='d387bcab66b467479b6660310e23746cfc79c6e57acf04094680adb499a5cd3f',
                   isolated=False, env={'MMCV_WITH_OPS': '1', 'FORCE_CUDA': '0'},
                   strip_extensions=True, must_contain='mmcv/_ext', label_version=False),
}


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


def apply_patch(src_dir, patch):
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
                                 'is this the pristine sdist?')
            text = text.replace(old, new)
        path.write_text(text)
    return sum(len(h) for h in edits.values())


def local_version(name, recipe):
    """The wheel's local version label: the patch, and what the build was compiled against."""
    parts = ['sauzoo', sha256(recipe.patch(name))[:8]]
    if recipe.pin_numpy:
        parts.append('np' + importlib.metadata.version('numpy'))
    if not recipe.isolated:
        parts.append('torch' + importlib.metadata.version('torch').split('+')[0])
    return '.'.join(parts).replace('-', '')


def pip(*args, env=None):
    cmd = [sys.executable, '-m', 'pip', *args]
    print('+', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)


def strip_debug_symbols(wheel):
    """strip --strip-debug every extension in the wheel, then repack it (its RECORD is rewritten)."""
    with tempfile.TemporaryDirectory(prefix='strip-') as tmp:
        pip('install', '-q', 'wheel')
        subprocess.run([sys.executable, '-m', 'wheel', 'unpack', '-d', tmp, str(wheel)], check=True)
        for so in Path(tmp).rglob('*.so'):
            subprocess.run(['strip', '--strip-debug', str(so)], check=True)
        wheel.unlink()
        subprocess.run([sys.executable, '-m', 'wheel', 'pack', '-d', str(wheel.parent),
                        str(next(Path(tmp).iterdir()))], check=True)


def build(name, wheel_cache, force=False):
    """The wheel for ``name``, from ``wheel_cache/<name>-<version>+<label>/`` or freshly built into it."""
    recipe = RECIPES[name]
    version = f'{recipe.version}+{local_version(name, recipe)}'
    out = wheel_cache / f'{name}-{version}'
    wheels = sorted(out.glob(f'{name}-*.whl'))
    if wheels and not force:
        print(f'{wheels[-1]} already built (same sdist, patch and build environment)')
        return wheels[-1]
    out.mkdir(parents=True, exist_ok=True)

    sdist = wheel_cache / f'{name}-{recipe.version}.tar.gz'
    if not sdist.exists():
        # --no-build-isolation: pip still prepares the sdist's metadata; isolated, it would try to build
        # the build requirements from source too, because of --no-binary :all:.
        pip('download', '--no-deps', '--no-binary', ':all:', '--no-build-isolation',
            f'{name}=={recipe.version}', '-d', str(wheel_cache))
    if sha256(sdist) != recipe.sdist_sha256:
        raise SystemExit(f'{sdist}: sha256 {sha256(sdist)} is not the PyPI release {recipe.sdist_sha256}')

    with tempfile.TemporaryDirectory(prefix=f'{name}-build-') as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter='data')
        src = Path(tmp, f'{name}-{recipe.version}')
        print(f'applied {apply_patch(src, recipe.patch(name))} hunks of {recipe.patch(name).name}')
        if recipe.label_version:  # the wheel says what it is, and that it is patched
            (src / name / 'version.txt').write_text(version + '\n')
        args = ['wheel', '--no-deps', '-w', tmp, str(src)]
        if recipe.pin_numpy:
            constraints = Path(tmp, 'build-constraints.txt')
            constraints.write_text(f'numpy=={importlib.metadata.version("numpy")}\n')
            args[2:2] = ['--build-constraint', str(constraints)]
        if not recipe.isolated:
            args.insert(1, '--no-build-isolation')
        pip(*args, env={**os.environ, 'MAX_JOBS': str(os.cpu_count() or 1), **recipe.env})
        built = sorted(Path(tmp).glob(f'{name}-*.whl'))
        if len(built) != 1:
            raise SystemExit(f'expected one {name} wheel, pip left {built}')
        if recipe.strip_extensions:
            strip_debug_symbols(built[0])
            built = sorted(Path(tmp).glob(f'{name}-*.whl'))
        if recipe.must_contain and not any(n.startswith(recipe.must_contain)
                                           for n in zipfile.ZipFile(built[0]).namelist()):
            raise SystemExit(f'{built[0].name} lacks {recipe.must_contain}: the build silently skipped it')
        target = out / built[0].name
        shutil.move(built[0], target)
    print(f'built {target}')
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('package', choices=sorted(RECIPES))
    parser.add_argument('wheel_cache', type=Path, help='where sdists are cached and wheels are left')
    parser.add_argument('--force', action='store_true', help='rebuild even if the wheel exists')
    args = parser.parse_args(argv)
    cache = args.wheel_cache.expanduser().resolve()
    cache.mkdir(parents=True, exist_ok=True)
    print(build(args.package, cache, args.force))
    return 0


if __name__ == '__main__':
    sys.exit(main())
